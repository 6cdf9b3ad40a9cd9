//! Harness throughput on a realistic batch (events-samples/harness/batch-of-10-order-placed.sqs.json)
//! beside its floor: a bare serde_json decode of the same records into the same typed envelope.
//! `shared/harness/benches/run.sh` runs this and the Powertools (Python) BatchProcessor on the same
//! file and prints the three figures side by side.

use std::hint::black_box;
use std::sync::Arc;

use async_trait::async_trait;
use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use aws_lambda_events::event::sqs::SqsEvent;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use orderflow_contracts::{Envelope, OrderPlaced};
use orderflow_harness::dead_letter::InMemoryDeadLetters;
use orderflow_harness::idempotency::InMemoryIdempotencyStore;
use orderflow_harness::{Consumer, ConsumerSettings, Handler, HandlerError, RecordContext};

const BATCH: &str = include_str!("../../../events-samples/harness/batch-of-10-order-placed.sqs.json");

struct Acknowledge;

#[async_trait]
impl Handler<OrderPlaced> for Acknowledge {
    async fn handle(&self, event: OrderPlaced, _: &RecordContext) -> Result<(), HandlerError> {
        black_box(event);
        Ok(())
    }
}

fn bench(c: &mut Criterion) {
    let batch: SqsEvent = serde_json::from_str(BATCH).expect("batch file is an SQS event");
    let records = batch.records.len() as u64;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut group = c.benchmark_group("sqs_batch");
    group.throughput(Throughput::Elements(records));

    group.bench_function("serde_floor", |b| {
        b.iter(|| {
            for r in &batch.records {
                let e: EventBridgeEvent<Envelope<OrderPlaced>> =
                    serde_json::from_str(r.body.as_deref().unwrap()).unwrap();
                black_box(e);
            }
        })
    });

    // A fresh idempotency store per batch: every record is new, so the handler runs every time.
    // Without claims: a consumer whose own writes make a repeat harmless (`without_claims`).
    for (name, claims) in [("harness", true), ("harness_without_claims", false)] {
        group.bench_function(name, |b| {
            b.iter_batched(
                || {
                    let consumer = Consumer::<OrderPlaced>::new(
                        "bench",
                        Arc::new(Acknowledge),
                        Arc::new(InMemoryIdempotencyStore::default()),
                        Arc::new(InMemoryDeadLetters::default()),
                        ConsumerSettings::default(),
                    );
                    (if claims { consumer } else { consumer.without_claims() }, batch.clone())
                },
                |(consumer, batch)| {
                    let result = rt.block_on(consumer.process(batch)).unwrap();
                    assert!(result.response.batch_item_failures.is_empty());
                    black_box(result)
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
