//! The contracts' promises: versions are upcast, validation names the field, correlation carries over,
//! and the committed JSON Schemas match the types.

use orderflow_contracts::*;
use pretty_assertions::assert_eq;
use serde_json::json;
use std::path::PathBuf;

fn raw(v: serde_json::Value) -> Box<serde_json::value::RawValue> {
    serde_json::value::to_raw_value(&v).unwrap()
}

fn v2_data() -> serde_json::Value {
    json!({
        "orderId": "ord-1",
        "customer": {"customerId": "c-1", "name": "Ada Lovelace", "email": "ada@example.com", "phone": "+441234567890"},
        "lines": [{"sku": "SKU-1", "quantity": 2, "unitPriceMinor": 1250}],
        "currency": "EUR",
        "totals": {"subtotalMinor": 2500, "shippingMinor": 500, "taxMinor": 0, "totalMinor": 3000},
        "shippingAddress": {"line1": "1 Main St", "city": "London", "postalCode": "N1 1AA", "country": "GB"},
        "placedAt": "2026-11-28T10:00:00Z"
    })
}

#[test]
fn v1_order_placed_is_read_as_the_current_version() {
    let v1 = json!({
        "orderId": "ord-1",
        "customerId": "c-1",
        "customerName": "Ada Lovelace",
        "customerEmail": "ada@example.com",
        "lines": [{"sku": "SKU-1", "quantity": 2, "unitPriceMinor": 1250}],
        "currency": "EUR",
        "totalMinor": 2500,
        "shippingAddress": {"line1": "1 Main St", "city": "London", "postalCode": "N1 1AA", "country": "GB"},
        "placedAt": "2026-11-28T10:00:00Z"
    });
    let event = <OrderPlaced as Inbound>::decode("OrderPlaced", 1, &raw(v1)).expect("v1 upcasts");
    assert_eq!(event.customer.name, "Ada Lovelace");
    assert_eq!(event.customer.email, "ada@example.com");
    assert_eq!(event.customer.phone, "");
    assert_eq!(event.totals, Totals { subtotal_minor: 2500, shipping_minor: 0, tax_minor: 0, total_minor: 2500 });
}

#[test]
fn current_version_decodes_unchanged() {
    let event = <OrderPlaced as Inbound>::decode("OrderPlaced", 2, &raw(v2_data())).unwrap();
    assert_eq!(serde_json::to_value(&event).unwrap(), v2_data());
}

#[test]
fn versions_outside_the_supported_range_are_refused() {
    for v in [0, 3] {
        let err = <OrderPlaced as Inbound>::decode("OrderPlaced", v, &raw(v2_data())).unwrap_err();
        assert_eq!(err, ContractError::UnsupportedSchemaVersion { event: "OrderPlaced", found: v, supported: (1, 2) });
    }
    let err = <OrderBilled as Inbound>::decode("OrderBilled", 2, &raw(json!({}))).unwrap_err();
    assert!(matches!(err, ContractError::UnsupportedSchemaVersion { found: 2, .. }), "{err:?}");
}

#[test]
fn validation_names_the_field() {
    let mut data = v2_data();
    data["lines"][0]["quantity"] = json!(0);
    let err = <OrderPlaced as Inbound>::decode("OrderPlaced", 2, &raw(data)).unwrap_err();
    assert_eq!(err.to_string(), "OrderPlaced: invalid `lines[0].quantity`: must be at least 1");

    let mut data = v2_data();
    data["lines"] = json!([]);
    let err = <OrderPlaced as Inbound>::decode("OrderPlaced", 2, &raw(data)).unwrap_err();
    assert!(matches!(err, ContractError::Invalid { ref field, .. } if field == "lines"), "{err:?}");

    let mut data = v2_data();
    data["currency"] = json!("XYZ");
    let err = <OrderPlaced as Inbound>::decode("OrderPlaced", 2, &raw(data)).unwrap_err();
    assert!(matches!(err, ContractError::Malformed { .. }), "{err:?}");
    assert!(err.to_string().contains("XYZ"), "{err}");
}

