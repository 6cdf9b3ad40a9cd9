//! End to end, who may do what: the HTTP API's JWT authorizer on the emulator checks the Cognito
//! tokens for real (signature, issuer, audience), an order is its owner's, and no request makes the
//! shop text or email anyone but the signed-in caller. Ignored by a bare `cargo test`; `make test`
//! runs them.

use std::time::Duration;

use base64::Engine as _;

use orderflow_contracts::OrderStatus;
use orderflow_e2e::aws_api::COGNITO;
use orderflow_e2e::twilio::TwilioStandIn;
use orderflow_e2e::{eventually, order_request, unique, unique_sku, Local, Placed};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(90);

fn phone() -> String {
    // Five random digits (a u128's leading digits cluster): numbers of concurrent tests differ.
    format!("+4477009{:05}", uuid::Uuid::new_v4().as_u128() % 100_000)
}

/// `GET /orders/{id}` with this `Authorization` header (none: no header): the status.
async fn get_with(local: &Local, id: &str, authorization: Option<&str>) -> u16 {
    let mut req = local.http.get(format!("{}/orders/{id}", local.output("LocalApiUrl")));
    if let Some(value) = authorization {
        req = req.header("authorization", value);
    }
    orderflow_e2e::send_to_api(req).await.unwrap().0
}

#[tokio::test]
#[ignore = "needs the stack on the local emulator: run `make test`"]
async fn the_authorizer_refuses_missing_tampered_and_wrong_audience_tokens_and_an_order_is_its_owners() {
    let local = Local::connect().await.unwrap();
    let run = unique("e2e-auth");
    let sku = unique_sku("BOOK");
    local.stock_product(&sku, 1999, 10).await.unwrap();
    let placed = local.place_order(&order_request(&format!("{run}@example.com"), &[(&sku, 1)]), &run, None).await;
    let order = placed.unwrap().order().clone();
    let ada = local.owner(&order.order_id).unwrap();
    assert_eq!(order.customer.customer_id, ada.subject, "the order is the signed-in caller's");

    // The owner reads it; nobody else does.
    assert_eq!(get_with(&local, &order.order_id, Some(&ada.bearer())).await, 200);
    assert_eq!(get_with(&local, &order.order_id, None).await, 401, "no token");
    // A token whose claims were changed (another subject, the signature kept), and one whose
    // signature was changed in the middle (the last character may carry only padding bits).
    let parts: Vec<&str> = ada.token.split('.').collect();
    let mut claims = orderflow_e2e::identity::claims(&ada.token).unwrap();
    claims["sub"] = json!("someone-else");
    let forged_claims = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(claims.to_string());
    let forged = format!("{}.{forged_claims}.{}", parts[0], parts[2]);
    assert_eq!(get_with(&local, &order.order_id, Some(&format!("Bearer {forged}"))).await, 401, "changed claims");
    let mut signature: Vec<char> = parts[2].chars().collect();
    let middle = signature.len() / 2;
    signature[middle] = if signature[middle] == 'A' { 'B' } else { 'A' };
    let tampered = format!("{}.{}.{}", parts[0], parts[1], signature.into_iter().collect::<String>());
    assert_eq!(get_with(&local, &order.order_id, Some(&format!("Bearer {tampered}"))).await, 401, "a bad signature");
    // A token of the same pool for another app client: the wrong audience.
    let other_client = local
        .aws
        .json(
            COGNITO,
            "CreateUserPoolClient",
            &json!({ "UserPoolId": local.output("UserPoolId"), "ClientName": format!("{run}-other-app"),
                "ExplicitAuthFlows": ["ALLOW_ADMIN_USER_PASSWORD_AUTH"] }),
        )
        .await
        .unwrap();
    let other_client = other_client["UserPoolClient"]["ClientId"].as_str().unwrap().to_string();
    let token = local.sign_in(&other_client, &ada.email, "Orderflow-test-Passw0rd").await.unwrap();
    let token = token.as_str();
    assert_eq!(orderflow_e2e::identity::claims(token).unwrap()["aud"], other_client.as_str());
    assert_eq!(get_with(&local, &order.order_id, Some(&format!("Bearer {token}"))).await, 401, "the wrong audience");

    // Another customer: the order does not exist for them, and their copy of the same idempotency
    // key is theirs alone.
    let bea = local.customer(&format!("{run}-bea@example.com"), None).await.unwrap();
    assert_eq!(local.get_order_as(&bea, &order.order_id).await.unwrap(), None, "404 for another caller");
    let key = unique("key");
    let body = json!({"customer": {"name": "Ada"}, "lines": [{"sku": sku, "quantity": 1}], "currency": "GBP",
        "shippingAddress": {"line1": "1 Row", "city": "London", "postalCode": "N1 9GU", "country": "GB"}});
    let first = local.place_order_as(&ada, &body, &format!("{run}-k1"), Some(&key)).await.unwrap();
    let theirs = local.place_order_as(&bea, &body, &format!("{run}-k2"), Some(&key)).await.unwrap();
    let again = local.place_order_as(&ada, &body, &format!("{run}-k3"), Some(&key)).await.unwrap();
    assert_eq!((first.status(), theirs.status(), again.status()), (201, 201, 200));
    assert_ne!(first.order_id(), theirs.order_id(), "the same key, two callers, two orders");
    assert_eq!(first.order_id(), again.order_id());
}

