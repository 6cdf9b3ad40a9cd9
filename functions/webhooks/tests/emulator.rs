//! The DynamoDB subscriptions adapter against the local emulator (run by `make test`; ignored by a
//! bare `cargo test`): what the fan-out and the delivery consumer read and write of a subscription.

use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};
use webhooks::subscriptions::{DynamoDbSubscriptions, Subscription, SubscriptionStore};

async fn table() -> (aws_sdk_dynamodb::Client, String) {
    assert!(std::env::var("AWS_ENDPOINT_URL").is_ok(), "AWS_ENDPOINT_URL is not set: run `make test`");
    let client = aws_sdk_dynamodb::Client::new(&orderflow_harness::aws::sdk_config().await);
    let name = format!("subscriptions-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let id = AttributeDefinition::builder().attribute_name("id").attribute_type(ScalarAttributeType::S).build();
    client
        .create_table()
        .table_name(&name)
        .attribute_definitions(id.unwrap())
        .key_schema(KeySchemaElement::builder().attribute_name("id").key_type(KeyType::Hash).build().unwrap())
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .unwrap();
    (client, name)
}

fn subscription(id: &str) -> Subscription {
    Subscription {
        id: id.into(),
        url: format!("https://hooks.example/{id}"),
        event_types: vec!["OrderPlaced".into()],
        secret: "whsec_c2VjcmV0".into(),
        active: true,
        created_at: "2026-12-01T00:00:00Z".into(),
    }
}

#[tokio::test]
#[ignore = "needs the local AWS emulator: run `make test`"]
async fn a_subscription_switched_off_keeps_its_url_and_secret_and_a_bad_item_is_passed_by() {
    let (client, name) = table().await;
    let store = DynamoDbSubscriptions::new(client.clone(), &name);
    store.create(&subscription("sub-1")).await.unwrap();
    store.create(&subscription("sub-2")).await.unwrap();

    // The operator's list: every subscription, never a secret.
    let listed = store.all().await.unwrap();
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().all(|s| s.secret.is_empty() && s.url.starts_with("https://hooks.example/")), "{listed:?}");

    // A subscriber's 410: off, and nothing else of it changed.
    assert!(store.deactivate("sub-1").await.unwrap());
    assert!(!store.deactivate("sub-unknown").await.unwrap(), "no such subscription");
    let off = store.get("sub-1").await.unwrap().unwrap();
    assert!(!off.active);
    assert_eq!((off.url.as_str(), off.secret.as_str()), ("https://hooks.example/sub-1", "whsec_c2VjcmV0"));

    // A hand-edited item the fan-out cannot read: the others' routes still are.
    client
        .put_item()
        .table_name(&name)
        .item("id", AttributeValue::S("sub-bad".into()))
        .item("active", AttributeValue::S("yes".into()))
        .send()
        .await
        .unwrap();
    let mut routes: Vec<(String, bool)> = store.routes().await.unwrap().into_iter().map(|r| (r.id, r.active)).collect();
    routes.sort();
    assert_eq!(routes, vec![("sub-1".to_string(), false), ("sub-2".to_string(), true)]);
}
