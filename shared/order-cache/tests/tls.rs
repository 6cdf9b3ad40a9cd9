//! The Redis adapter over TLS (`rediss://`, as ElastiCache's in-transit encryption serves it),
//! against a real TLS-only Redis (`infra/local-services.sh up` starts it on 127.0.0.1:6380 with a
//! certificate for `localhost` from a test CA in `.local/redis-tls/`): it connects only to a server
//! whose certificate chains to a trusted root and names the host it was asked for.

use std::time::Duration;

use orderflow_contracts::OrderStatus;
use orderflow_harness_testing::sample_order;
use orderflow_order_cache::{OrderCache, RedisOrderCache};
use pretty_assertions::assert_eq;

fn port() -> u16 {
    std::env::var("ORDERFLOW_REDIS_TLS_PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(6380)
}

fn ca(name: &str) -> String {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.local/redis-tls").join(name).display().to_string()
}

fn cache(url: &str, ca_file: &str) -> RedisOrderCache {
    RedisOrderCache::new(url, ca_file, Duration::from_secs(60), Duration::from_secs(2)).unwrap()
}

#[tokio::test]
async fn rediss_reaches_only_a_server_whose_certificate_is_trusted_and_names_the_host() {
    orderflow_harness_testing::needs_service("TLS-only Redis", &format!("redis://127.0.0.1:{}", port()));
    let localhost = format!("rediss://localhost:{}", port());

    // The test CA, the name the certificate carries: the cache writes and reads.
    let trusted = cache(&localhost, &ca("ca.pem"));
    let order_id = format!("tls-{}", uuid::Uuid::new_v4());
    let order = sample_order("cache/order-status-changed.sqs.json", 0, &order_id, 3, OrderStatus::ReadyToShip);
    assert!(trusted.put_if_newer(&order).await.unwrap());
    assert_eq!(trusted.get(&order_id).await.unwrap(), Some(order));

    // Refused in the handshake, each for its reason, and retryable (a CA fixed in the
    // configuration lets the redelivery through).
    for (what, url, ca_file) in [
        ("a certificate for localhost asked for 127.0.0.1", format!("rediss://127.0.0.1:{}", port()), ca("ca.pem")),
        ("a test CA is no public root", localhost.clone(), String::new()),
        ("signed by another CA", localhost.clone(), ca("other-ca.pem")),
    ] {
        let error = cache(&url, &ca_file).open().await.unwrap_err();
        assert!(error.message.contains("certificate"), "{what}: {error:?}");
        assert!(error.retryable, "{what}: {error:?}");
    }
    // The server takes no plain text.
    assert!(cache(&format!("redis://127.0.0.1:{}", port()), "").open().await.is_err());
    // A CA file that is not there, one without a certificate (a key, a DER file), or one given for a
    // plain-text URL fails init, naming the setting.
    let new =
        |url: &str, ca_file: &str| RedisOrderCache::new(url, ca_file, Duration::from_secs(60), Duration::from_secs(2));
    let plain = format!("redis://localhost:{}", port());
    for (url, ca_file) in [
        (localhost.as_str(), "/nonexistent.pem".to_string()),
        (localhost.as_str(), ca("ca.key")),
        (plain.as_str(), ca("ca.pem")),
    ] {
        let error = new(url, &ca_file).err().unwrap_or_else(|| panic!("{url} with {ca_file} was taken"));
        assert!(error.message.contains("REDIS_CA_FILE") && !error.retryable, "{error:?}");
    }
}
