//! A rotating secret over the in-memory fake and a manual clock: a bounded age, one read after a
//! refusal, shared by concurrent callers, and a refusal of an unchanged value standing.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use orderflow_harness::clock::ManualClock;
use orderflow_harness::secret::{InMemorySecret, RotatingSecret};

async fn rig(max_age: Duration) -> (Arc<InMemorySecret>, Arc<ManualClock>, Arc<RotatingSecret<String>>) {
    let store = InMemorySecret::new("v1");
    let clock = Arc::new(ManualClock::at(SystemTime::now()));
    let secret = RotatingSecret::load_with_clock(
        "test",
        Box::new(store.clone()),
        |s: &str| Ok(s.to_string()),
        max_age,
        clock.clone(),
    )
    .await
    .unwrap();
    (store, clock, Arc::new(secret))
}

#[tokio::test]
async fn a_cached_value_is_read_again_once_it_is_older_than_its_max_age() {
    let (store, clock, secret) = rig(Duration::from_secs(300)).await;
    store.set("v2");
    clock.advance(Duration::from_secs(299));
    assert_eq!(*secret.current().await.value, "v1", "still young: no read");
    assert_eq!(store.reads(), 1);
    clock.advance(Duration::from_secs(1));
    let current = secret.current().await;
    assert_eq!((current.value.as_str(), current.generation), ("v2", 1));
    assert_eq!(store.reads(), 2);
}

#[tokio::test]
async fn a_refusal_reads_again_and_only_a_changed_value_is_worth_retrying() {
    let (store, clock, secret) = rig(Duration::from_secs(300)).await;
    assert!(secret.refresh_after_rejection(0).await.unwrap().is_none(), "unchanged: the refusal stands");
    assert_eq!(store.reads(), 2);
    assert!(secret.refresh_after_rejection(0).await.unwrap().is_none());
    assert_eq!(store.reads(), 2, "a second refusal within the minimum interval reads nothing");

    store.set("v2");
    clock.advance(Duration::from_secs(1));
    let fresh = secret.refresh_after_rejection(0).await.unwrap().expect("rotated");
    assert_eq!((fresh.value.as_str(), fresh.generation), ("v2", 1));
    assert_eq!(*secret.current().await.value, "v2");
}

#[tokio::test]
async fn concurrent_refusals_of_one_generation_share_one_read() {
    let (store, _clock, secret) = rig(Duration::from_secs(300)).await;
    store.set("v2");
    let refusals = (0..8).map(|_| {
        let secret = Arc::clone(&secret);
        tokio::spawn(async move { secret.refresh_after_rejection(0).await.unwrap().map(|c| c.value.to_string()) })
    });
    for refusal in futures::future::join_all(refusals).await {
        assert_eq!(refusal.unwrap().as_deref(), Some("v2"), "every caller gets the new value");
    }
    assert_eq!(store.reads(), 2, "the load and one read after the refusals");
}

#[tokio::test]
async fn an_unreadable_secret_keeps_its_value_and_is_tried_again_only_after_a_pause() {
    use orderflow_harness::secret::FAILED_READ_BACKOFF;
    let (store, clock, secret) = rig(Duration::from_secs(300)).await;
    store.fail_reads(true);
    clock.advance(Duration::from_secs(300));
    assert_eq!(*secret.current().await.value, "v1", "the old value, still valid, is kept");
    assert_eq!(store.reads(), 2);
    for _ in 0..8 {
        assert_eq!(*secret.current().await.value, "v1");
    }
    assert_eq!(store.reads(), 2, "no read per record while the service is down");
    store.fail_reads(false);
    store.set("v2");
    clock.advance(FAILED_READ_BACKOFF);
    assert_eq!(*secret.current().await.value, "v2", "tried again after the pause");
    assert_eq!(store.reads(), 3);
}
