//! The publisher's promises: legal PutEvents requests, only failed entries resent, a bounded number of
//! times, and an error that names what was not sent.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use orderflow_harness::publisher::{
    chunks, CallFailure, ChunkedPublisher, PublishError, PutEventsApi, MAX_REQUEST_BYTES,
};
use orderflow_harness::{EventPublisher, OutboundEvent};
use pretty_assertions::assert_eq;

fn event(i: usize, detail_bytes: usize) -> OutboundEvent {
    OutboundEvent {
        event_id: format!("ev-{i}"),
        source: "orderflow.billing".into(),
        detail_type: "OrderBilled".into(),
        detail: "x".repeat(detail_bytes),
        trace_header: None,
    }
}

/// A PutEvents that fails given event ids a given number of times, and whole calls on request.
#[derive(Default)]
struct FlakyApi {
    entry_failures_left: Mutex<HashMap<String, usize>>,
    entry_code: Mutex<Option<&'static str>>,
    call_failures_left: Mutex<usize>,
    call_refused: Mutex<bool>,
    calls: Mutex<Vec<Vec<String>>>,
}

impl FlakyApi {
    fn failing(ids: &[(&str, usize)]) -> Self {
        let api = FlakyApi::default();
        *api.entry_failures_left.lock().unwrap() = ids.iter().map(|(id, n)| (id.to_string(), *n)).collect();
        api
    }
    fn calls(&self) -> Vec<Vec<String>> {
        self.calls.lock().unwrap().clone()
    }
}

#[async_trait]
impl PutEventsApi for FlakyApi {
    async fn put_events(&self, entries: &[OutboundEvent]) -> Result<Vec<Option<(String, String)>>, CallFailure> {
        assert!(entries.len() <= 10, "PutEvents takes at most 10 entries");
        assert!(entries.iter().map(OutboundEvent::size).sum::<usize>() <= MAX_REQUEST_BYTES);
        self.calls.lock().unwrap().push(entries.iter().map(|e| e.event_id.clone()).collect());
        {
            let mut call_failures = self.call_failures_left.lock().unwrap();
            if *call_failures > 0 {
                *call_failures -= 1;
                let retryable = !*self.call_refused.lock().unwrap();
                return Err(CallFailure { message: "dispatch failure: connection reset".into(), retryable });
            }
        }
        let code = self.entry_code.lock().unwrap().unwrap_or("ThrottlingException");
        let mut left = self.entry_failures_left.lock().unwrap();
        Ok(entries
            .iter()
            .map(|e| match left.get_mut(&e.event_id) {
                Some(n) if *n > 0 => {
                    *n -= 1;
                    Some((code.to_string(), "Rate exceeded".to_string()))
                }
                _ => None,
            })
            .collect())
    }
}

fn publisher(api: FlakyApi) -> ChunkedPublisher<FlakyApi> {
    ChunkedPublisher::with_policy(api, 3, Duration::from_millis(1))
}

#[test]
fn chunks_respect_entry_and_size_limits() {
    let events: Vec<_> = (0..25).map(|i| event(i, 100)).collect();
    let sizes: Vec<usize> = chunks(&events).unwrap().iter().map(|c| c.len()).collect();
    assert_eq!(sizes, vec![10, 10, 5]);

    // Three 100 KB events: two fit under 256 KB, the third starts a new request.
    let big: Vec<_> = (0..3).map(|i| event(i, 100 * 1024)).collect();
    let sizes: Vec<usize> = chunks(&big).unwrap().iter().map(|c| c.len()).collect();
    assert_eq!(sizes, vec![2, 1]);

    let too_big = vec![event(0, 10), event(1, MAX_REQUEST_BYTES)];
    assert!(matches!(chunks(&too_big), Err(PublishError::TooLarge { ref event_id, .. }) if event_id == "ev-1"));
}

