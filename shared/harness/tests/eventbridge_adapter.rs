//! The EventBridge adapter against scripted PutEvents answers: the emulator cannot be made to fail
//! one entry of a request, AWS can. Checks that per-entry failures in a successful response are read
//! right and that only those entries are sent again.
//!
//! The script is a connector of the SDK's own HTTP interface, not the SDK's `StaticReplayClient`:
//! that one needs `aws-smithy-http-client/test-util`, which turns on serde_json's `preserve_order`
//! for the whole workspace's test build, so the tests and the deployed binaries could not share one
//! compile of the SDK (`make test` would build it twice).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_eventbridge::config::{BehaviorVersion, Credentials, Region};
use aws_smithy_runtime_api::client::http::{http_client_fn, HttpConnector, HttpConnectorFuture, SharedHttpConnector};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_types::body::SdkBody;
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
        trace_header: None,
    }
}

/// EventBridge's endpoint, scripted: each request gets the next answer (HTTP 200 with that JSON
/// body), and each request's body is kept. A request beyond the script fails the test.
#[derive(Debug, Clone, Default)]
struct Script {
    answers: Arc<Mutex<VecDeque<Value>>>,
    sent: Arc<Mutex<Vec<Value>>>,
}

impl Script {
    fn new(answers: Vec<Value>) -> Self {
        Self { answers: Arc::new(Mutex::new(answers.into())), ..Self::default() }
    }

    /// The `Entries` of each request sent, in order.
    fn sent_entries(&self) -> Vec<Vec<Value>> {
        self.sent.lock().unwrap().iter().map(|body| body["Entries"].as_array().unwrap().clone()).collect()
    }
}

impl HttpConnector for Script {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let body: Value = serde_json::from_slice(request.body().bytes().unwrap()).unwrap();
        self.sent.lock().unwrap().push(body);
        let answer = self.answers.lock().unwrap().pop_front().expect("a request beyond the script");
        let mut response = HttpResponse::new(200.try_into().unwrap(), SdkBody::from(answer.to_string()));
        response.headers_mut().insert("content-type", "application/x-amz-json-1.1");
        HttpConnectorFuture::ready(Ok(response))
    }
}

fn publisher(script: &Script) -> ChunkedPublisher<EventBridgeApi> {
    let connector = script.clone();
    let config = aws_sdk_eventbridge::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("AKID", "SECRET", None, None, "test"))
        .http_client(http_client_fn(move |_, _| SharedHttpConnector::new(connector.clone())))
        .build();
    ChunkedPublisher::with_policy(
        EventBridgeApi::new(aws_sdk_eventbridge::Client::from_conf(config), "orderflow-bus"),
        3,
        Duration::from_millis(1),
    )
}

#[tokio::test]
async fn a_partially_failed_put_events_resends_only_the_failed_entry() {
    let script = Script::new(vec![
        json!({"FailedEntryCount": 1, "Entries": [
            {"EventId": "a"},
            {"ErrorCode": "ThrottlingException", "ErrorMessage": "Rate exceeded"},
            {"EventId": "c"}
        ]}),
        json!({"FailedEntryCount": 0, "Entries": [{"EventId": "b"}]}),
    ]);
    publisher(&script).publish((0..3).map(event).collect()).await.unwrap();

    let sent = script.sent_entries();
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
        json!({"FailedEntryCount": 1, "Entries": [
            {"ErrorCode": "InternalFailure", "ErrorMessage": "try again"}
        ]})
    };
    let script = Script::new(vec![
        json!({"FailedEntryCount": 1, "Entries": [
            {"EventId": "a"},
            {"ErrorCode": "InternalFailure", "ErrorMessage": "try again"}
        ]}),
        failing(),
        failing(),
    ]);
    let err = publisher(&script).publish((0..2).map(event).collect()).await.unwrap_err();
    match err {
        PublishError::NotPublished { failed, total, attempts, .. } => {
            assert_eq!((total, attempts), (2, 3));
            assert_eq!(failed.len(), 1);
            assert_eq!((failed[0].event_id.as_str(), failed[0].code.as_str()), ("ev-1", "InternalFailure"));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(script.sent_entries().iter().map(Vec::len).collect::<Vec<_>>(), vec![2, 1, 1]);
}
