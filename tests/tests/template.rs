//! `infra/template.yaml` and the code cannot drift apart: each consumer's rule routes exactly the
//! `detail-type`s and `source`s its Rust `Inbound` type reads, and each function is given exactly the
//! environment variables its `main` reads. Plain tests: no emulator needed.

use std::collections::{BTreeMap, BTreeSet};

use orderflow_consumers::replay::rule_guard;
use orderflow_consumers::{find, Feed, CONSUMERS};
use orderflow_e2e::template::{main_source, tagged_ref, variables_read, Template};
use serde_norway::Value;

fn set(items: impl IntoIterator<Item = impl Into<String>>) -> BTreeSet<String> {
    items.into_iter().map(Into::into).collect()
}

fn strings(pattern: &serde_json::Value, key: &str) -> BTreeSet<String> {
    pattern[key].as_array().into_iter().flatten().filter_map(|v| v.as_str().map(str::to_string)).collect()
}

#[test]
fn every_consumer_rule_routes_exactly_what_its_code_reads_and_the_replays_its_row_allows() {
    let template = Template::load().unwrap();
    let consumers: Vec<_> = template.functions().into_iter().filter(|f| f.queue.is_some()).collect();
    assert_eq!(consumers.len(), CONSUMERS.len(), "every SQS consumer of the template has a row: {consumers:?}");
    for f in consumers {
        let name = f.consumer_name.as_deref().unwrap_or_else(|| panic!("{}: no CONSUMER_NAME", f.logical_id));
        let row = find(name).unwrap_or_else(|| panic!("{name}: not in the consumer table"));
        assert_eq!(f.binary, row.binary, "{name}");
        let queue = f.queue.as_deref().unwrap();
        let rule = template.rule_for_queue(queue);
        let routes = match (row.feed, rule) {
            (Feed::Bus(routes), Some(rule)) => (routes, rule),
            (Feed::Consumer { name: feeder, env }, None) => {
                // The feeding function is given this queue's URL.
                let feeding = template.functions().into_iter().find(|g| g.consumer_name.as_deref() == Some(feeder));
                assert!(feeding.unwrap().env.contains(env), "{feeder} is not given {env}");
                continue;
            }
            (feed, rule) => panic!("{name}: its row says {feed:?}, the template has rule {rule:?}"),
        };
        let (routes, rule) = routes;
        assert_eq!(
            strings(&rule.pattern, "detail-type"),
            set(routes.detail_types.iter().copied()),
            "{}",
            rule.logical_id
        );
        assert_eq!(strings(&rule.pattern, "source"), set(routes.sources.iter().copied()), "{}", rule.logical_id);
        // Live events, and this consumer's own replays if its row takes them.
        let (key, guard) = rule_guard(row);
        assert_eq!(rule.pattern[key], guard, "{}: the replay guard", rule.logical_id);
        let other_keys: Vec<&String> = rule
            .pattern
            .as_object()
            .unwrap()
            .keys()
            .filter(|k| !["detail-type", "source", key].contains(&k.as_str()))
            .collect();
        assert!(other_keys.is_empty(), "{}: pattern keys this test does not check: {other_keys:?}", rule.logical_id);
    }
}

#[test]
fn a_refused_consumer_takes_no_replay_and_an_accepting_one_only_its_own() {
    // The guards as EventBridge would apply them: a pattern's key matches when one of its conditions does.
    fn takes(guard: &(&str, serde_json::Value), replay_name: Option<&str>) -> bool {
        let matches = |conditions: &serde_json::Value| {
            conditions.as_array().unwrap().iter().any(|c| match (&c["exists"], &c["prefix"], replay_name) {
                (serde_json::Value::Bool(false), _, None) => true,
                (_, serde_json::Value::String(p), Some(name)) => name.starts_with(p.as_str()),
                _ => false,
            })
        };
        match guard.0 {
            "$or" => guard.1.as_array().unwrap().iter().any(|alt| matches(&alt["replay-name"])),
            _ => matches(&guard.1),
        }
    }
    let (sms, reporting) = (rule_guard(find("sms").unwrap()), rule_guard(find("reporting").unwrap()));
    assert!(takes(&sms, None) && takes(&reporting, None), "live events reach both");
    assert!(!takes(&sms, Some("sms.20261201T000000")), "sms takes no replay, not even one named for it");
    assert!(takes(&reporting, Some("reporting.20261201T000000")));
    assert!(!takes(&reporting, Some("lake.20261201T000000")));
}

