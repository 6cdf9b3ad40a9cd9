//! The reporting consumer over the in-memory fake, and the PostgreSQL adapter against the machine's
//! PostgreSQL (`REPORTING_TEST_ADMIN_URL`, default `postgres://postgres@127.0.0.1:5432/postgres`):
//! each test gets a database of its own, migrated by the real migrator, dropped at the end.

use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use orderflow_contracts::{OrderState, OrderStatus, Totals};
use orderflow_harness_testing::{sample_order, sqs_batch, sqs_sample, status_changed_body, Harnessed};
use pretty_assertions::assert_eq;
use reporting::handler::ReportingHandler;
use reporting::rows::{self, BillingRow, RefundRow};
use reporting::store::{InMemoryReportingStore, PgReportingStore, ReportingStore, MIGRATOR};
use sqlx::migrate::Migrator;
use sqlx::postgres::PgConnectOptions;
use sqlx::{AssertSqlSafe, ConnectOptions, Connection, Row};

/// The sample's order at `version` and `status`, under `order_id`.
fn order(order_id: &str, version: u64, status: OrderStatus) -> OrderState {
    sample_order("reporting/mixed-order-events.sqs.json", 2, order_id, version, status)
}

/// The migrations compiled in (`store::MIGRATOR`, listed by hand) against sqlx's own reading of
/// `migrations/` (`Migrator::new`, what `sqlx::migrate!` reads at compile time): a file added
/// without the list following, or one of another kind (`.up.sql`, `.down.sql`, `-- no-transaction`),
/// fails here, not in a deployed function's first write.
#[tokio::test]
async fn the_compiled_in_migrations_are_the_folders() {
    let folder = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    let read = Migrator::new(folder.as_path()).await.expect("migrations/ read");
    let summary = |m: &Migrator| {
        m.iter()
            .map(|m| (m.version, m.description.to_string(), m.migration_type, m.checksum.to_vec(), m.no_tx))
            .collect::<Vec<_>>()
    };
    assert!(read.iter().count() >= 2, "the files in migrations/ were read");
    assert_eq!(summary(&MIGRATOR), summary(&read));
}

#[tokio::test]
async fn the_samples_give_one_reported_order_ready_to_ship_and_billed() {
    let store = Arc::new(InMemoryReportingStore::default());
    let consumer = Harnessed::new("reporting", Arc::new(ReportingHandler::new(store.clone())));
    assert!(consumer.failures(sqs_sample("reporting/mixed-order-events.sqs.json")).await.is_empty());
    let reported = store.reported("ord-7f3a2c");
    let order = reported.order.unwrap();
    assert_eq!((order.version, order.status.as_str(), order.totals.total_minor), (2, "ReadyToShip", 5743));
    assert_eq!(order.lines.len(), 2);
    assert_eq!(reported.billing.unwrap().billed_minor, 5743);
}

#[tokio::test]
async fn an_older_event_after_a_newer_one_changes_nothing() {
    let store = Arc::new(InMemoryReportingStore::default());
    let consumer = Harnessed::new("reporting", Arc::new(ReportingHandler::new(store.clone())));
    for body in [
        status_changed_body(order("o-1", 2, OrderStatus::ReadyToShip)),
        status_changed_body(order("o-1", 1, OrderStatus::Placed)),
    ] {
        assert!(consumer.failures(sqs_batch(vec![body])).await.is_empty());
    }
    assert_eq!(store.reported("o-1").order.unwrap().status, "ReadyToShip");
}

#[tokio::test]
async fn a_database_that_is_down_means_retry_after_a_delay_not_the_dlq() {
    let store = Arc::new(InMemoryReportingStore::default());
    store.set_down(true);
    let consumer = Harnessed::new("reporting", Arc::new(ReportingHandler::new(store.clone())));
    assert_eq!(
        consumer.failures(sqs_batch(vec![status_changed_body(order("o-2", 2, OrderStatus::ReadyToShip))])).await,
        vec!["m0"]
    );
    assert!(consumer.dead_letters.letters().is_empty());
    assert_eq!(consumer.delays.delays().len(), 1);
}