#[test]
fn unknown_detail_type_is_refused() {
    let err = <OrderPlaced as Inbound>::decode("OrderShipped", 2, &raw(v2_data())).unwrap_err();
    assert_eq!(err, ContractError::UnknownDetailType("OrderShipped".into()));
}

inbound! {
    enum Outcome {
        Shipped(ShippingLabelCreated),
        Declined(PaymentDeclined),
    }
}

#[test]
fn an_inbound_enum_dispatches_on_detail_type() {
    assert_eq!(Outcome::DETAIL_TYPES, ["ShippingLabelCreated", "PaymentDeclined"]);
    let declined = json!({"orderId": "o", "invoiceId": "i", "amountMinor": 5, "currency": "USD",
        "reason": "card declined", "declinedAt": "2026-11-28T10:00:00Z"});
    let decoded = Outcome::decode("PaymentDeclined", 1, &raw(declined)).unwrap();
    assert!(matches!(decoded, Outcome::Declined(ref d) if d.reason == "card declined"));
    assert_eq!(decoded.name(), "PaymentDeclined");
    assert!(matches!(Outcome::decode("OrderPlaced", 1, &raw(json!({}))), Err(ContractError::UnknownDetailType(_))));
}

#[test]
fn caused_events_carry_correlation_and_causation() {
    let placed: OrderPlaced = serde_json::from_value(v2_data()).unwrap();
    let first = Envelope::new(placed, Some("corr-42".into()));
    assert_eq!(first.metadata.correlation_id, "corr-42");
    assert_eq!(first.metadata.causation_id, None);
    assert_eq!(first.metadata.event_type, "OrderPlaced");
    assert_eq!(first.metadata.schema_version, 2);

    let declined = PaymentDeclined {
        order_id: "ord-1".into(),
        invoice_id: "inv-1".into(),
        amount_minor: 3000,
        currency: Currency::EUR,
        reason: "limit".into(),
        declined_at: chrono::Utc::now(),
    };
    let next = Envelope::caused_by(&first.metadata, declined);
    assert_eq!(next.metadata.correlation_id, "corr-42");
    assert_eq!(next.metadata.causation_id, Some(first.metadata.event_id.to_string()));
    assert_eq!(next.metadata.producer, "orderflow.billing");
    assert_ne!(next.metadata.event_id, first.metadata.event_id);
    let again = Envelope::caused_by(&first.metadata, next.data.clone());
    assert_eq!(again.metadata.event_id, next.metadata.event_id, "a retried handler re-publishes the same event id");
}

#[test]
fn every_event_carries_its_flows_trace_and_an_event_without_one_is_given_the_flows() {
    let placed: OrderPlaced = serde_json::from_value(v2_data()).unwrap();
    let first = Envelope::new(placed.clone(), Some("corr-42".into()));
    let started = TraceContext::parse(first.metadata.traceparent.as_deref().unwrap()).unwrap();
    let flow = TraceContext::derived("corr-42", &first.metadata.event_id);
    assert_ne!(started.trace_id, flow.trace_id, "a flow starts a trace of its own, not one the caller's id decides");
    let again = Envelope::new(placed.clone(), Some("corr-42".into())).metadata.trace();
    assert_ne!(started.trace_id, again.trace_id, "every start a new trace");

    // Where a flow starts in a trace of its own (the API's X-Ray trace), that one is carried.
    let xray = TraceContext::from_xray("Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1");
    let traced = Envelope::new(placed, Some("corr-42".into())).in_trace(xray.unwrap());
    assert_eq!(traced.metadata.traceparent.as_deref(), Some("00-5759e988bd862e3fe1be46a994272793-53995c3f42cd8ad8-01"));
    let json = serde_json::to_value(&traced).unwrap();
    assert_eq!(json["metadata"]["traceparent"], "00-5759e988bd862e3fe1be46a994272793-53995c3f42cd8ad8-01");

    // What it causes continues it: the cause's context (its handling span, set by the harness) is
    // the parent.
    let mut handled = traced.metadata.clone();
    let handling = handled.trace().child(&handled.event_id, "billing");
    handled.traceparent = Some(handling.to_string());
    let billed = Envelope::caused_by(&handled, traced.data.clone());
    assert_eq!(billed.metadata.trace(), handling);

    // An event from a producer that sets none (or a malformed one) is in the flow's trace all the same.
    let mut old = traced.metadata.clone();
    for missing in [None, Some("garbage".to_string())] {
        old.traceparent = missing;
        assert_eq!(old.trace().trace_id, TraceContext::derived("corr-42", &old.event_id).trace_id);
        let caused = Envelope::caused_by(&old, traced.data.clone());
        assert_eq!(caused.metadata.trace().trace_id, flow.trace_id);
    }
}