fn get<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, key| v.get(*key))
}

#[test]
fn every_consumer_has_its_operating_limits_and_alarms() {
    let template = Template::load().unwrap();
    let alarms: Vec<(&String, &Value)> = template.of_type("AWS::CloudWatch::Alarm").collect();
    for (id, alarm) in &alarms {
        let actions = get(alarm, &["Properties", "AlarmActions"]).and_then(Value::as_sequence);
        assert_eq!(
            actions.map(|a| a.iter().filter_map(tagged_ref).collect::<Vec<_>>()),
            Some(vec!["AlarmTopic".to_string()]),
            "{id}: every alarm notifies the one topic"
        );
    }
    let alarm_on = |metric: &str, dimension: &str| {
        alarms.iter().any(|(_, a)| {
            get(a, &["Properties", "MetricName"]).and_then(Value::as_str) == Some(metric)
                && get(a, &["Properties", "Dimensions"]).and_then(Value::as_sequence).is_some_and(|d| {
                    d.iter().any(|d| d.get("Value").and_then(tagged_ref).as_deref() == Some(dimension))
                })
        })
    };
    for row in CONSUMERS {
        let function = template.resource(&row.logical("Function")).unwrap();
        let props = function.get("Properties").unwrap();
        let scaling = get(props, &["Events", "Queue", "Properties", "ScalingConfig", "MaximumConcurrency"]);
        assert_eq!(scaling.and_then(Value::as_u64), Some(row.max_concurrency as u64), "{}", row.name);
        let log_group = get(props, &["LoggingConfig", "LogGroup"]).and_then(tagged_ref).unwrap();
        let retention = get(template.resource(&log_group).unwrap(), &["Properties", "RetentionInDays"]);
        assert!(retention.is_some(), "{}: its log group keeps logs for a set time", row.name);
        assert!(alarm_on("ApproximateNumberOfMessagesVisible", &row.logical("DeadLetterQueue")), "{}", row.name);
        assert!(alarm_on("ApproximateAgeOfOldestMessage", &row.logical("Queue")), "{}", row.name);
        assert!(alarm_on("Errors", &row.logical("Function")), "{}", row.name);
        assert!(alarm_on("Throttles", &row.logical("Function")), "{}", row.name);
        if row.routes().is_some() {
            let rule = template.resource(&row.logical("Rule")).unwrap();
            let target = &get(rule, &["Properties", "Targets"]).and_then(Value::as_sequence).unwrap()[0];
            let dlq = get(target, &["DeadLetterConfig", "Arn"]).and_then(tagged_ref);
            assert_eq!(
                dlq,
                Some(row.logical("RuleDeadLetterQueue")),
                "{}: what the bus cannot deliver is kept",
                row.name
            );
            assert!(target.get("RetryPolicy").is_some(), "{}", row.name);
            assert!(
                alarm_on("ApproximateNumberOfMessagesVisible", &row.logical("RuleDeadLetterQueue")),
                "{}",
                row.name
            );
        }
    }
    // Every function, the consumers' and the others', logs to a group with a retention.
    for f in template.functions() {
        let function = template.resource(&f.logical_id).unwrap();
        let group = get(function, &["Properties", "LoggingConfig", "LogGroup"]).and_then(tagged_ref);
        let group = group.unwrap_or_else(|| panic!("{}: no log group of its own", f.logical_id));
        assert!(get(template.resource(&group).unwrap(), &["Properties", "RetentionInDays"]).is_some(), "{group}");
    }
    assert!(alarm_on("IteratorAge", "SalesOutboxRelayFunction"), "the relay's lag");
    assert!(alarm_on("Errors", "SalesOutboxRelayFunction"), "the relay failing");
    assert!(
        alarm_on("ApproximateNumberOfMessagesVisible", "SalesOutboxRelayDeadLetterQueue"),
        "what the relay can never publish, and the ranges its stream gave up on"
    );
    // The APIs answer their own failures (a 503), which Lambda's Errors metric never counts.
    assert!(alarm_on("5xx", "HttpApi"), "customers' failing requests page someone");
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
    let (required, _) = variables_read(&main_source("sales-outbox-relay").unwrap()).unwrap();
    assert!(required.contains("EVENT_BUS_NAME"), "a `config::vars` constant is read too: {required:?}");
    // The cache's settings are read in its shared crate: a main that opens it reads them too.
    for binary in ["cache", "sales-api"] {
        let (_, optional) = variables_read(&main_source(binary).unwrap()).unwrap();
        assert!(optional.contains("REDIS_CA_FILE") && optional.contains("CACHE_TTL_SECONDS"), "{binary}: {optional:?}");
    }
}

