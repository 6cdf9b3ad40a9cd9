//! The SES v2 adapter's init check against the local emulator (run by `make test`; ignored by a bare
//! `cargo test`): a verified sender passes, and the check reads the emulator's SES v2 for real.

#[tokio::test]
#[ignore = "needs the local AWS emulator: run `make test`"]
async fn a_verified_sender_passes_the_init_check_and_can_send() {
    assert!(std::env::var("AWS_ENDPOINT_URL").is_ok(), "AWS_ENDPOINT_URL is not set: run `make test`");
    let sdk = orderflow_harness::aws::sdk_config().await;
    let ses = aws_sdk_sesv2::Client::new(&sdk);
    let from = format!("sender-{}@orderflow.example", uuid::Uuid::new_v4().simple());
    ses.create_email_identity().email_identity(&from).send().await.unwrap();
    email::ses::check_sender(&ses, &from).await.unwrap();
    let sender = email::ses::SesSender::new(ses, &from);
    use email::ses::EmailSender as _;
    let id = sender
        .send(&email::render::Email {
            order_id: "ord-1".into(),
            to: "ada@example.com".into(),
            subject: "s".into(),
            text: "t".into(),
            html: "<p>h</p>".into(),
        })
        .await
        .unwrap();
    assert!(!id.is_empty());
}