#[test]
fn the_status_machine_has_exactly_its_moves_and_every_order_can_end() {
    use OrderStatus::*;
    let legal = [
        (Placed, ReadyToShip),
        (Placed, PaymentFailed),
        (Placed, Backordered),
        (Placed, Cancelling),
        (Backordered, ReadyToShip),
        (Backordered, Cancelling),
        (Cancelling, Cancelled),
    ];
    for from in OrderStatus::ALL {
        for to in OrderStatus::ALL {
            assert_eq!(from.can_move_to(to), legal.contains(&(from, to)), "{from:?} -> {to:?}");
        }
    }
    let finals: Vec<OrderStatus> = OrderStatus::ALL.into_iter().filter(|s| s.is_final()).collect();
    assert_eq!(finals, vec![ReadyToShip, PaymentFailed, Cancelled]);
    // Shipped, declined or cancelled: too late to cancel. Placed or waiting: a customer may.
    let cancellable: Vec<OrderStatus> = OrderStatus::ALL.into_iter().filter(|s| s.can_cancel()).collect();
    assert_eq!(cancellable, vec![Placed, Backordered]);
    // From every status a final one is reachable: no workflow is left without an end.
    for start in OrderStatus::ALL {
        let (mut seen, mut todo) = (vec![start], vec![start]);
        while let Some(s) = todo.pop() {
            for next in OrderStatus::ALL {
                if s.can_move_to(next) && !seen.contains(&next) {
                    seen.push(next);
                    todo.push(next);
                }
            }
        }
        assert!(seen.iter().any(|s| s.is_final()), "{start:?} has no way to a final status");
    }
}

#[test]
fn the_readme_draws_the_status_machine_the_code_has() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../README.md");
    let readme = std::fs::read_to_string(&path).unwrap();
    let start = "<!-- status diagram: generated from OrderStatus::TRANSITIONS -->";
    let end = "<!-- end of status diagram -->";
    let (before, rest) = readme.split_once(start).expect("README.md has the status diagram's start marker");
    let (drawn, after) = rest.split_once(end).expect("README.md has the status diagram's end marker");
    let fresh = format!("\n```mermaid\n{}```\n", OrderStatus::mermaid());
    if drawn != fresh && std::env::var_os("UPDATE_SCHEMAS").is_some() {
        std::fs::write(&path, format!("{before}{start}{fresh}{end}{after}")).unwrap();
        return;
    }
    assert_eq!(drawn, fresh, "README.md's status diagram is stale: run `make schemas`");
}

#[test]
fn committed_json_schemas_match_the_types() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../events-samples/schemas");
    let update = std::env::var_os("UPDATE_SCHEMAS").is_some();
    let mut stale = Vec::new();
    for (file, text) in schemas::all() {
        let path = dir.join(&file);
        if update {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &text).unwrap();
        } else if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
            stale.push(file);
        }
    }
    assert!(stale.is_empty(), "stale JSON Schemas {stale:?}: run `UPDATE_SCHEMAS=1 cargo test -p orderflow-contracts`");
}