#[test]
fn no_function_crate_depends_on_another() {
    // Each function's crate stands on the shared crates only; what two functions share moves to
    // `shared/` (as the order cache's store did). Read from `cargo metadata`, as cargo sees it.
    let metadata = cargo_metadata();
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

/// What cargo prints as JSON for `args`, run in the workspace. `unstable`: for `--unit-graph`, an
/// unstable flag, asked of this stable cargo for the query alone (`RUSTC_BOOTSTRAP=1`; nothing is
/// compiled).
fn cargo_json(args: &[&str], unstable: bool) -> serde_json::Value {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = std::process::Command::new(cargo);
    command.args(args).arg("--offline").current_dir(orderflow_e2e::template::root());
    if unstable {
        command.args(["-Z", "unstable-options", "--unit-graph"]).env("RUSTC_BOOTSTRAP", "1");
    }
    let out = command.output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The workspace's packages and their targets, as `cargo metadata` says.
fn cargo_metadata() -> serde_json::Value {
    cargo_json(&["metadata", "--no-deps", "--format-version", "1"], false)
}

/// The source files of a target that hold a unit test: for a binary its file, for a library every
/// file beside its root but the binaries'.
fn files_with_unit_tests(target: &serde_json::Value) -> Vec<std::path::PathBuf> {
    fn rust_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() && path.file_name().is_some_and(|n| n != "bin") {
                rust_files(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") && path.file_name().is_some_and(|n| n != "main.rs") {
                out.push(path);
            }
        }
    }
    let root = std::path::PathBuf::from(target["src_path"].as_str().unwrap());
    let mut files = Vec::new();
    if target["kind"][0] == "lib" {
        rust_files(root.parent().unwrap(), &mut files);
    } else {
        files.push(root);
    }
    files.retain(|f| {
        let text = std::fs::read_to_string(f).unwrap();
        ["#[test]", "#[tokio::test", "#[cfg(test)]"].iter().any(|marker| text.contains(marker))
    });
    files
}

#[test]
fn no_target_that_cargo_test_skips_holds_a_unit_test() {
    // `test = false` spares `cargo test` compiling and linking a target a second time as an empty
    // test binary; a unit test added to such a target later would never run, silently.
    let metadata = cargo_metadata();
    let targets: Vec<&serde_json::Value> = metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap())
        .filter(|t| t["kind"][0] == "lib" || t["kind"][0] == "bin")
        .collect();
    let skipped: Vec<&&serde_json::Value> = targets.iter().filter(|t| t["test"] == false).collect();
    assert!(skipped.len() >= 25, "{} targets skipped", skipped.len());
    for target in skipped {
        let files = files_with_unit_tests(target);
        assert!(files.is_empty(), "{}: `test = false`, yet {files:?} hold unit tests", target["name"]);
    }
    // The check can fail: the harness's library, which cargo test does run, has unit tests it finds.
    let harness = targets.iter().find(|t| t["name"] == "orderflow_harness" && t["kind"][0] == "lib").unwrap();
    assert_eq!(harness["test"], true);
    assert!(files_with_unit_tests(harness).len() >= 3, "{:?}", files_with_unit_tests(harness));
}

#[test]
fn every_test_file_is_a_module_of_the_one_test_binary() {
    // `autotests = false` (tests/Cargo.toml): cargo no longer makes a binary of each file in
    // tests/tests/, so a file that tests/all.rs does not declare would be compiled and run by nobody.
    let dir = orderflow_e2e::template::root().join("tests/tests");
    let all = std::fs::read_to_string(dir.join("all.rs")).unwrap();
    let declared: BTreeSet<&str> = all.lines().filter_map(|l| l.strip_prefix("mod ")?.strip_suffix(';')).collect();
    let files: BTreeSet<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter_map(|name| Some(name.strip_suffix(".rs")?.to_string()))
        .filter(|name| name != "all")
        .collect();
    let missing: Vec<String> =
        files.iter().filter(|f| !declared.contains(f.as_str())).map(|f| format!("tests/tests/{f}.rs")).collect();
    assert!(missing.is_empty(), "{missing:?}: not a `mod` of tests/tests/all.rs, so never run");
    // The check can fail: it finds this file among them.
    assert!(declared.contains("template") && files.contains("template"), "{declared:?} {files:?}");
}

