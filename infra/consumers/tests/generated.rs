//! The committed template and README are what the table generates, and the table is sound.
//! `make generate` (or `UPDATE_GENERATED=1` on this test) rewrites them.

use std::collections::BTreeSet;
use std::path::Path;

use orderflow_consumers::{find, render, Feed, Replays, CONSUMERS};
use orderflow_harness::error::growing_delay;

fn root() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn committed_template_and_readme_are_what_the_table_generates() {
    for (path, expected) in render::generated(&root()).unwrap() {
        let committed = std::fs::read_to_string(&path).unwrap();
        if committed == expected {
            continue;
        }
        if std::env::var_os("UPDATE_GENERATED").is_some() {
            std::fs::write(&path, &expected).unwrap();
            continue;
        }
        let first = committed.lines().zip(expected.lines()).position(|(a, b)| a != b).unwrap_or(0);
        panic!(
            "{} is stale (first difference at line {}: committed {:?}, generated {:?}); run `make generate`",
            path.display(),
            first + 1,
            committed.lines().nth(first),
            expected.lines().nth(first)
        );
    }
}

#[test]
fn splice_replaces_only_between_the_markers_and_fails_without_them() {
    let markers = render::Markers { begin: "# >>>", end: "# <<<" };
    let text = "a\n# >>>\nold\n# <<<\nb\n";
    assert_eq!(render::splice(text, markers, "new\n").unwrap(), "a\n# >>>\nnew\n# <<<\nb\n");
    assert!(render::splice("a\n", markers, "new\n").is_err());
    assert!(render::splice("# >>>\n# <<<\n# >>>\n# <<<\n", markers, "x\n").is_err());
}

#[test]
fn every_row_is_complete_and_unique() {
    let mut names = BTreeSet::new();
    let mut ids = BTreeSet::new();
    for c in CONSUMERS {
        assert!(!c.name.is_empty() && !c.id.is_empty() && !c.binary.is_empty() && !c.code.is_empty(), "{c:?}");
        assert!(
            !c.does.is_empty() && !c.concurrency_why.is_empty(),
            "{}: say what it does and why its concurrency",
            c.name
        );
        assert!(names.insert(c.name) && ids.insert(c.id), "{} appears twice", c.name);
        // EventBridge replay names are at most 64 characters: the name, a dot and 15 for the time.
        assert!(c.name.len() <= 48, "{}", c.name);
        // Lambda's limits for an SQS event source.
        assert!((2..=1000).contains(&c.max_concurrency), "{}: MaximumConcurrency is 2 to 1000", c.name);
        assert!((1..=10_000).contains(&c.batch_size), "{}", c.name);
        assert!(c.batch_size <= 10 || c.batching_window_s >= 1, "{}: over 10 records needs a batching window", c.name);
        assert!((1..=900).contains(&c.timeout_s), "{}", c.name);
        assert!(c.visibility_timeout_s() <= 43_200, "{}", c.name);
        assert!(c.max_receive_count >= 2, "{}: a single delivery leaves no retry", c.name);
        // The harness waits its growing delay between deliveries: the receives must ride out a
        // dependency's outage of ten minutes before a message is dead-lettered and pages someone.
        let ride_out: std::time::Duration = (1..c.max_receive_count).map(growing_delay).sum();
        assert!(ride_out >= std::time::Duration::from_secs(600), "{}: dead-lettered after {ride_out:?}", c.name);
        assert!((1..=c.batch_size).contains(&c.records_at_once), "{}", c.name);
        if let Replays::Refused(why) = c.replays {
            assert!(!why.is_empty(), "{}: say why it refuses replays", c.name);
        }
        match c.feed {
            Feed::Bus(routes) => assert!(!routes.detail_types.is_empty() && !routes.sources.is_empty(), "{}", c.name),
            Feed::Consumer { name, env } => {
                let feeder = find(name).unwrap_or_else(|| panic!("{}: fed by unknown {name}", c.name));
                assert!(feeder.env.iter().any(|(k, _)| *k == env), "{name} does not set {env}");
            }
        }
    }
}

#[test]
fn the_consumers_together_leave_the_account_concurrency_for_the_api() {
    // An account starts with 1000 concurrent executions, and Lambda keeps 100 of them unreserved.
    // The consumers at their maximum take a small share, so a backlog never starves the Sales API.
    let total: u32 = CONSUMERS.iter().map(|c| c.max_concurrency).sum();
    assert!(total <= 100, "the consumers may take {total} instances at once");
}

#[test]
fn consumers_that_reach_people_or_other_systems_refuse_replays() {
    // A replay would text, email or call every customer or subscriber of the window again; the
    // workflow's steps would publish their outcomes again as live events.
    for name in ["email", "sms", "webhooks-fanout", "webhooks-delivery", "billing", "warehouse"] {
        let c = find(name).unwrap();
        assert!(matches!(c.replays, Replays::Refused(_)), "{name} must refuse replays");
    }
    // The read models are what replays are for.
    for name in ["cache", "reporting", "lake"] {
        assert_eq!(find(name).unwrap().replays, Replays::Accepted, "{name}");
    }
}

/// The function's `main`, from its row: `src/bin/<binary>.rs` of its crate, or `src/main.rs`.
fn main_source(code: &str, binary: &str) -> String {
    let krate: std::path::PathBuf = Path::new(code).components().take(2).collect();
    let bin = root().join(&krate).join("src/bin").join(format!("{binary}.rs"));
    let path = if bin.exists() { bin } else { root().join(&krate).join("src/main.rs") };
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn a_consumer_without_idempotency_records_is_one_whose_main_keeps_no_claims() {
    // The row decides the permissions on the idempotency table; the main decides whether the
    // harness claims. A row that says "no records" over a main that claims fails on AWS (access
    // denied on every record); the reverse grants writes nobody makes.
    for c in CONSUMERS {
        let main = main_source(c.code, c.binary);
        let keeps_none = main.contains(".without_claims()") || main.contains("BatchConsumer::");
        assert_eq!(
            !c.idempotency, keeps_none,
            "{}: the row says idempotency = {}, its main disagrees",
            c.name, c.idempotency
        );
    }
}