#[tokio::test]
#[ignore = "needs the stack on the local emulator: run `make test`"]
async fn an_order_cannot_make_the_shop_text_or_email_a_number_or_address_that_is_not_the_callers() {
    let stand_in = TwilioStandIn::shared().await.unwrap();
    let local = Local::connect().await.unwrap();
    let run = unique("e2e-strangers");
    let (own, victim) = (phone(), phone());
    let victim_email = format!("{run}-victim@example.com");
    let ada = local.customer(&format!("{run}@example.com"), Some(&own)).await.unwrap();
    let sku = unique_sku("BOOK");
    local.stock_product(&sku, 1999, 10).await.unwrap();

    // The request names a stranger's phone and email: refused, each named, nothing placed.
    let mut body = order_request(&victim_email, &[(&sku, 1)]);
    body["customer"]["phone"] = json!(victim);
    let refused = local.place_order_as(&ada, &body, &format!("{run}-0"), None).await.unwrap();
    let Placed::Refused { status, mut fields, .. } = refused else { panic!("taken: {refused:?}") };
    fields.sort();
    assert_eq!((status, fields), (400, vec!["customer.email".to_string(), "customer.phone".to_string()]));

    // A customer whose phone the pool never verified (typed, not confirmed): their paid order
    // texts nobody.
    let unconfirmed = phone();
    let bea = local.customer_with_unverified_phone(&format!("{run}-bea@example.com"), &unconfirmed).await.unwrap();
    let mut body = order_request("unused@example.com", &[(&sku, 1)]);
    let customer = body["customer"].as_object_mut().unwrap();
    customer.remove("email");
    customer.remove("phone");
    let beas = local.place_order_as(&bea, &body, &format!("{run}-bea"), None).await.unwrap().order().clone();
    assert_eq!(beas.customer.phone, "", "an unverified phone is no phone");
    eventually("Bea's order ready to ship", WAIT, || async {
        Ok(local.get_order_as(&bea, &beas.order_id).await?.filter(|o| o.status == OrderStatus::ReadyToShip))
    })
    .await
    .unwrap();

    // Without them, the order is placed for the caller's own verified contacts, and once it is paid
    // for and ready, the caller's phone gets the one text.
    let mut body = order_request("unused@example.com", &[(&sku, 1)]);
    let customer = body["customer"].as_object_mut().unwrap();
    customer.remove("email");
    customer.remove("phone");
    let order = local.place_order_as(&ada, &body, &format!("{run}-1"), None).await.unwrap().order().clone();
    assert_eq!((order.customer.phone.as_str(), order.customer.email.as_str()), (own.as_str(), ada.email.as_str()));
    let done = eventually("the order ready to ship", WAIT, || async {
        Ok(local.get_order_as(&ada, &order.order_id).await?.filter(|o| o.status == OrderStatus::ReadyToShip))
    })
    .await
    .unwrap();
    assert_eq!(done.customer.phone, own);
    eventually("the caller's text", WAIT, || async {
        Ok((!stand_in.delivered_to(&own).await.is_empty()).then_some(()))
    })
    .await
    .unwrap();
    eventually("the caller's emails", WAIT, || async {
        Ok((local.emails_to(&ada.email).await?.len() >= 2).then_some(()))
    })
    .await
    .unwrap();
    // By the time the caller's text and emails came (Bea's order was ready before Ada's was placed),
    // anything for the stranger or the unconfirmed number would have come too.
    assert!(stand_in.received(&victim).await.is_empty(), "no text to a number the caller named");
    assert!(stand_in.received(&unconfirmed).await.is_empty(), "no text to a phone the pool never verified");
    assert!(local.emails_to(&victim_email).await.unwrap().is_empty(), "no email to an address the caller named");
}