/// What cargo would compile for `args`, from `--unit-graph`.
fn unit_graph(args: &[&str]) -> serde_json::Value {
    cargo_json(args, true)
}

/// The unit graphs of the emulator's deployment (every function's binary) and of the tests, as
/// `make test` builds them; asked once for the tests below that compare them.
fn deployment_and_test_graphs() -> &'static (serde_json::Value, serde_json::Value) {
    static GRAPHS: std::sync::OnceLock<(serde_json::Value, serde_json::Value)> = std::sync::OnceLock::new();
    GRAPHS.get_or_init(|| {
        let binaries: Vec<String> = Template::load().unwrap().functions().into_iter().map(|f| f.binary).collect();
        let mut deploy = vec!["build"];
        for binary in &binaries {
            deploy.extend(["--bin", binary.as_str()]);
        }
        (unit_graph(&deploy), unit_graph(&["test", "--workspace", "--no-run"]))
    })
}

/// The workspace's own targets in a unit graph: package, target name and kind.
fn workspace_targets(graph: &serde_json::Value) -> BTreeSet<String> {
    graph["units"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|u| !u["pkg_id"].as_str().unwrap().starts_with("registry+"))
        .filter(|u| u["mode"] != "run-custom-build" && u["target"]["kind"][0] != "custom-build")
        .map(|u| {
            format!(
                "{} {} ({})",
                u["pkg_id"].as_str().unwrap().rsplit('/').next().unwrap(),
                u["target"]["name"],
                u["target"]["kind"][0]
            )
        })
        .collect()
}

#[test]
fn the_deployment_the_tests_and_the_benchmarks_compile_every_target_clippy_would_check() {
    // `make test` lints through clippy-driver as the compiler of the deployment, the tests and
    // the benchmarks (tests/run.sh): a target none of them compiles would go unlinted. (A binary
    // compiled only as a test, as ops', is linted with its test code: what `cfg(not(test))`
    // hides from that compile alone would be missed; no binary here has such code.)
    let (deployed, tested) = deployment_and_test_graphs();
    let mut compiled = workspace_targets(deployed);
    compiled.extend(workspace_targets(tested));
    compiled.extend(workspace_targets(&unit_graph(&["test", "--workspace", "--bench", "*", "--no-run"])));
    let clippy = workspace_targets(&unit_graph(&["clippy", "--workspace", "--all-targets"]));
    assert!(clippy.len() >= 60, "{clippy:?}");
    let unlinted: Vec<&String> = clippy.difference(&compiled).collect();
    assert!(unlinted.is_empty(), "neither the deployment nor the tests compile {unlinted:?}");
}

/// Every unit of a unit graph (the registry's crates and the workspace's own), each as a signature
/// of its package, target, mode, features, profile and platform, and its dependencies' signatures
/// in turn (a hash of them: spelt out, the signatures of the test binaries' trees grow past the
/// machine's memory), to its package and target: two builds reuse a compile exactly where the
/// signatures agree. The profile's name is left out: cargo shares a compile between `dev` and
/// `test` when their settings agree, as here.
fn unit_signatures(graph: &serde_json::Value) -> BTreeMap<u64, String> {
    use std::hash::{Hash, Hasher};
    let units = graph["units"].as_array().unwrap();
    fn signature(units: &[serde_json::Value], i: usize, memo: &mut Vec<Option<u64>>) -> u64 {
        if let Some(known) = memo[i] {
            return known;
        }
        let unit = &units[i];
        let mut profile = unit["profile"].clone();
        profile.as_object_mut().unwrap().remove("name");
        let mut dependencies: Vec<u64> = unit["dependencies"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| signature(units, d["index"].as_u64().unwrap() as usize, memo))
            .collect();
        dependencies.sort_unstable();
        let own =
            [&unit["pkg_id"], &unit["target"]["name"], &unit["mode"], &unit["features"], &profile, &unit["platform"]];
        // The same hasher with the same keys for both graphs, within this one process.
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        serde_json::json!(own).to_string().hash(&mut hasher);
        dependencies.hash(&mut hasher);
        let signature = hasher.finish();
        memo[i] = Some(signature);
        signature
    }
    let mut memo = vec![None; units.len()];
    (0..units.len())
        .map(|i| {
            // `registry+...#name@version`, or `path+file:///.../dir#version` where the name is the dir's.
            let (url, fragment) = units[i]["pkg_id"].as_str().unwrap().rsplit_once('#').unwrap();
            let package = match fragment.contains('@') {
                true => fragment.to_string(),
                false => format!("{}@{fragment}", url.rsplit('/').next().unwrap()),
            };
            let target = &units[i]["target"];
            let name =
                format!("{package} {} ({})", target["name"].as_str().unwrap(), target["kind"][0].as_str().unwrap());
            (signature(units, i, &mut memo), name)
        })
        .collect()
}