#[test]
fn v1_totals_split_into_lines_and_shipping() {
    let v1 = json!({
        "orderId": "ord-1", "customerId": "c-1", "customerName": "Ada", "customerEmail": "ada@example.com",
        "lines": [{"sku": "SKU-1", "quantity": 2, "unitPriceMinor": 1999}, {"sku": "SKU-2", "quantity": 1, "unitPriceMinor": 1250}],
        "currency": "GBP", "totalMinor": 5743,
        "shippingAddress": {"line1": "1 Main St", "city": "London", "postalCode": "N1 1AA", "country": "GB"},
        "placedAt": "2026-11-28T10:00:00Z"
    });
    let event = <OrderPlaced as Inbound>::decode("OrderPlaced", 1, &raw(v1)).expect("v1 upcasts");
    assert_eq!(event.totals, Totals { subtotal_minor: 5248, shipping_minor: 495, tax_minor: 0, total_minor: 5743 });
}

fn line(quantity: u32, unit_price_minor: i64) -> OrderLine {
    OrderLine { sku: "SKU-1".into(), quantity, unit_price_minor }
}

#[test]
fn totals_are_checked_and_name_the_field_that_does_not_fit() {
    // 4 × (2^62 + 25) wraps to 100 in unchecked i64 arithmetic.
    let err = Totals::for_lines(&[line(4, (1 << 62) + 25)], 0, 0).unwrap_err();
    assert_eq!(err.field, "lines[0].unitPriceMinor", "{err}");
    let err = Totals::for_lines(&[line(1000, 9_223_372_036_854_775_807)], 0, 0).unwrap_err();
    assert_eq!(err.field, "lines[0].unitPriceMinor");
    // Each price in range, the line's product over the cap.
    let err = Totals::for_lines(&[line(10_000, MAX_AMOUNT_MINOR / 1000)], 0, 0).unwrap_err();
    assert_eq!(err.field, "lines[0]");
    // Each line in range, their sum over the cap.
    let err = Totals::for_lines(&[line(1, MAX_AMOUNT_MINOR), line(1, 1)], 0, 0).unwrap_err();
    assert_eq!(err.field, "totals.subtotalMinor");
    let err = Totals::for_lines(&[line(1, MAX_AMOUNT_MINOR)], 1, 0).unwrap_err();
    assert_eq!(err.field, "totals.totalMinor");
    assert_eq!(Totals::for_lines(&[line(1, 100)], -5, 0).unwrap_err().field, "totals.shippingMinor");
    assert_eq!(
        Totals::for_lines(&[line(2, 1999), line(1, 1250)], 495, 0).unwrap(),
        Totals { subtotal_minor: 5248, shipping_minor: 495, tax_minor: 0, total_minor: 5743 }
    );
}

#[test]
fn order_placed_holds_its_totals_to_its_lines() {
    let mut data = v2_data();
    data["lines"] = json!([{"sku": "SKU-1", "quantity": 4, "unitPriceMinor": (1i64 << 62) + 25}]);
    data["totals"] = json!({"subtotalMinor": 100, "shippingMinor": 0, "taxMinor": 0, "totalMinor": 100});
    let err = <OrderPlaced as Inbound>::decode("OrderPlaced", 2, &raw(data)).unwrap_err();
    assert!(matches!(&err, ContractError::Invalid { field, .. } if field == "lines[0].unitPriceMinor"), "{err}");

    let mut data = v2_data();
    let mut totals: Totals = serde_json::from_value(data["totals"].clone()).unwrap();
    totals.subtotal_minor += 1;
    totals.total_minor += 1;
    data["totals"] = serde_json::to_value(totals).unwrap();
    let err = <OrderPlaced as Inbound>::decode("OrderPlaced", 2, &raw(data)).unwrap_err();
    assert!(matches!(&err, ContractError::Invalid { field, .. } if field == "totals.subtotalMinor"), "{err}");
}

/// The `data` of the first record of a sample SQS event in `events-samples/`.
fn sample_data(path: &str) -> serde_json::Value {
    let file = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../events-samples").join(path);
    let event: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    let body: serde_json::Value = serde_json::from_str(event["Records"][0]["body"].as_str().unwrap()).unwrap();
    body["detail"]["data"].clone()
}

fn invalid_field<E: Inbound + std::fmt::Debug>(detail_type: &str, version: u32, data: serde_json::Value) -> String {
    match E::decode(detail_type, version, &raw(data)) {
        Err(ContractError::Invalid { field, .. }) => field,
        other => panic!("{detail_type} accepted or refused otherwise: {other:?}"),
    }
}

