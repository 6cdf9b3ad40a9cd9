//! The `ReportingStore` port, its PostgreSQL adapter and an in-memory fake with the same rules.
//!
//! The adapter holds one connection pool per Lambda instance (at most two connections: an instance
//! handles one batch at a time), opened lazily on first use and reused across invocations; in AWS
//! put RDS Proxy in front of the database so that many instances share few connections (see
//! `infra/template.yaml`). The schema comes from `migrations/`, applied by sqlx's migrator on the
//! first use of the pool (it takes an advisory lock, so concurrent instances apply it once).
//!
//! Credentials may rotate ([`PgReportingStore::with_credentials`]): the pool's connect options follow
//! the secret's current value, and a refused login (SQLSTATE 28P01 or 28000) reads the secret again
//! and, when it changed, retries the write once with it, so a rotation dead-letters nothing.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use orderflow_harness::secret::RotatingSecret;
use orderflow_harness::StoreError;
use sqlx::migrate::{MigrateError, Migration, MigrationType, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgSslMode};
use sqlx::SqlSafeStr as _;
use tokio::sync::Mutex as AsyncMutex;
use tracing::info;

use crate::rows::{BillingRow, OrderRow, RefundRow};

const STORE: &str = "reporting database";

/// How long the server lets one statement run or wait (a lock held elsewhere) before it cancels it
/// (`statement_timeout`, set on every connection): the cancelled statement is a retryable error, and
/// its connection is free again. A migration that needs longer sets its own (`SET LOCAL
/// statement_timeout = 0` in its file).
pub const STATEMENT_TIMEOUT: Duration = Duration::from_secs(3);

/// How long a session may sit in an open transaction without a statement before the server ends it
/// and its locks go (`idle_in_transaction_session_timeout`): a client that stopped mid-transaction
/// holds nothing for long.
pub const IDLE_IN_TRANSACTION_TIMEOUT: Duration = Duration::from_secs(10);

/// The longest one attempt at a record's writes may take once the schema is migrated: a connection
/// from the pool (its acquire timeout, 3 s, is the connect timeout main gives) and the transaction's
/// statements. The server's [`STATEMENT_TIMEOUT`] cancels a statement that waits first; this bound is
/// for a database that stops answering at all (a failover, a network gone quiet): the attempt fails
/// as retryable instead of holding the record until Lambda's timeout cuts off the whole batch. The
/// migrations run before it, outside the bound: the migrator holds the database's advisory lock for
/// its whole run, which a run dropped half-way would leave held on a pooled connection.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(4);

/// The consumer's record budget: one attempt, and the read of a rotated secret after a refused
/// login (the SDK's 2 s attempt timeout); a second attempt is made only while the deadline allows it.
pub const RECORD_BUDGET: Duration = Duration::from_secs(6);

impl PgReportingStore {
    /// `attempt` once the schema is migrated, given up as retryable after [`ATTEMPT_TIMEOUT`].
    async fn bounded<T>(&self, attempt: impl std::future::Future<Output = Result<T, Failure>>) -> Result<T, Failure> {
        self.ready().await?;
        tokio::time::timeout(ATTEMPT_TIMEOUT, attempt).await.unwrap_or_else(|_| {
            Err(Failure::Store(StoreError::retryable(
                STORE,
                format!("no answer within {} s", ATTEMPT_TIMEOUT.as_secs()),
            )))
        })
    }
}

/// The repository's migrations, compiled in, as `sqlx::migrate!("./migrations")` would make them:
/// the version and description from the file's name, the same checksum (sqlx's, of the text), in a
/// transaction unless the file starts with `-- no-transaction`. Listed by hand because the macro
/// needs sqlx's `macros` feature, and with it sqlx, tokio and rustls compiled a second time, for the
/// build machine (about a minute of both cores in a cold build); a test holds this list to what
/// sqlx's own reader makes of `migrations/` (`tests/reporting.rs`,
/// `the_compiled_in_migrations_are_the_folders`).
pub static MIGRATOR: LazyLock<Migrator> = LazyLock::new(|| {
    Migrator::with_migrations(vec![
        migration(1, "orders", include_str!("../migrations/0001_orders.sql")),
        migration(2, "refunds", include_str!("../migrations/0002_refunds.sql")),
    ])
});