#[test]
fn the_tests_reuse_the_deployments_compile_of_every_crate() {
    // `make test` builds the functions for the emulator, then the tests: a crate whose features
    // differ between the two (a test-only crate turning one on) is compiled twice, and with it
    // everything above it. Once, `either`'s `use_std` (from criterion's itertools) made the test
    // build compile the whole AWS SDK again; and the harness's test support, a feature the
    // functions' dev-dependencies turned on, compiled every function's library and binary again
    // (it is a crate of its own now, `orderflow-harness-testing`).
    let (deployed, tested) = deployment_and_test_graphs();
    let (deployed, tested) = (unit_signatures(deployed), unit_signatures(tested));
    assert!(deployed.values().any(|u| u.starts_with("aws-sdk-dynamodb@")), "{} units", deployed.len());
    assert!(deployed.values().any(|u| u == "billing@0.1.0 billing (bin)"), "{:?}", deployed.values());
    // A unit the tests compile too (the same package, target and kind), but not as the deployment did.
    let also_tested: BTreeSet<&String> = tested.values().collect();
    let twice: BTreeSet<&String> = deployed
        .iter()
        .filter(|(signature, name)| also_tested.contains(name) && !tested.contains_key(*signature))
        .map(|(_, name)| name)
        .collect();
    assert!(twice.is_empty(), "compiled again for the tests, with other features or dependencies: {twice:?}");
}

/// Every statement of every function's inline policies, with the function's logical id and its
/// `CONSUMER_NAME` (if it has one).
fn statements(template: &Template) -> Vec<(String, Option<String>, Value)> {
    let mut all = Vec::new();
    for f in template.functions() {
        let function = template.resource(&f.logical_id).unwrap();
        for policy in get(function, &["Properties", "Policies"]).and_then(Value::as_sequence).into_iter().flatten() {
            for statement in policy.get("Statement").and_then(Value::as_sequence).into_iter().flatten() {
                all.push((f.logical_id.clone(), f.consumer_name.clone(), statement.clone()));
            }
        }
    }
    all
}

fn actions(statement: &Value) -> Vec<String> {
    match statement.get("Action") {
        Some(Value::String(one)) => vec![one.clone()],
        Some(Value::Sequence(many)) => many.iter().filter_map(|a| a.as_str().map(str::to_string)).collect(),
        _ => Vec::new(),
    }
}

/// The policy statements of the consumer `name` on the resource `resource` (its logical id).
fn consumer_statements_on(template: &Template, name: &str, resource: &str) -> Vec<Value> {
    statements(template)
        .into_iter()
        .filter(|(_, consumer, statement)| {
            consumer.as_deref() == Some(name)
                && get(statement, &["Resource"]).and_then(tagged_ref).as_deref() == Some(resource)
        })
        .map(|(_, _, statement)| statement)
        .collect()
}

/// The strings of the YAML list at `path` in `v`; `None` where there is no list.
fn string_list(v: &Value, path: &[&str]) -> Option<Vec<String>> {
    get(v, path).and_then(Value::as_sequence).map(|l| l.iter().filter_map(|s| s.as_str().map(str::to_string)).collect())
}

