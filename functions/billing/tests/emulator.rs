//! The DynamoDB invoice adapter against the local emulator (run by `make test`; ignored by a bare
//! `cargo test`): the conditions that keep one charge and at most one refund per order.

use aws_sdk_dynamodb::types::{AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType};
use billing::invoices::{DynamoDbInvoiceStore, Invoice, InvoiceStatus, InvoiceStore};
use orderflow_contracts::Currency;

async fn store() -> DynamoDbInvoiceStore {
    assert!(std::env::var("AWS_ENDPOINT_URL").is_ok(), "AWS_ENDPOINT_URL is not set: run `make test`");
    let sdk = orderflow_harness::aws::sdk_config().await;
    let client = aws_sdk_dynamodb::Client::new(&sdk);
    let name = format!("invoices-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    client
        .create_table()
        .table_name(&name)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("orderId")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .key_schema(KeySchemaElement::builder().attribute_name("orderId").key_type(KeyType::Hash).build().unwrap())
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .unwrap();
    DynamoDbInvoiceStore::new(client, name)
}

fn invoice(order_id: &str, status: InvoiceStatus) -> Invoice {
    Invoice {
        invoice_id: format!("inv-{order_id}"),
        order_id: order_id.into(),
        amount_minor: 5743,
        currency: Currency::GBP,
        status,
        cancel_requested: false,
    }
}

#[tokio::test]
#[ignore = "needs the local AWS emulator: run `make test`"]
async fn a_cancellation_in_flight_is_marked_only_while_pending_and_a_refund_is_recorded_once() {
    let store = store().await;
    let paid = InvoiceStatus::Paid { payment_reference: "pay-1".into() };
    // Pending, cancelled in flight: marked, and the mark survives the settlement.
    assert_eq!(
        store.create_or_get(invoice("o-1", InvoiceStatus::Pending)).await.unwrap().status,
        InvoiceStatus::Pending
    );
    assert!(store.request_cancel("o-1").await.unwrap().cancel_requested);
    assert_eq!(store.settle("o-1", &paid).await.unwrap(), paid);
    let settled = store.get("o-1").await.unwrap().unwrap();
    assert_eq!((settled.status.clone(), settled.cancel_requested), (paid.clone(), true));
    // Refunded once: a second record of a refund leaves the first.
    let refunded = store.refunded("o-1", "rfd-1").await.unwrap();
    assert_eq!(
        refunded,
        InvoiceStatus::Refunded { payment_reference: "pay-1".into(), refund_reference: "rfd-1".into() }
    );
    assert_eq!(store.refunded("o-1", "rfd-2").await.unwrap(), refunded);

    // Settled before the cancellation: not marked (the cancellation refunds it itself).
    store.create_or_get(invoice("o-2", InvoiceStatus::Pending)).await.unwrap();
    store.settle("o-2", &paid).await.unwrap();
    assert!(!store.request_cancel("o-2").await.unwrap().cancel_requested);

    // Voided before billing: the order's OrderPlaced finds it voided, and nothing settles it.
    assert_eq!(store.create_or_get(invoice("o-3", InvoiceStatus::Voided)).await.unwrap().status, InvoiceStatus::Voided);
    assert_eq!(
        store.create_or_get(invoice("o-3", InvoiceStatus::Pending)).await.unwrap().status,
        InvoiceStatus::Voided
    );
    assert_eq!(store.settle("o-3", &paid).await.unwrap(), InvoiceStatus::Voided);
    // Nothing charged, nothing refunded.
    assert_eq!(store.refunded("o-3", "rfd-3").await.unwrap(), InvoiceStatus::Voided);
}
