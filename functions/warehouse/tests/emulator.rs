//! The DynamoDB stock adapter against the local emulator (run by `make test`; ignored by a bare
//! `cargo test`). The end-to-end tests never reach its redelivery path, because the harness drops
//! duplicates before the handler runs; these tests call it directly.

use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType,
};
use orderflow_contracts::{Address, Currency, OrderBilled, OrderLine, ReleasedLine, Shortage, StockReceived};
use warehouse::stock::{Allocation, DynamoDbStockStore, Release, StockStore, BACKORDERS_INDEX};

fn string_attribute(name: &str) -> AttributeDefinition {
    AttributeDefinition::builder().attribute_name(name).attribute_type(ScalarAttributeType::S).build().unwrap()
}

fn key(name: &str, kind: KeyType) -> KeySchemaElement {
    KeySchemaElement::builder().attribute_name(name).key_type(kind).build().unwrap()
}

/// A table keyed by `key`; the shipments table (keyed by `orderId`) with its backorders index, as
/// `infra/template.yaml` declares it.
async fn table(client: &aws_sdk_dynamodb::Client, key_name: &str) -> String {
    let name = format!("{key_name}-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let mut create = client
        .create_table()
        .table_name(&name)
        .attribute_definitions(string_attribute(key_name))
        .key_schema(key(key_name, KeyType::Hash))
        .billing_mode(BillingMode::PayPerRequest);
    if key_name == "orderId" {
        create = create
            .attribute_definitions(string_attribute("backlog"))
            .attribute_definitions(string_attribute("waitingSince"))
            .global_secondary_indexes(
                GlobalSecondaryIndex::builder()
                    .index_name(BACKORDERS_INDEX)
                    .key_schema(key("backlog", KeyType::Hash))
                    .key_schema(key("waitingSince", KeyType::Range))
                    .projection(Projection::builder().projection_type(ProjectionType::All).build())
                    .build()
                    .unwrap(),
            );
    }
    create.send().await.unwrap();
    name
}

fn billed(order_id: &str, lines: &[OrderLine]) -> OrderBilled {
    OrderBilled {
        order_id: order_id.into(),
        invoice_id: format!("inv-{order_id}"),
        amount_minor: lines.iter().map(|l| i64::from(l.quantity) * l.unit_price_minor).sum(),
        currency: Currency::GBP,
        payment_reference: format!("pay-inv-{order_id}"),
        lines: lines.to_vec(),
        customer_name: "Ada Lovelace".into(),
        shipping_address: Address {
            line1: "12 St James's Square".into(),
            line2: None,
            city: "London".into(),
            postal_code: "SW1Y 4JH".into(),
            country: "GB".into(),
        },
        billed_at: chrono::Utc::now(),
    }
}

fn receipt(receipt_id: &str, sku: &str, quantity: u32) -> StockReceived {
    StockReceived { receipt_id: receipt_id.into(), sku: sku.into(), quantity, received_at: chrono::Utc::now() }
}

async fn rig(levels: &[(&str, u32)]) -> (DynamoDbStockStore, aws_sdk_dynamodb::Client, String) {
    assert!(std::env::var("AWS_ENDPOINT_URL").is_ok(), "AWS_ENDPOINT_URL is not set: run `make test`");
    let sdk = orderflow_harness::aws::sdk_config().await;
    let client = aws_sdk_dynamodb::Client::new(&sdk);
    let (stock, shipments) = (table(&client, "sku").await, table(&client, "orderId").await);
    for (sku, available) in levels {
        client
            .put_item()
            .table_name(&stock)
            .item("sku", AttributeValue::S(sku.to_string()))
            .item("available", AttributeValue::N(available.to_string()))
            .send()
            .await
            .unwrap();
    }
    (DynamoDbStockStore::new(client.clone(), &stock, shipments), client, stock)
}

async fn level(client: &aws_sdk_dynamodb::Client, table: &str, sku: &str) -> u32 {
    let item = client
        .get_item()
        .table_name(table)
        .key("sku", AttributeValue::S(sku.into()))
        .consistent_read(true)
        .send()
        .await
        .unwrap();
    item.item().unwrap()["available"].as_n().unwrap().parse().unwrap()
}

fn line(sku: &str, quantity: u32) -> OrderLine {
    OrderLine { sku: sku.into(), quantity, unit_price_minor: 100 }
}

#[tokio::test]
#[ignore = "needs the local AWS emulator: run `make test`"]
async fn an_order_is_allocated_once_however_often_it_is_delivered() {
    let (store, client, stock) = rig(&[("A", 5), ("B", 5)]).await;
    let lines = [line("A", 2), line("B", 1), line("A", 1)];
    assert_eq!(store.allocate(&billed("ord-1", &lines), "c-1").await.unwrap(), Allocation::Allocated);
    assert_eq!(store.allocate(&billed("ord-1", &lines), "c-1").await.unwrap(), Allocation::AlreadyAllocated);
    assert_eq!((level(&client, &stock, "A").await, level(&client, &stock, "B").await), (2, 4));
}

#[tokio::test]
#[ignore = "needs the local AWS emulator: run `make test`"]
async fn a_short_or_unknown_line_allocates_nothing_and_names_the_shortage() {
    let (store, client, stock) = rig(&[("A", 5), ("B", 1)]).await;
    let short = store.allocate(&billed("ord-2", &[line("A", 2), line("B", 3), line("NOPE", 1)]), "c-1").await.unwrap();
    assert_eq!(
        short,
        Allocation::Short(vec![
            Shortage { sku: "B".into(), requested: 3, available: 1 },
            Shortage { sku: "NOPE".into(), requested: 1, available: 0 },
        ])
    );
    assert_eq!((level(&client, &stock, "A").await, level(&client, &stock, "B").await), (5, 1), "all lines or none");
    // The answer is remembered: after stock arrives, a replay of the same order is still short
    // (Sales has marked it Backordered) and takes nothing.
    client
        .put_item()
        .table_name(&stock)
        .item("sku", AttributeValue::S("B".into()))
        .item("available", AttributeValue::N("10".into()))
        .send()
        .await
        .unwrap();
    assert_eq!(
        store.allocate(&billed("ord-2", &[line("A", 2), line("B", 3), line("NOPE", 1)]), "c-1").await.unwrap(),
        short
    );
    assert_eq!((level(&client, &stock, "A").await, level(&client, &stock, "B").await), (5, 10));
}

#[tokio::test]
#[ignore = "needs the local AWS emulator: run `make test`"]
async fn concurrent_orders_on_one_sku_never_oversell_and_all_get_an_answer() {
    let (store, client, stock) = rig(&[("HOT", 5)]).await;
    let store = std::sync::Arc::new(store);
    let orders: Vec<String> = (0..12).map(|i| format!("ord-hot-{i}")).collect();
    let answers = futures::future::join_all(orders.iter().map(|id| {
        let store = store.clone();
        async move { store.allocate(&billed(id, &[line("HOT", 1)]), "c-1").await }
    }))
    .await;
    let answers: Vec<Allocation> = answers.into_iter().map(|a| a.expect("every order gets a final answer")).collect();
    let allocated = answers.iter().filter(|a| **a == Allocation::Allocated).count();
    let short = answers.iter().filter(|a| matches!(a, Allocation::Short(_))).count();
    println!("12 concurrent orders on 5 units: {allocated} allocated, {short} short");
    assert_eq!((allocated, short), (5, 7));
    assert_eq!(level(&client, &stock, "HOT").await, 0, "never negative, nothing lost");
    // And each answer is final: asking again gives the same one.
    for (id, answer) in orders.iter().zip(&answers) {
        let again = store.allocate(&billed(id, &[line("HOT", 1)]), "c-1").await.unwrap();
        let same = match answer {
            Allocation::Allocated => again == Allocation::AlreadyAllocated,
            other => again == *other,
        };
        assert!(same, "{id}: {answer:?} then {again:?}");
    }
}

#[tokio::test]
#[ignore = "needs the local AWS emulator: run `make test`"]
async fn a_receipt_counts_once_and_ships_waiting_backorders_oldest_first_in_whole_orders() {
    let (store, client, stock) = rig(&[("RARE", 0), ("ODD", 0)]).await;
    for (id, lines) in
        [("o-1", vec![line("RARE", 3)]), ("o-2", vec![line("RARE", 1), line("ODD", 1)]), ("o-3", vec![line("RARE", 2)])]
    {
        assert!(matches!(store.allocate(&billed(id, &lines), "c-1").await.unwrap(), Allocation::Short(_)));
    }
    let waiting: Vec<String> = store.backorders("RARE").await.unwrap().into_iter().map(|b| b.billed.order_id).collect();
    assert_eq!(waiting, vec!["o-1", "o-2", "o-3"], "oldest first, through the index");
    assert_eq!(store.backorders("ODD").await.unwrap().len(), 1);

    let first = store.receive(&receipt("r-1", "RARE", 4)).await.unwrap();
    assert!(first.counted_now);
    let again = store.receive(&receipt("r-1", "RARE", 4)).await.unwrap();
    assert!(!again.counted_now, "the same receipt counts once");
    assert_eq!(level(&client, &stock, "RARE").await, 4);

    let mut shipped = vec![];
    for backorder in store.backorders("RARE").await.unwrap() {
        if store.allocate_backorder(&backorder, Some("r-1")).await.unwrap() {
            shipped.push(backorder.billed.order_id.clone());
        }
    }
    assert_eq!(shipped, vec!["o-1"], "o-2 lacks ODD, o-3 needs two of the one left");
    assert_eq!(level(&client, &stock, "RARE").await, 1);
    // A redelivered receipt knows which orders it shipped, and ships nothing twice.
    assert_eq!(store.receive(&receipt("r-1", "RARE", 4)).await.unwrap().allocated_before, vec!["o-1"]);
    let o1 = store.backorders("RARE").await.unwrap();
    assert_eq!(o1.iter().map(|b| b.billed.order_id.as_str()).collect::<Vec<_>>(), vec!["o-2", "o-3"]);
    assert_eq!(store.backorder("o-1").await.unwrap().map(|b| b.billed.customer_name), Some("Ada Lovelace".into()));
    assert_eq!(store.allocate(&billed("o-1", &[line("RARE", 3)]), "c-1").await.unwrap(), Allocation::AlreadyAllocated);
    // Once announced, a redelivered receipt leaves it out; what is on hand is read as it stands.
    store.announced("r-1", &["o-1".to_string()]).await.unwrap();
    assert!(store.receive(&receipt("r-1", "RARE", 4)).await.unwrap().allocated_before.is_empty());
    assert_eq!((store.on_hand("RARE").await.unwrap(), store.on_hand("NEVER-HELD").await.unwrap()), (1, 0));
}

#[tokio::test]
#[ignore = "needs the local AWS emulator: run `make test`"]
async fn cancelling_releases_an_allocation_once_and_a_waiting_or_unbilled_order_never_allocates() {
    let (store, client, stock) = rig(&[("A", 5), ("RARE", 0)]).await;
    // Allocated, then cancelled twice: given back once.
    assert_eq!(
        store.allocate(&billed("o-1", &[line("A", 2), line("A", 1)]), "c-1").await.unwrap(),
        Allocation::Allocated
    );
    assert!(store.allocation_stands("o-1").await.unwrap());
    let released = Release::Released(vec![ReleasedLine { sku: "A".into(), quantity: 3 }]);
    assert_eq!(store.release("o-1").await.unwrap(), released);
    assert!(!store.allocation_stands("o-1").await.unwrap(), "released");
    assert_eq!(store.release("o-1").await.unwrap(), released, "the same answer");
    assert_eq!(level(&client, &stock, "A").await, 5, "given back once");
    assert_eq!(store.allocate(&billed("o-1", &[line("A", 3)]), "c-1").await.unwrap(), Allocation::Cancelled);

    // Waiting, then cancelled: off the backlog.
    assert!(matches!(store.allocate(&billed("o-2", &[line("RARE", 1)]), "c-1").await.unwrap(), Allocation::Short(_)));
    assert_eq!(store.release("o-2").await.unwrap(), Release::NothingAllocated);
    assert!(store.backorders("RARE").await.unwrap().is_empty());
    assert!(!store.allocation_stands("o-2").await.unwrap(), "never allocated");

    // Cancelled before its OrderBilled: never allocated.
    assert_eq!(store.release("o-3").await.unwrap(), Release::NothingAllocated);
    assert_eq!(store.allocate(&billed("o-3", &[line("A", 1)]), "c-1").await.unwrap(), Allocation::Cancelled);
    assert_eq!(level(&client, &stock, "A").await, 5);
}

#[tokio::test]
#[ignore = "needs the local AWS emulator: run `make test`"]
async fn a_receipt_for_other_goods_or_past_what_a_level_holds_is_refused_and_counts_nothing() {
    let (store, client, stock) = rig(&[("A", 1), ("FULL", u32::MAX - 2)]).await;
    store.receive(&receipt("r-1", "A", 5)).await.unwrap();
    let reused = store.receive(&receipt("r-1", "A", 50)).await.unwrap_err();
    assert!(!reused.retryable && reused.to_string().contains("other goods"), "{reused}");
    let too_many = store.receive(&receipt("r-2", "FULL", 5)).await.unwrap_err();
    assert!(!too_many.retryable && too_many.to_string().contains("would not fit"), "{too_many}");
    assert_eq!((level(&client, &stock, "A").await, level(&client, &stock, "FULL").await), (6, u32::MAX - 2));
    // And the receipt that was refused can still be booked once it fits.
    store.receive(&receipt("r-3", "FULL", 2)).await.unwrap();
    assert_eq!(level(&client, &stock, "FULL").await, u32::MAX);
}
