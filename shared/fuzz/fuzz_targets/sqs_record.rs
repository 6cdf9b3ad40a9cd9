//! Any SQS record body, through the real consumer harness (decode: EventBridge event, envelope,
//! upcasting, typed event, validation) to a handler. What must hold for every input: no panic; the
//! record is either handled or dead-lettered at once with a reason (never handed back for a retry:
//! nothing here is transient), and a record that reaches the handler is an event that validates.
#![no_main]

use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use libfuzzer_sys::fuzz_target;
use orderflow_contracts::{AnyEvent, Inbound};
use orderflow_harness_testing::{sqs_batch, Harnessed};
use orderflow_harness::{Handler, HandlerError, RecordContext};

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap())
}

struct Accepts;

#[async_trait]
impl Handler<AnyEvent> for Accepts {
    async fn handle(&self, event: AnyEvent, _: &RecordContext) -> Result<(), HandlerError> {
        // What a handler is given has passed the contract's checks: written back at the current
        // version, it decodes and validates again.
        let data = serde_json::value::to_raw_value(&event.data()).expect("event data serialises");
        AnyEvent::decode(event.name(), event.schema_version(), &data).expect("what reaches a handler is valid");
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(body) = std::str::from_utf8(data) else { return };
    let consumer = Harnessed::new("fuzz", Arc::new(Accepts));
    let failures = runtime().block_on(consumer.failures(sqs_batch(vec![body.to_string()])));
    assert!(failures.is_empty(), "handed back for a retry: {body:?}");
    for letter in consumer.dead_letters.letters() {
        assert!(!letter.reason.is_empty(), "dead-lettered without a reason");
    }
});