/// A fresh database, dropped when the test ends.
struct Scratch {
    admin: PgConnectOptions,
    name: String,
    options: PgConnectOptions,
}

impl Scratch {
    async fn new() -> Self {
        let url = std::env::var("REPORTING_TEST_ADMIN_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        orderflow_harness_testing::needs_service("PostgreSQL", &url);
        let admin: PgConnectOptions = url.parse().unwrap();
        let name = format!("reporting_test_{}", uuid::Uuid::new_v4().simple());
        let mut conn = admin.connect().await.expect("the machine's PostgreSQL (make test starts it)");
        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut conn).await.unwrap();
        conn.close().await.unwrap();
        let options = admin.clone().database(&name);
        Self { admin, name, options }
    }

    async fn drop_it(self) {
        let mut conn = self.admin.connect().await.unwrap();
        sqlx::query(AssertSqlSafe(format!("DROP DATABASE {} WITH (FORCE)", self.name)))
            .execute(&mut conn)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn postgres_keeps_the_newest_version_and_the_view_adds_up() {
    let scratch = Scratch::new().await;
    let store = PgReportingStore::new(scratch.options.clone(), Duration::from_secs(5));
    let placed_at = Utc.with_ymd_and_hms(2026, 11, 28, 10, 0, 0).unwrap();

    // Versions in reverse, and billing before either.
    let mut newest = rows::state(&order("o-1", 2, OrderStatus::ReadyToShip), placed_at);
    newest.placed_at = placed_at;
    let mut oldest = rows::state(&order("o-1", 1, OrderStatus::Placed), placed_at);
    oldest.placed_at = placed_at;
    store
        .record_billing(&BillingRow {
            order_id: "o-1".into(),
            invoice_id: "inv-1".into(),
            billed_minor: 5743,
            billed_at: placed_at,
        })
        .await
        .unwrap();
    assert!(store.upsert_order(&newest).await.unwrap());
    assert!(!store.upsert_order(&oldest).await.unwrap(), "older: refused");
    assert!(!store.upsert_order(&newest).await.unwrap(), "same again: refused");

    // A second order, placed and not billed.
    let mut other = rows::state(&order("o-2", 1, OrderStatus::Placed), placed_at);
    other.placed_at = placed_at;
    other.totals = Totals { subtotal_minor: 1000, shipping_minor: 0, tax_minor: 0, total_minor: 1000 };
    assert!(store.upsert_order(&other).await.unwrap());

    // A third, billed then cancelled and refunded in full: revenue nets the refund.
    let mut cancelled = rows::state(&order("o-3", 3, OrderStatus::Cancelled), placed_at);
    cancelled.placed_at = placed_at;
    assert!(store.upsert_order(&cancelled).await.unwrap());
    let billed =
        BillingRow { order_id: "o-3".into(), invoice_id: "inv-3".into(), billed_minor: 2000, billed_at: placed_at };
    store.record_billing(&billed).await.unwrap();
    store
        .record_refund(&RefundRow { order_id: "o-3".into(), refunded_minor: 2000, refunded_at: placed_at })
        .await
        .unwrap();

    let pool = store.pool().await.unwrap();
    let row =
        sqlx::query("SELECT version, status, total_minor, invoice_id, billed_minor FROM orders WHERE order_id = 'o-1'")
            .fetch_one(pool)
            .await
            .unwrap();
    assert_eq!(row.get::<i64, _>("version"), 2);
    assert_eq!(row.get::<String, _>("status"), "ReadyToShip");
    assert_eq!(row.get::<i64, _>("total_minor"), 5743);
    assert_eq!(row.get::<String, _>("invoice_id"), "inv-1");
    let lines: Vec<(i32, String, i64)> = sqlx::query_as(
        "SELECT line_no, sku, line_total_minor FROM order_lines WHERE order_id = 'o-1' ORDER BY line_no",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    assert_eq!(lines, vec![(1, "BOOK-001".to_string(), 3998), (2, "MUG-002".to_string(), 1250)]);

    let report: Vec<(String, String, i64, i64)> =
        sqlx::query_as("SELECT day::text, status, orders, revenue_minor FROM daily_order_report ORDER BY status")
            .fetch_all(pool)
            .await
            .unwrap();
    assert_eq!(
        report,
        vec![
            ("2026-11-28".to_string(), "Cancelled".to_string(), 1, 0),
            ("2026-11-28".to_string(), "Placed".to_string(), 1, 0),
            ("2026-11-28".to_string(), "ReadyToShip".to_string(), 1, 5743),
        ]
    );
    pool.close().await;
    scratch.drop_it().await;
}

#[tokio::test]
async fn a_database_that_refuses_connections_is_a_retryable_error() {
    let options = PgConnectOptions::new_without_pgpass().host("127.0.0.1").port(1).username("postgres").database("x");
    let store = PgReportingStore::new(options, Duration::from_secs(2));
    let error = store.upsert_order(&rows::state(&order("o-3", 1, OrderStatus::Placed), Utc::now())).await.unwrap_err();
    assert!(error.retryable, "{error}");
}

#[tokio::test]
async fn a_write_held_up_by_a_lock_elsewhere_is_given_up_as_retryable_in_bounded_time() {
    use reporting::store::{connect_options, ATTEMPT_TIMEOUT, STATEMENT_TIMEOUT};
    let scratch = Scratch::new().await;
    // As main connects (the server cancels a statement after STATEMENT_TIMEOUT), and without the
    // server's timeout (the attempt's own bound ends the wait: a server that stopped answering).
    let admin = scratch.admin.clone();
    let (host, port) = (admin.get_host().to_string(), admin.get_port());
    let as_main = connect_options(&host, port, &scratch.name, "disable", None).unwrap().username("postgres");
    for (options, gives_up, after) in [
        (as_main, "statement timeout", STATEMENT_TIMEOUT),
        (scratch.options.clone(), "no answer within", ATTEMPT_TIMEOUT),
    ] {
        let store = PgReportingStore::new(options, Duration::from_secs(3));
        let row = rows::state(&order("o-5", 1, OrderStatus::Placed), Utc::now());
        store.upsert_order(&row).await.unwrap();

        // Another session holds the orders table (a long migration, an operator's transaction).
        let mut holder = scratch.options.connect().await.unwrap();
        sqlx::raw_sql("BEGIN; LOCK TABLE orders IN ACCESS EXCLUSIVE MODE").execute(&mut holder).await.unwrap();
        let mut newer = rows::state(&order("o-5", 2, OrderStatus::ReadyToShip), Utc::now());
        newer.placed_at = row.placed_at;
        let started = std::time::Instant::now();
        let waited = tokio::time::timeout(ATTEMPT_TIMEOUT * 2, store.upsert_order(&newer)).await;
        let error = waited.expect("given up by the store, not left waiting on the lock").unwrap_err();
        let took = started.elapsed();
        assert!(error.retryable, "{error}");
        assert!(error.to_string().contains(gives_up), "{gives_up}: {error}");
        // Bounded on both sides: it waited for its bound, and not much past it.
        assert!(took >= after && took < after + Duration::from_millis(900), "{gives_up}: {took:?}");

        // The lock gone, the write goes through on the store's same pool.
        sqlx::raw_sql("ROLLBACK").execute(&mut holder).await.unwrap();
        holder.close().await.unwrap();
        assert!(store.upsert_order(&newer).await.unwrap(), "{gives_up}");
        store.pool().await.unwrap().close().await;
        sqlx::raw_sql("DELETE FROM order_lines; DELETE FROM orders")
            .execute(&mut scratch.options.connect().await.unwrap())
            .await
            .unwrap();
    }
    scratch.drop_it().await;
}

#[tokio::test]
async fn a_database_recreated_under_a_warm_instance_is_migrated_again() {
    let scratch = Scratch::new().await;
    let store = PgReportingStore::new(scratch.options.clone(), Duration::from_secs(5));
    let row = rows::state(&order("o-4", 1, OrderStatus::Placed), Utc::now());
    assert!(store.upsert_order(&row).await.unwrap());

    // The database emptied behind the store's back (as the local deployment's reset does).
    let mut conn = scratch.options.connect().await.unwrap();
    sqlx::raw_sql("DROP VIEW daily_order_report; DROP TABLE order_lines, orders, _sqlx_migrations")
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();

    let error = store.upsert_order(&row).await.unwrap_err();
    assert!(error.retryable, "{error}");
    assert!(store.upsert_order(&row).await.unwrap(), "migrated again, then written");
    store.pool().await.unwrap().close().await;
    scratch.drop_it().await;
}

#[tokio::test]
async fn rotated_credentials_are_read_again_on_a_refused_login_and_nothing_dead_letters() {
    use orderflow_harness::secret::{InMemorySecret, RotatingSecret};
    use reporting::store::parse_credentials;
    let scratch = Scratch::new().await;
    // RDS's alternating-users rotation: the secret moves from one role to the other, and the old
    // role stops logging in. (This machine's PostgreSQL trusts loopback, so the refusal is NOLOGIN's
    // 28000 rather than a wrong password's 28P01; both read the secret again.)
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let (old_role, new_role) = (format!("rot_a_{suffix}"), format!("rot_b_{suffix}"));
    let mut admin = scratch.admin.connect().await.unwrap();
    for role in [&old_role, &new_role] {
        sqlx::query(AssertSqlSafe(format!("CREATE ROLE {role} LOGIN SUPERUSER PASSWORD 'pw'")))
            .execute(&mut admin)
            .await
            .unwrap();
    }
    let secret_of = |role: &str| serde_json::json!({"username": role, "password": "pw"}).to_string();
    let store_secret = InMemorySecret::new(secret_of(&old_role));
    let secret = RotatingSecret::load(
        "reporting-db",
        Box::new(store_secret.clone()),
        parse_credentials,
        Duration::from_secs(300),
    )
    .await
    .unwrap();
    let base = scratch.options.clone();
    let store = Arc::new(PgReportingStore::with_credentials(base, Duration::from_secs(5), Arc::new(secret)).await);
    let consumer = Harnessed::new("reporting", Arc::new(ReportingHandler::new(store.clone())));
    let body = |id: &str| status_changed_body(order(id, 2, OrderStatus::ReadyToShip));
    assert!(consumer.failures(sqs_batch(vec![body("o-before")])).await.is_empty());

    // The rotation, while the instance is warm: the old role may no longer log in, its sessions end.
    sqlx::query(AssertSqlSafe(format!("ALTER ROLE {old_role} NOLOGIN"))).execute(&mut admin).await.unwrap();
    sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1")
        .bind(&old_role)
        .execute(&mut admin)
        .await
        .unwrap();
    store_secret.set(secret_of(&new_role));

    assert!(consumer.failures(sqs_batch(vec![body("o-after")])).await.is_empty(), "written with the new role");
    assert!(consumer.dead_letters.letters().is_empty());
    assert!(consumer.delays.delays().is_empty(), "not even a retry");
    let pool = store.pool().await.unwrap();
    let written: Vec<(String,)> =
        sqlx::query_as("SELECT order_id FROM orders ORDER BY order_id").fetch_all(pool).await.unwrap();
    assert_eq!(written, vec![("o-after".to_string(),), ("o-before".to_string(),)]);
    let user: (String,) = sqlx::query_as("SELECT current_user::text").fetch_one(pool).await.unwrap();
    assert_eq!(user.0, new_role);

    drop(consumer);
    drop(store);
    scratch.drop_it().await;
    for role in [&old_role, &new_role] {
        sqlx::query(AssertSqlSafe(format!("DROP ROLE {role}"))).execute(&mut admin).await.unwrap();
    }
}
