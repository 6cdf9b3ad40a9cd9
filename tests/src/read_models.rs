//! The read models of the deployed stack, looked at directly: the order cache in Redis, the
//! reporting tables in PostgreSQL, the lake's objects in S3 and the lake queried through the
//! emulator's Athena. The end-to-end tests assert on these, and the demo prints them.

use std::future::Future;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _, Result};
use lake::objects::{read_lines, Line};
use orderflow_contracts::OrderState;
use serde_json::json;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::Row;

use crate::aws_api::{AwsApi, ATHENA};
use crate::Local;

/// The reporting database the local deployment uses (`infra/deploy-local.sh`).
pub const REPORTING_URL: &str = "postgres://postgres@127.0.0.1:5432/orderflow";
/// The Redis the local deployment uses.
pub const REDIS_URL: &str = "redis://127.0.0.1:6379";

/// One order as the reporting tables hold it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reported {
    /// Row version.
    pub version: i64,
    /// Status (`None` while known only from billing).
    pub status: Option<String>,
    /// Total, minor units.
    pub total_minor: Option<i64>,
    /// Billed, minor units.
    pub billed_minor: Option<i64>,
    /// Refunded (a cancelled order), minor units.
    pub refunded_minor: Option<i64>,
    /// Lines: sku, quantity, line total.
    pub lines: Vec<(String, i32, i64)>,
}

/// Connections to the read models.
pub struct ReadModels {
    redis: redis::aio::MultiplexedConnection,
    /// The reporting database.
    pub pg: PgPool,
    aws: AwsApi,
    s3: aws_sdk_s3::Client,
    /// The lake's bucket.
    pub bucket: String,
    /// The lake's Glue database, where the README's lake queries run.
    pub database: String,
    /// Lake objects already read, by key: a key's bytes never change (its name is a hash of the
    /// event ids it holds), so each is downloaded once however often a test polls.
    lake_read: std::sync::Mutex<std::collections::HashMap<String, Vec<Line>>>,
}

