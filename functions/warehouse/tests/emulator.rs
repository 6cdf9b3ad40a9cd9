//! The DynamoDB stock adapter against the local emulator (run by `make test`; ignored by a bare
//! `cargo test`). The end-to-end tests never reach its redelivery path, because the harness drops
//! duplicates before the handler runs; these tests call it directly.

use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};
use orderflow_contracts::{OrderLine, Shortage};
use warehouse::stock::{Allocation, DynamoDbStockStore, StockStore};

async fn table(client: &aws_sdk_dynamodb::Client, key: &str) -> String {
    let name = format!("{key}-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    client
        .create_table()
        .table_name(&name)
        .attribute_definitions(
            AttributeDefinition::builder().attribute_name(key).attribute_type(ScalarAttributeType::S).build().unwrap(),
        )
        .key_schema(KeySchemaElement::builder().attribute_name(key).key_type(KeyType::Hash).build().unwrap())
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .unwrap();
    name
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
    assert_eq!(store.allocate("ord-1", &lines).await.unwrap(), Allocation::Allocated);
    assert_eq!(store.allocate("ord-1", &lines).await.unwrap(), Allocation::AlreadyAllocated);
    assert_eq!((level(&client, &stock, "A").await, level(&client, &stock, "B").await), (2, 4));
}

#[tokio::test]
#[ignore = "needs the local AWS emulator: run `make test`"]
async fn a_short_or_unknown_line_allocates_nothing_and_names_the_shortage() {
    let (store, client, stock) = rig(&[("A", 5), ("B", 1)]).await;
    let short = store.allocate("ord-2", &[line("A", 2), line("B", 3), line("NOPE", 1)]).await.unwrap();
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
    assert_eq!(store.allocate("ord-2", &[line("A", 2), line("B", 3), line("NOPE", 1)]).await.unwrap(), short);
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
        async move { store.allocate(id, &[line("HOT", 1)]).await }
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
        let again = store.allocate(id, &[line("HOT", 1)]).await.unwrap();
        let same = match answer {
            Allocation::Allocated => again == Allocation::AlreadyAllocated,
            other => again == *other,
        };
        assert!(same, "{id}: {answer:?} then {again:?}");
    }
}
