//! End to end, emails: the real email binary on the local emulator, sending through the emulator's
//! SES v2 from the identity the template creates; assertions on the emulator's record of what was
//! sent (`GET /_ministack/ses/messages`), never on logs. Ignored by a bare `cargo test`; `make test`
//! runs them.

use std::time::Duration;

use orderflow_contracts::OrderStatus;
use orderflow_e2e::{eventually, order_request, unique, unique_sku, Local};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(90);

fn subjects(emails: &[Value]) -> Vec<String> {
    let mut s: Vec<String> = emails.iter().map(|e| e["Subject"].as_str().unwrap_or_default().to_string()).collect();
    s.sort();
    s
}

#[tokio::test]
#[ignore = "needs the stack on the local emulator: run `make test`"]
async fn an_order_gets_one_order_email_and_one_shipping_notice_even_when_delivered_twice() {
    let local = Local::connect().await.unwrap();
    let sku = unique_sku("BOOK");
    local.stock_product(&sku, 1999, 10).await.unwrap();
    let to = format!("{}@example.com", unique("ada"));
    let run = unique("e2e-email");
    let tap = local.tap(&run).await.unwrap();
    let id = local.place_order(&order_request(&to, &[(&sku, 2)]), &run, None).await.unwrap().order_id();
    assert_eq!(local.wait_final(&id, WAIT).await.unwrap().status, OrderStatus::ReadyToShip);

    let emails = eventually("two emails", WAIT, || async {
        let emails = local.emails_to(&to).await?;
        Ok((emails.len() >= 2).then_some(emails))
    })
    .await
    .unwrap();
    let short = &id[..8];
    assert_eq!(
        subjects(&emails),
        vec![format!("We have your order {short}"), format!("Your order {short} is ready to ship")]
    );
    let placed = emails.iter().find(|e| e["Subject"].as_str().unwrap().starts_with("We have")).unwrap();
    assert_eq!(placed["Source"], local.output("EmailSender"));
    assert!(placed["BodyText"].as_str().unwrap().contains(&format!("{sku} x 2  39.98 GBP")), "{placed}");
    assert!(placed["BodyText"].as_str().unwrap().contains("Total  44.93 GBP"), "{placed}");
    assert!(placed["BodyHtml"].as_str().unwrap().contains(&format!("<strong>{id}</strong>")), "{placed}");

    // The same OrderPlaced delivered to the email consumer again: no second email.
    let events = local.collect(&tap, WAIT, |s| s.iter().any(|e| e.detail_type == "OrderPlaced")).await.unwrap();
    let body = events.iter().find(|e| e.detail_type == "OrderPlaced").unwrap().body.clone();
    local.deliver_again("EmailQueueUrl", &body, 1, &[]).await.unwrap();
    assert_eq!(local.emails_to(&to).await.unwrap().len(), 2, "nothing sent twice");
    local.close(tap).await.unwrap();
}

#[tokio::test]
#[ignore = "needs the stack on the local emulator: run `make test`"]
async fn a_declined_order_gets_the_payment_notice() {
    let local = Local::connect().await.unwrap();
    let sku = unique_sku("BOOK");
    local.stock_product(&sku, 1999, 10).await.unwrap();
    let to = format!("{}+decline@example.com", unique("grace"));
    let id = local
        .place_order(&order_request(&to, &[(&sku, 1)]), &unique("e2e-email-declined"), None)
        .await
        .unwrap()
        .order_id();
    assert_eq!(local.wait_final(&id, WAIT).await.unwrap().status, OrderStatus::PaymentFailed);
    let notice = eventually("the payment notice", WAIT, || async {
        let emails = local.emails_to(&to).await?;
        Ok(emails
            .into_iter()
            .find(|e| e["Subject"].as_str().unwrap_or_default().starts_with("We could not take payment")))
    })
    .await
    .unwrap();
    assert!(notice["BodyText"].as_str().unwrap().contains("card declined by issuer (test card)"), "{notice}");
}