fn migration(version: i64, description: &'static str, sql: &'static str) -> Migration {
    let no_tx = sql.starts_with("-- no-transaction");
    Migration::new(version, description.into(), MigrationType::Simple, sql.into_sql_str(), no_tx)
}

/// Writes the reporting tables.
#[async_trait]
pub trait ReportingStore: Send + Sync {
    /// Upserts the order and its lines unless the stored version is as new or newer; says whether it
    /// wrote.
    async fn upsert_order(&self, row: &OrderRow) -> Result<bool, StoreError>;
    /// Sets the order's billing columns (creating the row if the order is not known yet).
    async fn record_billing(&self, billing: &BillingRow) -> Result<(), StoreError>;
    /// Sets the order's refund columns (creating the row if the order is not known yet).
    async fn record_refund(&self, refund: &RefundRow) -> Result<(), StoreError>;
}

/// A PostgreSQL error, classified: a row the database refuses (data or integrity errors) will be
/// refused again, anything else (connection, pool, timeout, server going away) may pass.
pub fn store_error(e: sqlx::Error) -> StoreError {
    let permanent = match &e {
        sqlx::Error::Database(db) => db.code().is_some_and(|code| code.starts_with("22") || code.starts_with("23")),
        _ => false,
    };
    if permanent {
        StoreError::permanent(STORE, e.to_string())
    } else {
        StoreError::retryable(STORE, e.to_string())
    }
}

/// Database credentials, as RDS keeps them in Secrets Manager (`{"username": ..., "password": ...}`).
/// `Debug` never shows the password.
#[derive(Clone, serde::Deserialize)]
pub struct Credentials {
    /// The role.
    pub username: String,
    /// Its password.
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").field("username", &self.username).field("password", &"***").finish()
    }
}

/// The secret's JSON as credentials (the error never quotes the value).
pub fn parse_credentials(secret: &str) -> Result<Credentials, String> {
    serde_json::from_str(secret).map_err(|_| "is not {\"username\": ..., \"password\": ...}".to_string())
}

/// Whether PostgreSQL refused the login itself: a wrong password (28P01) or a role that may not log
/// in (28000), what a rotation looks like to the instances still holding the old value.
pub fn is_auth_failure(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if matches!(db.code().as_deref(), Some("28P01" | "28000")))
}

/// Rotating credentials and the options they complete.
struct Rotating {
    secret: Arc<RotatingSecret<Credentials>>,
    base: PgConnectOptions,
    applied: AtomicU64,
}

/// The PostgreSQL adapter.
pub struct PgReportingStore {
    pool: PgPool,
    rotating: Option<Rotating>,
    /// Whether this instance has applied the migrations; cleared when a table turns out missing (a
    /// database recreated under a warm instance), so the next call applies them again. Read without
    /// a lock on every record; `migrating` lets one caller at a time run the migrator.
    migrated: AtomicBool,
    migrating: AsyncMutex<()>,
}

impl PgReportingStore {
    /// A store over a lazily opened pool to `options`. Connecting gives up after `timeout`.
    pub fn new(options: PgConnectOptions, timeout: Duration) -> Self {
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(timeout)
            .idle_timeout(Duration::from_secs(300))
            .connect_lazy_with(options);
        Self { pool, rotating: None, migrated: AtomicBool::new(false), migrating: AsyncMutex::new(()) }
    }

    /// A store over `base` (host, port, database, TLS) with the user and password of `secret`, which
    /// may rotate.
    pub async fn with_credentials(
        base: PgConnectOptions,
        timeout: Duration,
        secret: Arc<RotatingSecret<Credentials>>,
    ) -> Self {
        let current = secret.current().await;
        let options = base.clone().username(&current.value.username).password(&current.value.password);
        let mut store = Self::new(options, timeout);
        store.rotating = Some(Rotating { secret, base, applied: AtomicU64::new(current.generation) });
        store
    }

