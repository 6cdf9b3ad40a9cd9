//! Lambda entry point of `reporting`: wiring only. The handler is `reporting::handler`.
//!
//! The database: `REPORTING_DB_HOST`, `REPORTING_DB_PORT` (5432), `REPORTING_DB_NAME`,
//! `REPORTING_DB_USER`, and in AWS `REPORTING_DB_SECRET_ID`: a Secrets Manager secret holding
//! `{"username": ..., "password": ...}` (the shape RDS writes), read once at init and never logged.
//! `REPORTING_DB_SSL`: `disable`, `prefer` (default) or `require`.

use std::sync::Arc;
use std::time::Duration;

use orderflow_harness::config::{self, ConsumerConfig};
use orderflow_harness::{aws, telemetry, Consumer};
use reporting::handler::{ReportingHandler, ReportingInput};
use reporting::store::PgReportingStore;
use sqlx::postgres::{PgConnectOptions, PgSslMode};

#[derive(serde::Deserialize)]
struct Credentials {
    username: String,
    password: String,
}

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    telemetry::init();
    let consumer_config = ConsumerConfig::from_env()?;
    let host = config::required("REPORTING_DB_HOST")?;
    let port: u16 = config::parsed_or("REPORTING_DB_PORT", 5432)?;
    let database = config::required("REPORTING_DB_NAME")?;
    let mut user = config::required("REPORTING_DB_USER")?;
    let secret_id = config::parsed_or("REPORTING_DB_SECRET_ID", String::new())?;
    let ssl: PgSslMode = config::parsed_or("REPORTING_DB_SSL", "prefer".to_string())?
        .parse()
        .map_err(|e| format!("REPORTING_DB_SSL: {e}"))?;
    let sdk = aws::sdk_config().await;
    let mut options = PgConnectOptions::new_without_pgpass().host(&host).port(port).database(&database).ssl_mode(ssl);
    if !secret_id.is_empty() {
        let secret = aws::secret_string(&sdk, &secret_id).await?;
        let credentials: Credentials = serde_json::from_str(&secret)
            .map_err(|_| format!("the secret {secret_id} is not {{\"username\": ..., \"password\": ...}}"))?;
        user = credentials.username;
        options = options.password(&credentials.password);
    }
    let store = PgReportingStore::new(options.username(&user), Duration::from_secs(3));
    Consumer::<ReportingInput>::from_config(&consumer_config, &sdk, Arc::new(ReportingHandler::new(Arc::new(store))))
        .run()
        .await
}