#[test]
fn each_function_publishes_as_itself_and_writes_only_its_own_idempotency_records() {
    let template = Template::load().unwrap();
    let statements = statements(&template);
    let mut publishers = 0;
    let mut idempotent = 0;
    for (id, consumer, statement) in &statements {
        let acts = actions(statement);
        if acts.iter().any(|a| a == "events:PutEvents") {
            publishers += 1;
            let source = get(statement, &["Condition", "StringEquals", "events:source"]).and_then(Value::as_str);
            let expected = match (consumer.as_deref(), id.as_str()) {
                (Some(name), _) => {
                    let row = find(name).unwrap();
                    // Every publishing consumer names what it announces, and may announce that only.
                    assert!(!row.publishes_only.is_empty(), "{name}: its row names the detail types it publishes");
                    let only = string_list(statement, &["Condition", "StringEquals", "events:detail-type"]);
                    let row_only = row.publishes_only.iter().map(|s| s.to_string()).collect();
                    assert_eq!(only, Some(row_only), "{id}: only the detail types its row names");
                    row.publishes
                }
                // Warehouse's stock route announces receipts, and nothing else.
                (None, "WarehouseApiFunction") => {
                    let only =
                        get(statement, &["Condition", "StringEquals", "events:detail-type"]).and_then(Value::as_str);
                    assert_eq!(only, Some("StockReceived"), "{id}: receipts only");
                    Some("orderflow.warehouse")
                }
                // Sales' API publishes the events of its own writes (the outbox's fast path), and
                // the relay what Sales stored: Sales' only.
                (None, "SalesApiFunction" | "SalesOutboxRelayFunction") => {
                    let only = string_list(statement, &["Condition", "StringEquals", "events:detail-type"]);
                    let writes = ["OrderPlaced", "OrderStatusChanged", "OrderCancelled"].map(String::from).to_vec();
                    assert_eq!(only, Some(writes), "{id}: the events its writes store, only");
                    Some("orderflow.sales")
                }
                (None, other) => panic!("{other} publishes: which events may it?"),
            };
            assert_eq!(source, expected, "{id}: PutEvents only for its own source");
        }
        if get(statement, &["Resource"]).and_then(tagged_ref).as_deref() == Some("IdempotencyTable") {
            idempotent += 1;
            let name =
                consumer.as_deref().unwrap_or_else(|| panic!("{id}: not a consumer, yet on the idempotency table"));
            let keys = string_list(statement, &["Condition", "ForAllValues:StringLike", "dynamodb:LeadingKeys"]);
            assert_eq!(keys, Some(vec![format!("{name}#*")]), "{id}: only the records under its own name");
        }
        if acts.iter().any(|a| a.starts_with("ses:")) {
            let text = serde_json::to_string(&orderflow_e2e::template::to_json(statement)).unwrap();
            assert!(!text.contains("identity/*"), "{id}: SES for the suite's identity only: {text}");
            assert!(get(statement, &["Condition"]).is_some(), "{id}: SES only as the suite's sender");
        }
    }
    assert_eq!(
        publishers, 6,
        "billing, warehouse, its stock route, the outbox relay, and Sales' two writers (the API and the status consumer, the outbox's fast path) publish"
    );
    assert_eq!(idempotent, CONSUMERS.iter().filter(|c| c.idempotency).count());
}

/// The fan-out reads the subscriptions for their routes alone: a `Scan` limited to the attributes
/// its code asks for (`webhooks::subscriptions::ROUTE_ATTRIBUTES`), never a subscriber's URL or
/// signing secret, and nothing else on that table.
#[test]
fn the_webhooks_fanout_may_scan_the_subscriptions_for_their_routes_only() {
    let template = Template::load().unwrap();
    let on_subscriptions = consumer_statements_on(&template, "webhooks-fanout", "WebhookSubscriptionsTable");
    let [statement] = on_subscriptions.as_slice() else {
        panic!("one statement of the fan-out's on the subscriptions table: {on_subscriptions:?}")
    };
    assert_eq!(actions(statement), vec!["dynamodb:Scan".to_string()]);
    let attributes = string_list(statement, &["Condition", "ForAllValues:StringEquals", "dynamodb:Attributes"]);
    assert_eq!(attributes, Some(webhooks::subscriptions::ROUTE_ATTRIBUTES.map(String::from).to_vec()));
    let select = get(statement, &["Condition", "StringEquals", "dynamodb:Select"]).and_then(Value::as_str);
    assert_eq!(select, Some("SPECIFIC_ATTRIBUTES"), "without it a Scan could ask for every attribute");
}

#[test]
fn removed_labels_are_not_kept_for_ever() {
    let template = Template::load().unwrap();
    let rules = get(template.resource("LabelsBucket").unwrap(), &["Properties", "LifecycleConfiguration", "Rules"])
        .and_then(Value::as_sequence)
        .expect("the labels bucket has lifecycle rules");
    let days = rules.iter().find_map(|r| get(r, &["NoncurrentVersionExpiration", "NoncurrentDays"])?.as_u64());
    assert!(days.is_some_and(|d| d <= 90), "a cancelled order's recipient and address go: {days:?}");
}