    /// Opens the pool's first connection now (within the acquire timeout), not on the first record.
    /// The migrations are left to the first record: they wait on a lock of the database's while
    /// another instance holds it, up to the [`STATEMENT_TIMEOUT`] of the connections made by
    /// [`connect_options`] (then the record is retried).
    pub async fn open(&self) -> Result<(), StoreError> {
        self.pool.acquire().await.map(drop).map_err(store_error)
    }

    /// The pool, with the schema migrated (once per instance; retried on the next call if it failed).
    pub async fn pool(&self) -> Result<&PgPool, StoreError> {
        match self.ready().await {
            Ok(pool) => Ok(pool),
            Err(Failure::Store(e)) => Err(e),
            Err(Failure::Sql(e)) => Err(store_error(e)),
        }
    }

    async fn ready(&self) -> Result<&PgPool, Failure> {
        if !self.migrated.load(Ordering::Acquire) {
            let _one_at_a_time = self.migrating.lock().await;
            if !self.migrated.load(Ordering::Acquire) {
                MIGRATOR.run(&self.pool).await.map_err(|e| match e {
                    MigrateError::Execute(e) => Failure::Sql(e),
                    e => Failure::Store(StoreError::retryable(STORE, format!("migrations: {e}"))),
                })?;
                info!("reporting schema is up to date");
                self.migrated.store(true, Ordering::Release);
            }
        }
        Ok(&self.pool)
    }

    /// Points the pool at the credentials of generation `current` if they are newer than the ones
    /// it has (a record holding an older generation never moves it back).
    fn apply(&self, rotating: &Rotating, current: &orderflow_harness::secret::Current<Credentials>) {
        if rotating.applied.fetch_max(current.generation, Ordering::AcqRel) < current.generation {
            let options = rotating.base.clone().username(&current.value.username).password(&current.value.password);
            self.pool.set_connect_options(options);
            info!(generation = current.generation, "reporting database credentials updated");
        }
    }

    /// Runs `attempt` with the current credentials; if the login is refused and the secret has
    /// changed since, once more with the new ones.
    async fn with_login<'a, T, F, Fut>(&'a self, attempt: F) -> Result<T, StoreError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, Failure>> + 'a,
    {
        let Some(rotating) = &self.rotating else { return self.settle(self.bounded(attempt()).await).await };
        let current = rotating.secret.current().await;
        self.apply(rotating, &current);
        let first = self.bounded(attempt()).await;
        let Err(Failure::Sql(e)) = &first else { return self.settle(first).await };
        if !is_auth_failure(e) {
            return self.settle(first).await;
        }
        match rotating.secret.refresh_after_rejection(current.generation).await {
            Ok(Some(fresh)) => {
                self.apply(rotating, &fresh);
                if !orderflow_harness::deadline::allows(Duration::ZERO, ATTEMPT_TIMEOUT) {
                    // The next delivery logs in with the new credentials.
                    return Err(StoreError::retryable(STORE, "login refused; credentials rotated"));
                }
                self.settle(self.bounded(attempt()).await).await
            }
            Ok(None) => self.settle(first).await,
            Err(reason) => Err(StoreError::retryable(STORE, format!("login refused, and {reason}"))),
        }
    }

    /// Classifies `e`, and forgets the migrations when a table is missing (SQLSTATE 42P01).
    async fn failed(&self, e: sqlx::Error) -> StoreError {
        if let sqlx::Error::Database(db) = &e {
            if db.code().as_deref() == Some("42P01") {
                self.migrated.store(false, Ordering::Release);
            }
        }
        store_error(e)
    }
}

/// A value for an `integer` column; one that does not fit is refused, never clamped.
fn column_int(value: impl TryInto<i32>, what: &str) -> Result<i32, StoreError> {
    value.try_into().map_err(|_| StoreError::permanent(STORE, format!("{what} does not fit an integer column")))
}

/// A failure inside the adapter: already classified, or a database error still to classify.
enum Failure {
    Store(StoreError),
    Sql(sqlx::Error),
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure::Store(e)
    }
}

impl From<sqlx::Error> for Failure {
    fn from(e: sqlx::Error) -> Self {
        Failure::Sql(e)
    }
}

