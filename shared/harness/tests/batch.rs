//! The batch harness's promises, over in-memory fakes, on the repository's sample batch of ten
//! `OrderPlaced` records.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use aws_lambda_events::event::sqs::SqsEvent;
use orderflow_contracts::OrderPlaced;
use orderflow_harness::batch::{BatchConsumer, BatchHandler, BatchRecord};
use orderflow_harness::consumer::BatchResult;
use orderflow_harness::dead_letter::InMemoryDeadLetters;
use orderflow_harness::HandlerError;
use pretty_assertions::assert_eq;

/// The first `n` records of the sample batch (message ids as in the file).
fn sample(n: usize) -> SqsEvent {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../events-samples/harness/batch-of-10-order-placed.sqs.json");
    let mut event: SqsEvent = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    event.records.truncate(n);
    event
}

fn ids(event: &SqsEvent) -> Vec<String> {
    event.records.iter().map(|r| r.message_id.clone().unwrap()).collect()
}

/// Fails the records at the listed positions of the batch it is given, retryably or not; can panic.
#[derive(Default)]
struct Scripted {
    seen: Mutex<Vec<String>>,
    retry: Vec<usize>,
    reject: Vec<usize>,
    panic: bool,
}

#[async_trait]
impl BatchHandler<OrderPlaced> for Scripted {
    async fn handle_batch(&self, records: &[BatchRecord<OrderPlaced>]) -> Vec<Result<(), HandlerError>> {
        assert!(!self.panic, "adapter bug");
        records
            .iter()
            .enumerate()
            .map(|(i, r)| {
                self.seen.lock().unwrap().push(r.ctx.message_id.clone());
                if self.retry.contains(&i) {
                    Err(HandlerError::retryable("store down"))
                } else if self.reject.contains(&i) {
                    Err(HandlerError::permanent("never"))
                } else {
                    Ok(())
                }
            })
            .collect()
    }
}

fn rig(handler: Scripted) -> (BatchConsumer<OrderPlaced>, Arc<Scripted>, Arc<InMemoryDeadLetters>) {
    let handler = Arc::new(handler);
    let dlq = Arc::new(InMemoryDeadLetters::default());
    (BatchConsumer::new("lake", handler.clone(), dlq.clone()), handler, dlq)
}

fn failed(result: &BatchResult) -> Vec<String> {
    result.response.batch_item_failures.iter().map(|f| f.item_identifier.clone()).collect()
}

#[tokio::test]
async fn the_handler_sees_the_decodable_records_at_once_and_an_undecodable_one_goes_to_the_dlq() {
    let (consumer, handler, dlq) = rig(Scripted::default());
    let mut event = sample(3);
    event.records[1].body = Some("not json".into());
    let all = ids(&event);
    let result = consumer.process(event).await.unwrap();
    assert!(failed(&result).is_empty());
    assert_eq!(*handler.seen.lock().unwrap(), vec![all[0].clone(), all[2].clone()]);
    assert_eq!(dlq.letters().iter().map(|l| l.message_id.clone()).collect::<Vec<_>>(), vec![all[1].clone()]);
    assert_eq!((result.counts.processed, result.counts.dead_lettered), (2, 1));
}

#[tokio::test]
async fn each_record_gets_its_own_outcome() {
    let (consumer, _, dlq) = rig(Scripted { retry: vec![1], reject: vec![2], ..Default::default() });
    let event = sample(3);
    let all = ids(&event);
    let result = consumer.process(event).await.unwrap();
    assert_eq!(failed(&result), vec![all[1].clone()]);
    let letters = dlq.letters();
    assert_eq!(letters.iter().map(|l| l.message_id.clone()).collect::<Vec<_>>(), vec![all[2].clone()]);
    assert!(letters[0].reason.contains("never"));
}

#[tokio::test]
async fn a_panicking_handler_hands_the_whole_batch_back() {
    let (consumer, _, dlq) = rig(Scripted { panic: true, ..Default::default() });
    let event = sample(4);
    let all = ids(&event);
    let result = consumer.process(event).await.unwrap();
    assert_eq!(failed(&result), all);
    assert!(dlq.letters().is_empty());
}