/// The delivery consumer reads the subscription it delivers to, and may change nothing of it but
/// `active` (`webhooks::subscriptions::DEACTIVATION_ATTRIBUTES`): a compromise of it cannot re-point
/// a subscriber's URL.
#[test]
fn the_webhooks_delivery_may_only_switch_a_subscription_off() {
    let template = Template::load().unwrap();
    let updates: Vec<Value> = consumer_statements_on(&template, "webhooks-delivery", "WebhookSubscriptionsTable")
        .into_iter()
        .filter(|statement| actions(statement).contains(&"dynamodb:UpdateItem".to_string()))
        .collect();
    let [statement] = updates.as_slice() else { panic!("one UpdateItem statement of the delivery's: {updates:?}") };
    assert_eq!(actions(statement), vec!["dynamodb:UpdateItem".to_string()], "nothing else under that condition");
    let attributes = string_list(statement, &["Condition", "ForAllValues:StringEquals", "dynamodb:Attributes"]);
    assert_eq!(attributes, Some(webhooks::subscriptions::DEACTIVATION_ATTRIBUTES.map(String::from).to_vec()));
    let returns =
        get(statement, &["Condition", "StringEqualsIfExists", "dynamodb:ReturnValues"]).and_then(Value::as_str);
    assert_eq!(returns, Some("NONE"), "an update may not answer with the item's URL or secret");
}

/// The webhooks API writes subscriptions, lists them without their signing secrets
/// (`webhooks::subscriptions::LISTED_ATTRIBUTES`) and switches them off; it never reads a secret back.
#[test]
fn the_webhooks_api_never_reads_a_signing_secret() {
    let template = Template::load().unwrap();
    let on_subscriptions: Vec<Value> = statements(&template)
        .into_iter()
        .filter(|(function, _, statement)| {
            function == "WebhooksApiFunction"
                && get(statement, &["Resource"]).and_then(tagged_ref).as_deref() == Some("WebhookSubscriptionsTable")
        })
        .map(|(_, _, statement)| statement)
        .collect();
    let mut allowed = BTreeSet::new();
    for statement in &on_subscriptions {
        let acts = actions(statement);
        assert_eq!(acts.len(), 1, "one action a statement, each with its own condition: {acts:?}");
        match acts[0].as_str() {
            "dynamodb:PutItem" => {}
            "dynamodb:Scan" => {
                let attributes =
                    string_list(statement, &["Condition", "ForAllValues:StringEquals", "dynamodb:Attributes"]);
                assert_eq!(attributes, Some(webhooks::subscriptions::LISTED_ATTRIBUTES.map(String::from).to_vec()));
                let select = get(statement, &["Condition", "StringEquals", "dynamodb:Select"]).and_then(Value::as_str);
                assert_eq!(select, Some("SPECIFIC_ATTRIBUTES"));
            }
            "dynamodb:UpdateItem" => {
                let attributes =
                    string_list(statement, &["Condition", "ForAllValues:StringEquals", "dynamodb:Attributes"]);
                assert_eq!(
                    attributes,
                    Some(webhooks::subscriptions::DEACTIVATION_ATTRIBUTES.map(String::from).to_vec())
                );
            }
            other => panic!("the webhooks API may not {other} the subscriptions"),
        }
        allowed.insert(acts[0].clone());
    }
    assert_eq!(allowed, set(["dynamodb:PutItem", "dynamodb:Scan", "dynamodb:UpdateItem"]));
    assert!(!webhooks::subscriptions::LISTED_ATTRIBUTES.contains(&"secret"));
}

#[test]
fn every_checkov_suppression_says_why_and_every_queue_is_encrypted() {
    let template = Template::load().unwrap();
    let mut skips = 0;
    for id in template.resource_ids() {
        let resource = template.resource(&id).unwrap();
        for skip in get(resource, &["Metadata", "checkov", "skip"]).and_then(Value::as_sequence).into_iter().flatten() {
            let check = skip.get("id").and_then(Value::as_str).unwrap_or_default();
            let why = skip.get("comment").and_then(Value::as_str).unwrap_or_default();
            assert!(check.starts_with("CKV_"), "{id}: a skip without a check id");
            assert!(why.len() >= 40, "{id}: {check} is skipped without a reason worth the name: {why:?}");
            skips += 1;
        }
    }
    assert!(skips > 0, "no suppression found: has the Metadata shape changed?");
    // What checkov's own check cannot see: SQS-managed encryption on every queue.
    for (id, queue) in template.of_type("AWS::SQS::Queue") {
        let sse = get(queue, &["Properties", "SqsManagedSseEnabled"]).and_then(Value::as_bool);
        assert_eq!(sse, Some(true), "{id} is not encrypted at rest");
    }
}