impl PgReportingStore {
    async fn settle<T>(&self, result: Result<T, Failure>) -> Result<T, StoreError> {
        match result {
            Ok(value) => Ok(value),
            Err(Failure::Store(e)) => Err(e),
            Err(Failure::Sql(e)) => Err(self.failed(e).await),
        }
    }

    async fn try_upsert_order(&self, row: &OrderRow) -> Result<bool, Failure> {
        let pool = self.ready().await?;
        let mut tx = pool.begin().await?;
        let written = sqlx::query(
            "INSERT INTO orders AS o (order_id, version, status, currency, subtotal_minor, shipping_minor, tax_minor,
                 total_minor, placed_at, status_at, tracking_number, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, now())
             ON CONFLICT (order_id) DO UPDATE SET
                 version = EXCLUDED.version, status = EXCLUDED.status, currency = EXCLUDED.currency,
                 subtotal_minor = EXCLUDED.subtotal_minor, shipping_minor = EXCLUDED.shipping_minor,
                 tax_minor = EXCLUDED.tax_minor, total_minor = EXCLUDED.total_minor, placed_at = EXCLUDED.placed_at,
                 status_at = EXCLUDED.status_at, tracking_number = EXCLUDED.tracking_number, updated_at = now()
             WHERE o.version < EXCLUDED.version",
        )
        .bind(&row.order_id)
        .bind(i64::try_from(row.version).map_err(|_| StoreError::permanent(STORE, "version out of range"))?)
        .bind(&row.status)
        .bind(&row.currency)
        .bind(row.totals.subtotal_minor)
        .bind(row.totals.shipping_minor)
        .bind(row.totals.tax_minor)
        .bind(row.totals.total_minor)
        .bind(row.placed_at)
        .bind(row.status_at)
        .bind(&row.tracking_number)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if written {
            sqlx::query("DELETE FROM order_lines WHERE order_id = $1").bind(&row.order_id).execute(&mut *tx).await?;
            for (i, line) in row.lines.iter().enumerate() {
                // Amounts are capped by the contracts (10^12), so the product cannot overflow; checked anyway.
                let total = line
                    .unit_price_minor
                    .checked_mul(i64::from(line.quantity))
                    .ok_or_else(|| StoreError::permanent(STORE, format!("line {} total overflows", i + 1)))?;
                sqlx::query(
                    "INSERT INTO order_lines (order_id, line_no, sku, quantity, unit_price_minor, line_total_minor)
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(&row.order_id)
                .bind(column_int(i + 1, "line number")?)
                .bind(&line.sku)
                .bind(column_int(line.quantity, "quantity")?)
                .bind(line.unit_price_minor)
                .bind(total)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(written)
    }

    async fn try_record_billing(&self, billing: &BillingRow) -> Result<(), Failure> {
        let pool = self.ready().await?;
        sqlx::query(
            "INSERT INTO orders AS o (order_id, version, invoice_id, billed_minor, billed_at, updated_at)
             VALUES ($1, 0, $2, $3, $4, now())
             ON CONFLICT (order_id) DO UPDATE SET
                 invoice_id = EXCLUDED.invoice_id, billed_minor = EXCLUDED.billed_minor,
                 billed_at = EXCLUDED.billed_at, updated_at = now()",
        )
        .bind(&billing.order_id)
        .bind(&billing.invoice_id)
        .bind(billing.billed_minor)
        .bind(billing.billed_at)
        .execute(pool)
        .await?;
        Ok(())
    }

    async fn try_record_refund(&self, refund: &RefundRow) -> Result<(), Failure> {
        let pool = self.ready().await?;
        sqlx::query(
            "INSERT INTO orders AS o (order_id, version, refunded_minor, refunded_at, updated_at)
             VALUES ($1, 0, $2, $3, now())
             ON CONFLICT (order_id) DO UPDATE SET
                 refunded_minor = EXCLUDED.refunded_minor, refunded_at = EXCLUDED.refunded_at, updated_at = now()",
        )
        .bind(&refund.order_id)
        .bind(refund.refunded_minor)
        .bind(refund.refunded_at)
        .execute(pool)
        .await?;
        Ok(())
    }
}

#[async_trait]
impl ReportingStore for PgReportingStore {
    async fn upsert_order(&self, row: &OrderRow) -> Result<bool, StoreError> {
        self.with_login(|| self.try_upsert_order(row)).await
    }

    async fn record_billing(&self, billing: &BillingRow) -> Result<(), StoreError> {
        self.with_login(|| self.try_record_billing(billing)).await
    }

    async fn record_refund(&self, refund: &RefundRow) -> Result<(), StoreError> {
        self.with_login(|| self.try_record_refund(refund)).await
    }
}

/// What the fake holds per order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reported {
    /// The newest order row written, if any.
    pub order: Option<OrderRow>,
    /// The billing columns, if any.
    pub billing: Option<BillingRow>,
    /// The refund columns, if any.
    pub refund: Option<RefundRow>,
}

/// The in-memory fake, with the adapter's rules and a switch that makes it "down".
#[derive(Debug, Default)]
pub struct InMemoryReportingStore {
    rows: Mutex<HashMap<String, Reported>>,
    down: Mutex<bool>,
}

impl InMemoryReportingStore {
    /// Makes every call fail (retryably) while `down`.
    pub fn set_down(&self, down: bool) {
        *self.down.lock().expect("lock") = down;
    }

