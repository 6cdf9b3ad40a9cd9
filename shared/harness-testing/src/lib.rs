//! Test support for function crates: load an `events-samples/` file, wrap an envelope the way
//! EventBridge and SQS deliver it, and run a handler through the real harness over in-memory fakes.
//!
//! A crate of its own, a dev-dependency of the crates that test with it, rather than a feature of
//! the harness: a feature turned on by dev-dependencies changes the harness itself in the test
//! build, and with it every crate that depends on it, so `cargo test` compiled every function a
//! second time after the deployment's build. As a crate beside the harness, the tests link the
//! functions' libraries and binaries as the deployment built them (tests/tests/template.rs holds it).

use std::sync::Arc;

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use orderflow_contracts::{Envelope, Event, Inbound, OrderState, OrderStatus, OrderStatusChanged};
use serde_json::json;

use orderflow_harness::consumer::{BatchResult, Consumer, ConsumerSettings, Handler};
use orderflow_harness::dead_letter::InMemoryDeadLetters;
use orderflow_harness::idempotency::InMemoryIdempotencyStore;
use orderflow_harness::visibility::RecordedDelays;

/// Reads `events-samples/<relative>` from the repository root.
pub fn sample_text(relative: &str) -> String {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../events-samples");
    let path = root.join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Reads an SQS sample.
pub fn sqs_sample(relative: &str) -> SqsEvent {
    serde_json::from_str(&sample_text(relative)).unwrap_or_else(|e| panic!("{relative}: not an SQS event: {e}"))
}

/// The event carried by record `index` of an SQS sample, decoded by the harness.
pub fn sample_event<E: Inbound>(relative: &str, index: usize) -> E {
    let event = sqs_sample(relative);
    let record = event.records.get(index).unwrap_or_else(|| panic!("{relative}: no record {index}"));
    orderflow_harness::consumer::decode::<E>(record.body.as_deref())
        .unwrap_or_else(|e| panic!("{relative}[{index}]: {e}"))
        .0
}

/// The order of the `OrderStatusChanged` at `index` of a sample, under `order_id`, at `version` and
/// `status` (the read models' tests: one order in many versions).
pub fn sample_order(relative: &str, index: usize, order_id: &str, version: u64, status: OrderStatus) -> OrderState {
    let mut order = sample_event::<OrderStatusChanged>(relative, index).order;
    order.order_id = order_id.to_string();
    order.version = version;
    order.status = status;
    order
}

/// The SQS body of an `OrderStatusChanged` (from `Placed`) carrying `order`, as EventBridge delivers it.
pub fn status_changed_body(order: OrderState) -> String {
    eventbridge_body(&Envelope::new(OrderStatusChanged { previous_status: OrderStatus::Placed, order }, None))
}

/// The SQS body EventBridge delivers for `envelope`.
pub fn eventbridge_body<E: Event>(envelope: &Envelope<E>) -> String {
    json!({
        "version": "0", "id": uuid::Uuid::new_v4().to_string(), "detail-type": E::NAME, "source": E::SOURCE,
        "account": "123456789012", "time": envelope.metadata.occurred_at, "region": "us-east-1", "resources": [],
        "detail": envelope,
    })
    .to_string()
}

/// An SQS batch of the given bodies, with message ids `m0`, `m1`, ...
pub fn sqs_batch(bodies: Vec<String>) -> SqsEvent {
    let mut event = SqsEvent::default();
    event.records = bodies
        .into_iter()
        .enumerate()
        .map(|(i, body)| {
            let mut m = SqsMessage::default();
            m.message_id = Some(format!("m{i}"));
            m.receipt_handle = Some(format!("rh{i}"));
            m.body = Some(body);
            m.attributes.insert("ApproximateReceiveCount".into(), "1".into());
            m
        })
        .collect();
    event
}

/// A consumer over in-memory idempotency and dead-letter fakes, as a function runs in production.
pub struct Harnessed<E> {
    /// The consumer.
    pub consumer: Consumer<E>,
    /// Its idempotency store.
    pub idempotency: Arc<InMemoryIdempotencyStore>,
    /// Its dead-letter queue.
    pub dead_letters: Arc<InMemoryDeadLetters>,
    /// The visibility delays it asked SQS for ("retry after").
    pub delays: Arc<RecordedDelays>,
}

impl<E: Inbound> Harnessed<E> {
    /// Wraps `handler` as the consumer `name`.
    pub fn new(name: &str, handler: Arc<dyn Handler<E>>) -> Self {
        let idempotency = Arc::new(InMemoryIdempotencyStore::default());
        let dead_letters = Arc::new(InMemoryDeadLetters::default());
        let delays = Arc::new(RecordedDelays::default());
        let consumer =
            Consumer::new(name, handler, idempotency.clone(), dead_letters.clone(), ConsumerSettings::default())
                .with_visibility(delays.clone());
        Self { consumer, idempotency, dead_letters, delays }
    }

    /// Processes a batch; panics if the whole batch failed.
    pub async fn process(&self, event: SqsEvent) -> BatchResult {
        self.consumer.process(event).await.expect("the batch as a whole succeeds")
    }

    /// Processes a batch and returns the ids SQS would redeliver.
    pub async fn failures(&self, event: SqsEvent) -> Vec<String> {
        self.process(event).await.response.batch_item_failures.iter().map(|f| f.item_identifier.clone()).collect()
    }
}

/// Fails the calling test at once, saying which service it needs and how to start it, when nothing
/// answers at `url`'s host and port (`redis://127.0.0.1:6379`, `postgres://user@127.0.0.1:5432/db`).
/// A bare `cargo test` on a machine without the service then says what is missing, instead of
/// failing somewhere inside an adapter with a connection error.
pub fn needs_service(name: &str, url: &str) {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split('/').next().unwrap_or_default();
    let address = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    let reachable = std::net::ToSocketAddrs::to_socket_addrs(address)
        .ok()
        .and_then(|mut a| a.next())
        .is_some_and(|socket| std::net::TcpStream::connect_timeout(&socket, std::time::Duration::from_secs(1)).is_ok());
    assert!(
        reachable,
        "this test needs {name} at {address}, and nothing answers there: `infra/local-services.sh up` \
         (or `make unit`, which runs it) starts the machine's {name}"
    );
}
