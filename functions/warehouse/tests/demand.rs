//! Demand per SKU is summed with checked arithmetic: lines whose quantities overflow a `u32` are a
//! permanent error naming the line, never a wrapped (small) demand that would ship too little.

use orderflow_contracts::OrderLine;
use warehouse::stock::demand;

fn line(sku: &str, quantity: u32) -> OrderLine {
    OrderLine { sku: sku.into(), quantity, unit_price_minor: 100 }
}

#[test]
fn lines_of_one_sku_are_summed() {
    let demand = demand(&[line("A", 2), line("B", 1), line("A", 3)]).unwrap();
    assert_eq!(demand.into_iter().collect::<Vec<_>>(), vec![("A".to_string(), 5), ("B".to_string(), 1)]);
}

#[test]
fn a_sum_that_overflows_is_refused_for_good_naming_the_line() {
    let error = demand(&[line("A", u32::MAX), line("B", 1), line("A", 2)]).unwrap_err();
    assert!(!error.retryable);
    assert!(error.to_string().contains("lines[2]"), "{error}");
}