    /// What is reported for `order_id`.
    pub fn reported(&self, order_id: &str) -> Reported {
        self.rows.lock().expect("lock").get(order_id).cloned().unwrap_or_default()
    }

    fn check(&self) -> Result<(), StoreError> {
        if *self.down.lock().expect("lock") {
            return Err(StoreError::retryable(STORE, "connection refused (fake)"));
        }
        Ok(())
    }
}

#[async_trait]
impl ReportingStore for InMemoryReportingStore {
    async fn upsert_order(&self, row: &OrderRow) -> Result<bool, StoreError> {
        self.check()?;
        let mut rows = self.rows.lock().expect("lock");
        let entry = rows.entry(row.order_id.clone()).or_default();
        if entry.order.as_ref().is_some_and(|stored| stored.version >= row.version) {
            return Ok(false);
        }
        entry.order = Some(row.clone());
        Ok(true)
    }

    async fn record_billing(&self, billing: &BillingRow) -> Result<(), StoreError> {
        self.check()?;
        self.rows.lock().expect("lock").entry(billing.order_id.clone()).or_default().billing = Some(billing.clone());
        Ok(())
    }

    async fn record_refund(&self, refund: &RefundRow) -> Result<(), StoreError> {
        self.check()?;
        self.rows.lock().expect("lock").entry(refund.order_id.clone()).or_default().refund = Some(refund.clone());
        Ok(())
    }
}

/// How to reach the database: `ssl` is a libpq `sslmode` (`verify-full` in AWS: the server's
/// certificate must chain to a trusted CA *and* name `host`). The trusted CAs are the public web
/// roots, which RDS Proxy's certificates chain to, plus `ca_file` if given (a PEM bundle, such as
/// AWS's RDS CA bundle for a direct RDS endpoint, shipped in a layer).
pub fn connect_options(
    host: &str,
    port: u16,
    database: &str,
    ssl: &str,
    ca_file: Option<&str>,
) -> Result<PgConnectOptions, String> {
    let mode: PgSslMode = ssl.parse().map_err(|e| format!("REPORTING_DB_SSL `{ssl}`: {e}"))?;
    let mut options =
        PgConnectOptions::new_without_pgpass().host(host).port(port).database(database).ssl_mode(mode).options([
            ("statement_timeout", STATEMENT_TIMEOUT.as_millis().to_string()),
            ("idle_in_transaction_session_timeout", IDLE_IN_TRANSACTION_TIMEOUT.as_millis().to_string()),
        ]);
    if let Some(ca) = ca_file.filter(|c| !c.is_empty()) {
        if !std::path::Path::new(ca).is_file() {
            return Err(format!("REPORTING_DB_CA_FILE {ca}: no such file"));
        }
        options = options.ssl_root_cert(ca);
    }
    Ok(options)
}
