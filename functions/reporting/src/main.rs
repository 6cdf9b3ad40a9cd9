//! Lambda entry point of `reporting`: wiring only. The handler is `reporting::handler`.
//!
//! The database: `REPORTING_DB_HOST`, `REPORTING_DB_PORT` (5432), `REPORTING_DB_NAME`,
//! `REPORTING_DB_USER`, and in AWS `REPORTING_DB_SECRET_ID`: a Secrets Manager secret holding
//! `{"username": ..., "password": ...}` (the shape RDS writes), never logged: read at init, again
//! once it is `SECRET_MAX_AGE_SECONDS` old, and at once when the database refuses the login.
//! `REPORTING_DB_SSL`: `disable`, `prefer` (default) or `require`.

use std::sync::Arc;
use std::time::Duration;

use orderflow_harness::config::{self, ConsumerConfig};
use orderflow_harness::secret::{RotatingSecret, SecretsManagerSource};
use orderflow_harness::{aws, telemetry, Consumer};
use reporting::handler::{ReportingHandler, ReportingInput};
use reporting::store::{parse_credentials, PgReportingStore};
use sqlx::postgres::{PgConnectOptions, PgSslMode};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    telemetry::init();
    let consumer_config = ConsumerConfig::from_env()?;
    let host = config::required("REPORTING_DB_HOST")?;
    let port: u16 = config::parsed_or("REPORTING_DB_PORT", 5432)?;
    let database = config::required("REPORTING_DB_NAME")?;
    let user = config::required("REPORTING_DB_USER")?;
    let secret_id = config::parsed_or("REPORTING_DB_SECRET_ID", String::new())?;
    let ssl: PgSslMode = config::parsed_or("REPORTING_DB_SSL", "prefer".to_string())?
        .parse()
        .map_err(|e| format!("REPORTING_DB_SSL: {e}"))?;
    let max_age = Duration::from_secs(config::parsed_or(config::vars::SECRET_MAX_AGE_SECONDS, 300)?);
    let sdk = aws::sdk_config().await;
    let options = PgConnectOptions::new_without_pgpass().host(&host).port(port).database(&database).ssl_mode(ssl);
    let timeout = Duration::from_secs(3);
    let store = if secret_id.is_empty() {
        PgReportingStore::new(options.username(&user), timeout)
    } else {
        // The secret's username wins over REPORTING_DB_USER (RDS's alternating-users rotation).
        let source = Box::new(SecretsManagerSource::new(&sdk, &secret_id));
        let secret = RotatingSecret::load(secret_id, source, parse_credentials, max_age).await?;
        PgReportingStore::with_credentials(options, timeout, Arc::new(secret)).await
    };
    Consumer::<ReportingInput>::from_config(&consumer_config, &sdk, Arc::new(ReportingHandler::new(Arc::new(store))))
        .run()
        .await
}