impl ReadModels {
    /// Connects to what `local` was deployed with.
    pub async fn connect(local: &Local) -> Result<Self> {
        let redis = redis::Client::open(REDIS_URL)?.get_multiplexed_async_connection().await.context("Redis")?;
        let pg = PgPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(5))
            .connect_lazy(REPORTING_URL)?;
        Ok(Self {
            redis,
            pg,
            aws: local.aws.clone(),
            s3: local.s3.clone(),
            bucket: local.output("LakeBucketName").to_string(),
            database: local.output("LakeDatabaseName").to_string(),
            lake_read: Default::default(),
        })
    }

    /// The cached copy of an order.
    pub async fn cached(&self, order_id: &str) -> Result<Option<OrderState>> {
        let (key, _) = cache::store::keys(order_id);
        let json: Option<String> = redis::cmd("GET").arg(key).query_async(&mut self.redis.clone()).await?;
        json.map(|j| serde_json::from_str(&j).map_err(Into::into)).transpose()
    }

    /// The reporting row and lines of an order.
    pub async fn reported(&self, order_id: &str) -> Result<Option<Reported>> {
        let Some(row) = sqlx::query(
            "SELECT version, status, total_minor, billed_minor, refunded_minor FROM orders WHERE order_id = $1",
        )
        .bind(order_id)
        .fetch_optional(&self.pg)
        .await?
        else {
            return Ok(None);
        };
        let lines = sqlx::query_as(
            "SELECT sku, quantity, line_total_minor FROM order_lines WHERE order_id = $1 ORDER BY line_no",
        )
        .bind(order_id)
        .fetch_all(&self.pg)
        .await?;
        Ok(Some(Reported {
            version: row.get("version"),
            status: row.get("status"),
            total_minor: row.get("total_minor"),
            billed_minor: row.get("billed_minor"),
            refunded_minor: row.get("refunded_minor"),
            lines,
        }))
    }

    /// Every line of the lake whose order is one of `order_ids`, with the key of its object.
    pub async fn lake_lines(&self, order_ids: &[&str]) -> Result<Vec<(String, Line)>> {
        let mut found = Vec::new();
        let mut pages =
            self.s3.list_objects_v2().bucket(&self.bucket).prefix(lake::objects::PREFIX).into_paginator().send();
        while let Some(page) = pages.next().await {
            for object in page?.contents() {
                let key = object.key().unwrap_or_default().to_string();
                let known = self.lake_read.lock().unwrap().get(&key).cloned();
                let lines = match known {
                    Some(lines) => lines,
                    None => {
                        let body =
                            self.s3.get_object().bucket(&self.bucket).key(&key).send().await?.body.collect().await?;
                        let lines = read_lines(&body.into_bytes())?;
                        self.lake_read.lock().unwrap().insert(key.clone(), lines.clone());
                        lines
                    }
                };
                for line in lines {
                    if line.order_id.as_deref().is_some_and(|id| order_ids.contains(&id)) {
                        found.push((key.clone(), line));
                    }
                }
            }
        }
        Ok(found)
    }

    /// Runs `sql` through Athena in the lake's database and returns its rows (the header first).
    pub async fn athena(&self, sql: &str) -> Result<Vec<Vec<String>>> {
        let started = self
            .aws
            .json(
                ATHENA,
                "StartQueryExecution",
                &json!({ "QueryString": sql, "ClientRequestToken": uuid::Uuid::new_v4().to_string(),
                    "QueryExecutionContext": { "Database": self.database },
                    "ResultConfiguration": { "OutputLocation": format!("s3://{}/athena-results/", self.bucket) } }),
            )
            .await?;
        let id = started["QueryExecutionId"].as_str().ok_or_else(|| anyhow!("no query execution id"))?;
        let execution = json!({ "QueryExecutionId": id });
        crate::wait::eventually(&format!("the Athena query done:\n{sql}"), Duration::from_secs(60), || async {
            let status = &self.aws.json(ATHENA, "GetQueryExecution", &execution).await?["QueryExecution"]["Status"];
            match status["State"].as_str() {
                Some("SUCCEEDED") => Ok(Some(())),
                Some("FAILED" | "CANCELLED") => {
                    bail!("Athena query failed: {}\n{sql}", status["StateChangeReason"].as_str().unwrap_or_default())
                }
                _ => Ok(None),
            }
        })
        .await?;
        let results = self.aws.json(ATHENA, "GetQueryResults", &execution).await?;
        Ok(results["ResultSet"]["Rows"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|row| {
                row["Data"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|d| d["VarCharValue"].as_str().unwrap_or_default().to_string())
                    .collect()
            })
            .collect())
    }
}

/// The machine's PostgreSQL cluster, for `pg_ctlcluster`.
fn cluster_version() -> Result<String> {
    std::fs::read_dir("/etc/postgresql")?
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .max_by_key(|v| v.parse::<u32>().unwrap_or(0))
        .ok_or_else(|| anyhow!("no PostgreSQL cluster under /etc/postgresql"))
}

fn pg_ctl(action: &str) -> Result<()> {
    let status = std::process::Command::new("pg_ctlcluster")
        .args(["--skip-systemctl-redirect", &cluster_version()?, "main", action])
        .args(if action == "stop" { &["-m", "fast"][..] } else { &[][..] })
        .status()
        .context("pg_ctlcluster")?;
    if !status.success() {
        bail!("pg_ctlcluster {action} failed: {status}");
    }
    Ok(())
}

/// Runs `body` with the reporting database stopped (its port refuses connections), and starts it
/// again afterwards, also when `body` panics.
pub async fn with_reporting_database_down<T>(body: impl Future<Output = T>) -> Result<T> {
    use futures::FutureExt;
    pg_ctl("stop")?;
    let outcome = std::panic::AssertUnwindSafe(body).catch_unwind().await;
    pg_ctl("start")?;
    let address = std::net::SocketAddr::from(([127, 0, 0, 1], 5432));
    crate::wait::eventually("PostgreSQL back", Duration::from_secs(20), || async {
        Ok(std::net::TcpStream::connect_timeout(&address, Duration::from_millis(500)).is_ok().then_some(()))
    })
    .await?;
    Ok(outcome.unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
}

/// A query of `docs/queries/`, as the README shows it.
pub fn query(name: &str) -> String {
    let path = crate::template::root().join("docs/queries").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
