//! The reporting adapter's TLS, against a real TLS-only PostgreSQL (`infra/local-services.sh up`
//! starts it on 127.0.0.1:5433 with a certificate for `localhost` from a test CA in
//! `.local/pg-tls/`): `verify-full` connects only to the server whose certificate chains to a
//! trusted CA and names the host it was asked for.

use reporting::store::connect_options;
use sqlx::{Connection, PgConnection};

fn dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.local/pg-tls")
}

fn port() -> u16 {
    std::env::var("ORDERFLOW_PG_TLS_PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(5433)
}

async fn connect(host: &str, ssl: &str, ca: Option<&str>) -> Result<bool, String> {
    let ca = ca.map(|c| dir().join(c).display().to_string());
    let options = connect_options(host, port(), "postgres", ssl, ca.as_deref())?.username("postgres");
    let mut conn = PgConnection::connect_with(&options).await.map_err(|e| e.to_string())?;
    let ssl: bool = sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_one(&mut conn)
        .await
        .map_err(|e| e.to_string())?;
    Ok(ssl)
}

#[tokio::test]
async fn verify_full_connects_only_to_a_server_whose_certificate_is_trusted_and_names_the_host() {
    orderflow_harness_testing::needs_service("TLS-only PostgreSQL", &format!("postgres://127.0.0.1:{}", port()));
    assert_eq!(connect("localhost", "verify-full", Some("ca.pem")).await, Ok(true), "trusted CA, right name");
    let wrong_name = connect("127.0.0.1", "verify-full", Some("ca.pem")).await;
    assert!(wrong_name.is_err(), "the certificate names localhost, not 127.0.0.1: {wrong_name:?}");
    let public_roots_only = connect("localhost", "verify-full", None).await;
    assert!(public_roots_only.is_err(), "a test CA is not a public root: {public_roots_only:?}");
    let other_ca = connect("localhost", "verify-full", Some("other-ca.pem")).await;
    assert!(other_ca.is_err(), "signed by another CA: {other_ca:?}");
    // `require` encrypts but checks nothing (why the template defaults to verify-full); and the
    // server takes no plain connection at all.
    assert_eq!(connect("127.0.0.1", "require", None).await, Ok(true));
    assert!(connect("localhost", "disable", None).await.is_err(), "plain text refused by the server");
    assert!(connect_options("localhost", port(), "postgres", "verify-full", Some("/nonexistent.pem")).is_err());
}
