//! `infra/template.yaml` and the code cannot drift apart: each consumer's rule routes exactly the
//! `detail-type`s and `source`s its Rust `Inbound` type reads, and each function is given exactly the
//! environment variables its `main` reads. Plain tests: no emulator needed.

use std::collections::BTreeSet;

use orderflow_e2e::template::{fed_by, inbound, main_source, variables_read, Template};
use orderflow_ops::replay::rule_guard;

fn set(items: impl IntoIterator<Item = impl Into<String>>) -> BTreeSet<String> {
    items.into_iter().map(Into::into).collect()
}

fn strings(pattern: &serde_json::Value, key: &str) -> BTreeSet<String> {
    pattern[key].as_array().into_iter().flatten().filter_map(|v| v.as_str().map(str::to_string)).collect()
}

#[test]
fn every_consumer_rule_routes_exactly_what_its_code_reads() {
    let template = Template::load().unwrap();
    let consumers: Vec<_> = template.functions().into_iter().filter(|f| f.queue.is_some()).collect();
    assert!(consumers.len() >= 3, "{consumers:?}");
    for f in consumers {
        let queue = f.queue.as_deref().unwrap();
        let Some(rule) = template.rule_for_queue(queue) else {
            assert!(
                fed_by(&f.binary).is_some(),
                "{}: no rule targets {queue}, and no function is said to feed it",
                f.logical_id
            );
            continue;
        };
        let (detail_types, sources) = inbound(&f.binary)
            .unwrap_or_else(|| panic!("{}: add its Inbound type to orderflow_e2e::template::inbound", f.binary));
        assert_eq!(strings(&rule.pattern, "detail-type"), set(detail_types.iter().copied()), "{}", rule.logical_id);
        assert_eq!(strings(&rule.pattern, "source"), set(sources.iter().copied()), "{}", rule.logical_id);
        // Live events, or a replay of this consumer's own (see orderflow_ops::replay).
        let name = f.consumer_name.as_deref().unwrap_or_else(|| panic!("{}: no CONSUMER_NAME", f.logical_id));
        assert_eq!(rule.pattern["$or"], rule_guard(name), "{}: the replay guard", rule.logical_id);
        let other_keys: Vec<&String> = rule
            .pattern
            .as_object()
            .unwrap()
            .keys()
            .filter(|k| !["detail-type", "source", "$or"].contains(&k.as_str()))
            .collect();
        assert!(other_keys.is_empty(), "{}: pattern keys this test does not check: {other_keys:?}", rule.logical_id);
    }
}

#[test]
fn every_function_gets_exactly_the_variables_its_main_reads() {
    let template = Template::load().unwrap();
    let functions = template.functions();
    assert!(functions.len() >= 5, "{functions:?}");
    for f in functions {
        let source =
            main_source(&f.binary).unwrap_or_else(|| panic!("{}: no source for binary {}", f.logical_id, f.binary));
        let (required, optional) = variables_read(&source).unwrap();
        let given: BTreeSet<String> = f.env.union(template.globals_env()).cloned().collect();
        let missing: Vec<&String> = required.difference(&given).collect();
        assert!(
            missing.is_empty(),
            "{}: {} requires {missing:?}, the template does not set them",
            f.logical_id,
            source.display()
        );
        let read: BTreeSet<String> = required.union(&optional).cloned().collect();
        let unread: Vec<&String> = f.env.difference(&read).collect();
        assert!(
            unread.is_empty(),
            "{}: the template sets {unread:?}, {} never reads them",
            f.logical_id,
            source.display()
        );
    }
}

#[test]
fn the_checks_above_can_fail() {
    // The scanner finds what a main reads; a variable it cannot see would make the test above vacuous.
    let (required, optional) = variables_read(&main_source("billing").unwrap()).unwrap();
    assert!(required.contains("INVOICES_TABLE") && required.contains("DEAD_LETTER_QUEUE_URL"), "{required:?}");
    assert!(optional.contains("DECLINE_ABOVE_MINOR"), "{optional:?}");
    assert_eq!(inbound("billing").unwrap().0, &["OrderPlaced"]);
}

#[test]
fn no_function_crate_depends_on_another() {
    // Each function's crate stands on the shared crates only; what two functions share moves to
    // `shared/` (as the order cache's store did). Read from `cargo metadata`, as cargo sees it.
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args(["metadata", "--no-deps", "--offline", "--format-version", "1"])
        .current_dir(orderflow_e2e::template::root())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let metadata: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let packages = metadata["packages"].as_array().unwrap();
    let is_function = |p: &serde_json::Value| p["manifest_path"].as_str().unwrap().contains("/functions/");
    let functions: BTreeSet<&str> =
        packages.iter().filter(|p| is_function(p)).map(|p| p["name"].as_str().unwrap()).collect();
    assert!(functions.len() >= 9, "{functions:?}");
    for package in packages.iter().filter(|p| is_function(p)) {
        let on: Vec<&str> = package["dependencies"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["name"].as_str().unwrap())
            .filter(|d| functions.contains(d))
            .collect();
        assert!(on.is_empty(), "{} depends on the function crate(s) {on:?}", package["name"]);
    }
}
