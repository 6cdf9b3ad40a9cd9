//! Lambda entry point of `reporting`: wiring only. The handler is `reporting::handler`.
//!
//! The database: `REPORTING_DB_HOST`, `REPORTING_DB_PORT` (5432), `REPORTING_DB_NAME`,
//! `REPORTING_DB_USER`, and in AWS `REPORTING_DB_SECRET_ID`: a Secrets Manager secret holding
//! `{"username": ..., "password": ...}` (the shape RDS writes), never logged: read at init, again
//! once it is `SECRET_MAX_AGE_SECONDS` old, and at once when the database refuses the login.
//! `REPORTING_DB_SSL`: a libpq `sslmode`, `verify-full` unless set (the server's certificate must
//! chain to a trusted CA and name the host); `REPORTING_DB_CA_FILE`: a PEM bundle of CAs to trust
//! beside the public roots (see `reporting::store::connect_options`).

use std::sync::Arc;
use std::time::Duration;

use orderflow_harness::config::{self, ConsumerConfig};
use orderflow_harness::secret::{RotatingSecret, SecretsManagerSource};
use orderflow_harness::{aws, telemetry, Consumer};
use reporting::handler::{ReportingHandler, ReportingInput};
use reporting::store::{connect_options, parse_credentials, PgReportingStore, RECORD_BUDGET};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    telemetry::init();
    let consumer_config = ConsumerConfig::from_env()?;
    let host = config::required("REPORTING_DB_HOST")?;
    let port: u16 = config::parsed_or("REPORTING_DB_PORT", 5432)?;
    let database = config::required("REPORTING_DB_NAME")?;
    let user = config::required("REPORTING_DB_USER")?;
    let secret_id = config::parsed_or("REPORTING_DB_SECRET_ID", String::new())?;
    let ssl = config::parsed_or("REPORTING_DB_SSL", "verify-full".to_string())?;
    let ca_file = config::parsed_or("REPORTING_DB_CA_FILE", String::new())?;
    let max_age = Duration::from_secs(config::parsed_or(config::vars::SECRET_MAX_AGE_SECONDS, 300)?);
    // The secret's read below opens the one AWS connection its first invocation uses.
    let sdk = aws::sdk_config_opening(&[]).await?;
    let options = connect_options(&host, port, &database, &ssl, Some(&ca_file))?;
    let timeout = Duration::from_secs(3);
    let store = if secret_id.is_empty() {
        PgReportingStore::new(options.username(&user), timeout)
    } else {
        // The secret's username wins over REPORTING_DB_USER (RDS's alternating-users rotation).
        let source = Box::new(SecretsManagerSource::new(&sdk, &secret_id));
        let secret = RotatingSecret::load(secret_id, source, parse_credentials, max_age).await?;
        PgReportingStore::with_credentials(options, timeout, Arc::new(secret)).await
    };
    aws::connections::open_with("postgres", store.open()).await?;
    Consumer::<ReportingInput>::from_config(&consumer_config, &sdk, Arc::new(ReportingHandler::new(Arc::new(store))))
        // Upserts by version, or set (not add) the billed and refunded amounts: a repeat changes nothing.
        .without_claims()
        .with_record_budget(RECORD_BUDGET)
        .run()
        .await
}
