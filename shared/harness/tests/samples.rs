//! Every SQS sample under `events-samples/` decodes through the harness into the event it claims to
//! carry (samples that drift from the contracts fail here). Function crates also run their own samples
//! through their handlers.

use std::path::{Path, PathBuf};

use aws_lambda_events::event::sqs::SqsEvent;
use orderflow_contracts::{
    inbound, Inbound, OrderBilled, OrderCancelled, OrderPlaced, OrderStatusChanged, PaymentDeclined, PaymentRefunded,
    ShippingLabelCreated, StockAllocationFailed, StockReceived, StockReleased,
};
use orderflow_harness::consumer::decode;

inbound! {
    enum AnyEvent {
        Placed(OrderPlaced),
        Billed(OrderBilled),
        Declined(PaymentDeclined),
        Label(ShippingLabelCreated),
        Short(StockAllocationFailed),
        Changed(OrderStatusChanged),
        Cancelled(OrderCancelled),
        Refunded(PaymentRefunded),
        Received(StockReceived),
        Released(StockReleased),
    }
}

fn sqs_samples(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sqs_samples(&path, out);
        } else if path.to_string_lossy().ends_with(".sqs.json") {
            out.push(path);
        }
    }
}

#[test]
fn every_sqs_sample_decodes_to_the_event_it_names() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../events-samples");
    let mut files = Vec::new();
    sqs_samples(&root, &mut files);
    assert!(files.len() >= 7, "expected the committed samples, found {files:?}");
    for file in files {
        let event: SqsEvent = serde_json::from_slice(&std::fs::read(&file).unwrap())
            .unwrap_or_else(|e| panic!("{}: not an SQS event: {e}", file.display()));
        assert!(!event.records.is_empty(), "{}: no records", file.display());
        // A sample of several event types (a batch as the lake or reporting sees it) says so by name.
        let mixed = file.file_name().unwrap().to_string_lossy().starts_with("mixed-");
        for record in &event.records {
            assert!(record.message_id.as_deref().is_some_and(|id| !id.is_empty()));
            let (decoded, metadata) =
                decode::<AnyEvent>(record.body.as_deref()).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            assert_eq!(decoded.name(), metadata.event_type, "{}", file.display());
            let stem = file.file_name().unwrap().to_string_lossy().replace(".sqs.json", "").replace('-', "");
            let name = decoded.name().to_lowercase();
            assert!(mixed || stem.starts_with(&name) || stem.contains(&name), "{}: carries {name}", file.display());
        }
    }
}