#[test]
fn every_event_holds_lines_quantities_and_amounts_to_documented_bounds() {
    // OrderPlaced: too many lines, too many units of one.
    let mut data = v2_data();
    data["lines"] = json!(vec![json!({"sku": "SKU-1", "quantity": 1, "unitPriceMinor": 1}); MAX_LINES + 1]);
    assert_eq!(invalid_field::<OrderPlaced>("OrderPlaced", 2, data), "lines");
    let mut data = v2_data();
    data["lines"][0]["quantity"] = json!(MAX_QUANTITY + 1);
    assert_eq!(invalid_field::<OrderPlaced>("OrderPlaced", 2, data), "lines[0].quantity");

    // OrderBilled: a charge of nothing, a negative or absurd one, one below its lines, lines out of bounds.
    let billed = sample_data("warehouse/order-billed.sqs.json");
    assert!(OrderBilled::decode("OrderBilled", 1, &raw(billed.clone())).is_ok(), "the sample is accepted");
    for amount in [json!(0), json!(-1), json!(MAX_AMOUNT_MINOR + 1), json!(1)] {
        let mut data = billed.clone();
        data["amountMinor"] = amount.clone();
        assert_eq!(invalid_field::<OrderBilled>("OrderBilled", 1, data), "amountMinor", "amount {amount}");
    }
    let mut data = billed.clone();
    data["lines"][0]["quantity"] = json!(u32::MAX);
    assert_eq!(invalid_field::<OrderBilled>("OrderBilled", 1, data), "lines[0].quantity");
    let mut data = billed.clone();
    data["lines"][0]["unitPriceMinor"] = json!(i64::MAX);
    assert_eq!(invalid_field::<OrderBilled>("OrderBilled", 1, data), "lines[0].unitPriceMinor");

    // PaymentDeclined and StockAllocationFailed.
    let declined = sample_data("sales-order-status/payment-declined.sqs.json");
    let mut data = declined.clone();
    data["amountMinor"] = json!(-5);
    assert_eq!(invalid_field::<PaymentDeclined>("PaymentDeclined", 1, data), "amountMinor");
    let short = sample_data("sales-order-status/stock-allocation-failed.sqs.json");
    let mut data = short.clone();
    data["shortages"][0]["available"] = data["shortages"][0]["requested"].clone();
    assert_eq!(invalid_field::<StockAllocationFailed>("StockAllocationFailed", 1, data), "shortages[0].available");
    let mut data = short.clone();
    data["shortages"] = json!([]);
    assert_eq!(invalid_field::<StockAllocationFailed>("StockAllocationFailed", 1, data), "shortages");
}

#[test]
fn an_order_version_out_of_bounds_is_refused_so_it_can_never_pin_a_copy() {
    let changed = sample_data("cache/order-status-changed.sqs.json");
    assert!(OrderStatusChanged::decode("OrderStatusChanged", 1, &raw(changed.clone())).is_ok());
    for version in [json!(0), json!(MAX_ORDER_VERSION + 1), json!(u64::MAX)] {
        let mut data = changed.clone();
        data["order"]["version"] = version.clone();
        assert_eq!(
            invalid_field::<OrderStatusChanged>("OrderStatusChanged", 1, data),
            "order.version",
            "version {version}"
        );
    }
    let mut data = changed.clone();
    data["order"]["version"] = json!(MAX_ORDER_VERSION);
    assert!(OrderStatusChanged::decode("OrderStatusChanged", 1, &raw(data)).is_ok(), "the bound itself is accepted");
    let mut data = changed.clone();
    data["order"]["totals"]["totalMinor"] = json!(1);
    assert_eq!(invalid_field::<OrderStatusChanged>("OrderStatusChanged", 1, data), "order.totals.totalMinor");
}

#[test]
fn a_short_order_id_is_cut_at_characters_not_bytes() {
    assert_eq!(short_order_id("ord-7f3a2c-1234"), "ord-7f3a");
    assert_eq!(short_order_id("注文-日本語の注文番号"), "注文-日本語の注");
    assert_eq!(short_order_id("short"), "short");
}