#[tokio::test]
async fn only_failed_entries_are_resent() {
    let p = publisher(FlakyApi::failing(&[("ev-3", 1), ("ev-12", 2)]));
    p.publish((0..15).map(|i| event(i, 10)).collect()).await.unwrap();
    let calls = p.api().calls();
    assert_eq!(calls.len(), 4, "{calls:?}");
    assert_eq!(calls[0].len(), 10);
    assert_eq!(calls[1].len(), 5);
    assert_eq!(calls[2], vec!["ev-3", "ev-12"], "second attempt: only the two that failed");
    assert_eq!(calls[3], vec!["ev-12"]);
}

#[tokio::test]
async fn entries_that_keep_failing_are_named_in_a_retryable_error() {
    let p = publisher(FlakyApi::failing(&[("ev-1", 99)]));
    let err = p.publish((0..3).map(|i| event(i, 10)).collect()).await.unwrap_err();
    match &err {
        PublishError::NotPublished { failed, total, attempts, .. } => {
            assert_eq!((*total, *attempts), (3, 3));
            assert_eq!(failed.len(), 1);
            assert_eq!((failed[0].event_id.as_str(), failed[0].code.as_str()), ("ev-1", "ThrottlingException"));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(err.is_retryable());
    assert!(err.to_string().contains("ev-1"), "{err}");
    assert_eq!(p.api().calls().len(), 3, "bounded: three attempts in all");
}

#[tokio::test]
async fn a_failed_call_is_retried_whole() {
    let api = FlakyApi::default();
    *api.call_failures_left.lock().unwrap() = 1;
    let p = publisher(api);
    p.publish(vec![event(0, 10), event(1, 10)]).await.unwrap();
    assert_eq!(p.api().calls(), vec![vec!["ev-0", "ev-1"], vec!["ev-0", "ev-1"]]);
}

#[tokio::test]
async fn an_oversized_event_is_a_permanent_error_and_nothing_is_sent() {
    let p = publisher(FlakyApi::default());
    let err = p.publish(vec![event(0, 10), event(1, MAX_REQUEST_BYTES + 1)]).await.unwrap_err();
    assert!(!err.is_retryable());
    assert!(p.api().calls().is_empty());
}

#[tokio::test]
async fn an_entry_refused_for_a_reason_no_resend_fixes_is_not_resent() {
    let api = FlakyApi::failing(&[("ev-1", 99)]);
    *api.entry_code.lock().unwrap() = Some("MalformedDetail");
    let p = publisher(api);
    let err = p.publish((0..3).map(|i| event(i, 10)).collect()).await.unwrap_err();
    assert!(!err.is_retryable(), "{err}");
    assert_eq!(p.api().calls().len(), 1, "no resend of a malformed entry");
}

#[tokio::test]
async fn a_refused_call_is_not_retried() {
    let api = FlakyApi::default();
    *api.call_failures_left.lock().unwrap() = 5;
    *api.call_refused.lock().unwrap() = true;
    let p = publisher(api);
    let err = p.publish(vec![event(0, 10)]).await.unwrap_err();
    assert!(!err.is_retryable(), "{err}");
    assert_eq!(p.api().calls().len(), 1);
}

#[tokio::test]
async fn resending_stops_before_the_invocations_deadline() {
    // Four attempts with a first resend after 1 s would take seconds; the invocation has 300 ms.
    let p = ChunkedPublisher::with_policy(FlakyApi::failing(&[("ev-0", 99)]), 4, Duration::from_secs(1));
    let started = std::time::Instant::now();
    let deadline = std::time::SystemTime::now() + Duration::from_millis(300);
    let err = orderflow_harness::deadline::within(deadline, p.publish(vec![event(0, 10)])).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_millis(300), "gave up in time: {:?}", started.elapsed());
    assert!(err.is_retryable(), "the event itself is fine: SQS redelivers the record later");
    assert_eq!(p.api().calls().len(), 1);
}