#[test]
fn the_relay_dead_letters_what_can_never_be_published_and_rides_out_a_bus_outage_for_hours() {
    let template = Template::load().unwrap();
    let relay = template.resource("SalesOutboxRelayFunction").unwrap();
    let props = relay.get("Properties").unwrap();
    let queue = "SalesOutboxRelayDeadLetterQueue";
    // The relay sends a record that can never be published to the same queue the stream's
    // on-failure destination uses, which alarms.
    let env = get(props, &["Environment", "Variables", "DEAD_LETTER_QUEUE_URL"]).and_then(tagged_ref);
    assert_eq!(env.as_deref(), Some(queue));
    let stream = get(props, &["Events", "Stream", "Properties"]).unwrap();
    let on_failure = get(stream, &["DestinationConfig", "OnFailure", "Destination"]).and_then(tagged_ref);
    assert_eq!(on_failure.as_deref(), Some(queue));
    // What is left to fail is passing: retried for hours, ending with time left in the stream's
    // 24 hours to republish, never after a few minutes of tries.
    let age = stream.get("MaximumRecordAgeInSeconds").and_then(Value::as_i64).unwrap();
    assert!((3 * 3600..=12 * 3600).contains(&age), "record age {age} s");
    let attempts = stream.get("MaximumRetryAttempts").and_then(Value::as_i64).unwrap();
    assert!(attempts == -1 || attempts >= 1000, "{attempts} tries of seconds each end an outage in minutes");
    let sends = statements(&template).into_iter().any(|(function, _, statement)| {
        function == "SalesOutboxRelayFunction"
            && actions(&statement).contains(&"sqs:SendMessage".to_string())
            && get(&statement, &["Resource"]).and_then(tagged_ref).as_deref() == Some(queue)
    });
    assert!(sends, "the relay may send to its dead-letter queue");
}

#[test]
fn the_fast_path_alarm_reads_the_metrics_the_writers_and_the_relay_emit() {
    use sales::announce::metrics::{FAST_PATH_PUBLISHED, RELAY_PUBLISHED};
    let template = Template::load().unwrap();
    let alarm = template.resource("SalesOutboxFastPathAlarm").expect("the fast path has an alarm");
    let queries = get(alarm, &["Properties", "Metrics"]).and_then(Value::as_sequence).unwrap();
    let mut read = BTreeSet::new();
    for query in queries.iter().filter_map(|q| get(q, &["MetricStat", "Metric"])) {
        let metric = query.get("MetricName").and_then(Value::as_str).unwrap();
        assert_eq!(query.get("Namespace").and_then(Value::as_str), Some(orderflow_harness::telemetry::NAMESPACE));
        let dimension = &query.get("Dimensions").and_then(Value::as_sequence).unwrap()[0];
        let (kind, name) = (dimension["Name"].as_str().unwrap(), dimension["Value"].as_str().unwrap());
        // The dimension is the name the function emits its metrics under.
        match kind {
            "Function" => {
                let main = std::fs::read_to_string(main_source(name).unwrap()).unwrap();
                assert!(main.contains(&format!("emit_invocation(\"{name}\"")), "{name} emits as {name}");
            }
            "Consumer" => {
                assert!(find(name).is_some_and(|row| row.publishes.is_some()), "{name}: a publishing consumer")
            }
            other => panic!("dimension {other}"),
        }
        read.insert((metric.to_string(), name.to_string()));
    }
    assert_eq!(
        read,
        [
            (RELAY_PUBLISHED, "sales-outbox-relay"),
            (FAST_PATH_PUBLISHED, "sales-api"),
            (FAST_PATH_PUBLISHED, "sales-order-status")
        ]
        .map(|(m, n)| (m.to_string(), n.to_string()))
        .into_iter()
        .collect::<BTreeSet<_>>()
    );
    assert_eq!(
        get(alarm, &["Condition"]).and_then(Value::as_str),
        Some("PublishOnWrite"),
        "only with the fast path on"
    );
}

#[test]
fn every_function_is_traced_and_no_function_turns_it_off() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../infra/template.yaml");
    let doc: Value = serde_norway::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(get(&doc, &["Globals", "Function", "Tracing"]).and_then(Value::as_str), Some("Active"));
    let template = Template::load().unwrap();
    for f in template.functions() {
        let own = get(template.resource(&f.logical_id).unwrap(), &["Properties", "Tracing"]);
        assert!(own.is_none(), "{}: sets its own Tracing", f.logical_id);
    }
}
