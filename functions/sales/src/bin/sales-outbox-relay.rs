//! Lambda entry point of `sales-outbox-relay`: wiring only. See `sales::outbox`.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use aws_lambda_events::event::dynamodb::Event as StreamEvent;
use lambda_runtime::{service_fn, LambdaEvent};
use orderflow_harness::aws::connections::Service;
use orderflow_harness::dead_letter::SqsDeadLetterQueue;
use orderflow_harness::publisher::EventBridgePublisher;
use orderflow_harness::{aws, config, deadline, telemetry};
use sales::announce::{DynamoDbSentMarks, PUBLISH_ON_WRITE};
use sales::outbox::OutboxRelay;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    telemetry::init();
    let bus = config::required(config::vars::EVENT_BUS_NAME)?;
    let sdk = aws::sdk_config_opening(&[Service::EventBridge, Service::DynamoDb]).await?;
    let publisher = EventBridgePublisher::eventbridge(aws_sdk_eventbridge::Client::new(&sdk), bus);
    let mut relay = OutboxRelay::new(Arc::new(publisher));
    // A record that can never be published goes here at once, with the reason; the relay goes on.
    let dead_letter_queue = config::required(config::vars::DEAD_LETTER_QUEUE_URL)?;
    relay =
        relay.with_dead_letters(Arc::new(SqsDeadLetterQueue::new(aws_sdk_sqs::Client::new(&sdk), dead_letter_queue)));
    // With the fast path on, the writers' marks: what they published themselves is not published
    // again (sales::announce). Off, the relay publishes every write at once, as it did alone.
    if config::parsed_or("OUTBOX_PUBLISH_ON_WRITE", PUBLISH_ON_WRITE)? {
        let marks_table = config::required("OUTBOX_MARKS_TABLE")?;
        relay =
            relay.with_sent_marks(Arc::new(DynamoDbSentMarks::new(aws_sdk_dynamodb::Client::new(&sdk), marks_table)));
    }
    let relay = Arc::new(relay);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<StreamEvent>| {
        let relay = Arc::clone(&relay);
        async move {
            let started = std::time::Instant::now();
            let ends = UNIX_EPOCH + Duration::from_millis(event.context.deadline);
            let response = deadline::within(ends, relay.relay(event.payload)).await;
            telemetry::emit_invocation("sales-outbox-relay", started);
            Ok::<_, lambda_runtime::Error>(response)
        }
    }))
    .await
}
