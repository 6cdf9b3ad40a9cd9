//! The EventBridge adapter against recorded PutEvents answers (the SDK's `StaticReplayClient`): the
//! emulator cannot be made to fail one entry of a request, AWS can. Checks that per-entry failures
//! in a successful response are read right and that only those entries are sent again.

use std::time::Duration;

use aws_sdk_eventbridge::config::{BehaviorVersion, Credentials, Region};
use aws_smithy_http_client::test_util::{ReplayEvent, StaticReplayClient};
use orderflow_harness::publisher::{ChunkedPublisher, EventBridgeApi, PublishError};
use orderflow_harness::{EventPublisher, OutboundEvent};
use serde_json::{json, Value};

fn event(i: usize) -> OutboundEvent {
    OutboundEvent {
        event_id: format!("ev-{i}"),
        source: "orderflow.billing".into(),
        detail_type: "OrderBilled".into(),
        detail: json!({"metadata": {"eventId": format!("ev-{i}")}, "data": {"orderId": format!("ord-{i}")}})
            .to_string(),
    }
}

fn answer(body: Value) -> ReplayEvent {
    ReplayEvent::new(
        http::Request::builder()
            .uri("https://events.us-east-1.amazonaws.com/")
            .body(aws_smithy_types::body::SdkBody::empty())
            .unwrap(),
        http::Response::builder()
            .status(200)
            .header("content-type", "application/x-amz-json-1.1")
            .body(aws_smithy_types::body::SdkBody::from(body.to_string()))
            .unwrap(),
    )
}

fn publisher(replay: &StaticReplayClient) -> ChunkedPublisher<EventBridgeApi> {
    let config = aws_sdk_eventbridge::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("AKID", "SECRET", None, None, "test"))
        .http_client(replay.clone())
        .build();
    ChunkedPublisher::with_policy(
        EventBridgeApi::new(aws_sdk_eventbridge::Client::from_conf(config), "orderflow-bus"),
        3,
        Duration::from_millis(1),
    )
}

fn sent_entries(replay: &StaticReplayClient) -> Vec<Vec<Value>> {
    replay
        .actual_requests()
        .map(|r| {
            let body: Value = serde_json::from_slice(r.body().bytes().unwrap()).unwrap();
            body["Entries"].as_array().unwrap().clone()
        })
        .collect()
}

#[tokio::test]
async fn a_partially_failed_put_events_resends_only_the_failed_entry() {
    let replay = StaticReplayClient::new(vec![
        answer(json!({"FailedEntryCount": 1, "Entries": [
            {"EventId": "a"},
            {"ErrorCode": "ThrottlingException", "ErrorMessage": "Rate exceeded"},
            {"EventId": "c"}
        ]})),
        answer(json!({"FailedEntryCount": 0, "Entries": [{"EventId": "b"}]})),
    ]);
    publisher(&replay).publish((0..3).map(event).collect()).await.unwrap();

    let sent = sent_entries(&replay);
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0].len(), 3);
    assert_eq!(sent[1].len(), 1, "only the failed entry is sent again");
    let resent = &sent[1][0];
    assert_eq!(resent["Detail"].as_str().unwrap(), event(1).detail);
    assert_eq!(resent["EventBusName"], "orderflow-bus");
    assert_eq!(resent["Source"], "orderflow.billing");
    assert_eq!(resent["DetailType"], "OrderBilled");
}

#[tokio::test]
async fn entries_failing_every_attempt_are_named() {
    let failing = || {
        answer(json!({"FailedEntryCount": 1, "Entries": [
            {"ErrorCode": "InternalFailure", "ErrorMessage": "try again"}
        ]}))
    };
    let replay = StaticReplayClient::new(vec![
        answer(json!({"FailedEntryCount": 1, "Entries": [
            {"EventId": "a"},
            {"ErrorCode": "InternalFailure", "ErrorMessage": "try again"}
        ]})),
        failing(),
        failing(),
    ]);
    let err = publisher(&replay).publish((0..2).map(event).collect()).await.unwrap_err();
    match err {
        PublishError::NotPublished { failed, total, attempts, .. } => {
            assert_eq!((total, attempts), (2, 3));
            assert_eq!(failed.len(), 1);
            assert_eq!((failed[0].event_id.as_str(), failed[0].code.as_str()), ("ev-1", "InternalFailure"));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(sent_entries(&replay).iter().map(Vec::len).collect::<Vec<_>>(), vec![2, 1, 1]);
}
