//! Billing's handler over its fakes: what it bills, declines, refuses, and how it survives a
//! provider outage, a redelivery and a crash between charge and settle.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use orderflow_contracts::{Currency, Envelope, OrderPlaced};
use orderflow_harness::consumer::decode;
use orderflow_harness::publisher::InMemoryPublisher;
use orderflow_harness_testing::{eventbridge_body, sqs_batch, sqs_sample, Harnessed};
use pretty_assertions::assert_eq;

use std::sync::Arc;

use async_trait::async_trait;
use billing::handler::{Billing, BillingInput};
use billing::invoices::{InMemoryInvoiceStore, Invoice, InvoiceStatus, InvoiceStore};
use billing::payments::{Charge, ChargeOutcome, PaymentError, PaymentGateway, Refund, RuleBasedGateway};
use orderflow_contracts::{CancelledBy, OrderBilled, OrderCancelled, PaymentDeclined, PaymentRefunded};
use orderflow_harness::StoreError;

/// A provider as real ones behave: idempotent per key (the invoice id), so asking twice takes the
/// money once. Counts requests and charges taken; fails the first `fail_first` requests as if down.
struct CountingGateway {
    inner: RuleBasedGateway,
    calls: AtomicUsize,
    fail_first: usize,
    taken: Mutex<HashMap<String, ChargeOutcome>>,
    refund_calls: AtomicUsize,
    /// Refunds given, per invoice: (reference, amount).
    refunds: Mutex<HashMap<String, (String, i64)>>,
}

impl CountingGateway {
    fn charges_taken(&self) -> usize {
        self.taken.lock().unwrap().len()
    }
}

#[async_trait]
impl PaymentGateway for CountingGateway {
    async fn charge(&self, charge: &Charge) -> Result<ChargeOutcome, PaymentError> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        if n < self.fail_first {
            return Err(PaymentError("503 from provider".into()));
        }
        if let Some(earlier) = self.taken.lock().unwrap().get(&charge.invoice_id) {
            return Ok(earlier.clone());
        }
        let outcome = self.inner.charge(charge).await?;
        self.taken.lock().unwrap().insert(charge.invoice_id.clone(), outcome.clone());
        Ok(outcome)
    }

    async fn refund(&self, refund: &Refund) -> Result<String, PaymentError> {
        self.refund_calls.fetch_add(1, Ordering::SeqCst);
        assert_eq!(refund.idempotency_key, format!("refund-{}", refund.invoice_id), "never the charge's key");
        // As a provider does: only a captured charge is refunded, once per key, never more than it.
        match self.taken.lock().unwrap().get(&refund.invoice_id) {
            Some(ChargeOutcome::Approved { payment_reference }) if *payment_reference == refund.payment_reference => {}
            other => return Err(PaymentError(format!("nothing captured to refund: {other:?}"))),
        }
        let mut refunds = self.refunds.lock().unwrap();
        let given = refunds
            .entry(refund.invoice_id.clone())
            .or_insert_with(|| (format!("rfd-{}", refund.invoice_id), refund.amount_minor));
        Ok(given.0.clone())
    }
}

/// The invoice store of a process that dies right after the charge, before recording it, once.
struct CrashesBeforeSettling {
    inner: Arc<InMemoryInvoiceStore>,
    crashes_left: AtomicUsize,
}

#[async_trait]
impl InvoiceStore for CrashesBeforeSettling {
    async fn create_or_get(&self, invoice: Invoice) -> Result<Invoice, StoreError> {
        self.inner.create_or_get(invoice).await
    }
    async fn request_cancel(&self, order_id: &str) -> Result<Invoice, StoreError> {
        self.inner.request_cancel(order_id).await
    }
    async fn get(&self, order_id: &str) -> Result<Option<Invoice>, StoreError> {
        self.inner.get(order_id).await
    }
    async fn refunded(&self, order_id: &str, refund_reference: &str) -> Result<InvoiceStatus, StoreError> {
        if self.crashes_left.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
            return Err(StoreError::retryable("invoice store", "process died before the write"));
        }
        self.inner.refunded(order_id, refund_reference).await
    }
    async fn settle(&self, order_id: &str, status: &InvoiceStatus) -> Result<InvoiceStatus, StoreError> {
        if self.crashes_left.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
            return Err(StoreError::retryable("invoice store", "process died before the write"));
        }
        self.inner.settle(order_id, status).await
    }
}

struct Rig {
    invoices: Arc<InMemoryInvoiceStore>,
    gateway: Arc<CountingGateway>,
    published: Arc<InMemoryPublisher>,
    billing: Harnessed<BillingInput>,
}

fn rig(fail_first: usize) -> Rig {
    let invoices = Arc::new(InMemoryInvoiceStore::default());
    let gateway = Arc::new(CountingGateway {
        inner: RuleBasedGateway { decline_above_minor: 100_000, decline_email_marker: "+decline@".into() },
        calls: AtomicUsize::new(0),
        fail_first,
        taken: Mutex::new(HashMap::new()),
        refund_calls: AtomicUsize::new(0),
        refunds: Mutex::new(HashMap::new()),
    });
    let published = Arc::new(InMemoryPublisher::default());
    let handler = Billing::new(invoices.clone(), gateway.clone(), published.clone());
    Rig { invoices, gateway, published, billing: Harnessed::new("billing", Arc::new(handler)) }
}

/// The order's invoice (`inv-<order id>`, for its total), in `status`.
fn invoice_of(order: &OrderPlaced, status: InvoiceStatus) -> Invoice {
    Invoice {
        invoice_id: format!("inv-{}", order.order_id),
        order_id: order.order_id.clone(),
        amount_minor: order.totals.total_minor,
        currency: order.currency,
        status,
        cancel_requested: false,
    }
}

fn sample_order() -> (OrderPlaced, orderflow_contracts::Metadata) {
    let event = sqs_sample("billing/order-placed.sqs.json");
    decode::<OrderPlaced>(event.records[0].body.as_deref()).unwrap()
}

#[tokio::test]
async fn every_billing_sample_is_billed() {
    for file in ["billing/order-placed.sqs.json", "billing/order-placed-v1.sqs.json"] {
        let rig = rig(0);
        let event = sqs_sample(file);
        let (order, cause) = decode::<OrderPlaced>(event.records[0].body.as_deref()).unwrap();
        assert_eq!(rig.billing.failures(event).await, Vec::<String>::new(), "{file}");

        let billed = rig.published.envelopes::<OrderBilled>();
        assert_eq!(billed.len(), 1, "{file}");
        let b = &billed[0];
        assert_eq!(
            (b.data.order_id.as_str(), b.data.amount_minor),
            (order.order_id.as_str(), order.totals.total_minor)
        );
        assert_eq!(b.data.lines, order.lines, "Warehouse gets the lines");
        assert_eq!(b.data.shipping_address, order.shipping_address);
        assert_eq!(b.metadata.correlation_id, cause.correlation_id);
        assert_eq!(b.metadata.causation_id, Some(cause.event_id.to_string()));
        let invoices = rig.invoices.all();
        assert_eq!(invoices.len(), 1);
        assert!(matches!(invoices[0].status, InvoiceStatus::Paid { .. }), "{:?}", invoices[0].status);
    }
}

async fn bill(rig: &Rig, order: OrderPlaced) {
    let envelope = Envelope::new(order, None);
    assert!(rig.billing.failures(sqs_batch(vec![eventbridge_body(&envelope)])).await.is_empty());
}

#[tokio::test]
async fn totals_above_the_limit_are_declined() {
    let rig = rig(0);
    let (mut order, _) = sample_order();
    order.lines[0].unit_price_minor = 60_000;
    order.totals = orderflow_contracts::Totals::for_lines(&order.lines, 0, 0).unwrap();
    bill(&rig, order.clone()).await;
    let declined = rig.published.envelopes::<PaymentDeclined>();
    assert_eq!(declined.len(), 1);
    assert!(declined[0].data.reason.contains("exceeds the card limit"), "{}", declined[0].data.reason);
    assert_eq!(declined[0].data.currency, Currency::GBP);
    assert!(rig.published.envelopes::<OrderBilled>().is_empty());
    assert!(matches!(rig.invoices.all()[0].status, InvoiceStatus::Declined { .. }));
}

#[tokio::test]
async fn the_test_card_marker_is_declined() {
    let rig = rig(0);
    let (mut order, _) = sample_order();
    order.customer.email = "ada+decline@example.com".into();
    bill(&rig, order).await;
    assert_eq!(rig.published.envelopes::<PaymentDeclined>().len(), 1);
}

#[tokio::test]
async fn the_same_order_placed_twice_bills_once() {
    let rig = rig(0);
    let body = sqs_sample("billing/order-placed.sqs.json").records[0].body.clone().unwrap();
    assert!(rig.billing.failures(sqs_batch(vec![body.clone()])).await.is_empty());
    assert!(rig.billing.failures(sqs_batch(vec![body])).await.is_empty());
    assert_eq!(rig.invoices.all().len(), 1);
    assert_eq!(rig.gateway.calls.load(Ordering::SeqCst), 1);
    assert_eq!(rig.published.envelopes::<OrderBilled>().len(), 1);
}

#[tokio::test]
async fn a_provider_outage_is_retried_and_then_charges_once() {
    let rig = rig(1);
    let body = sqs_sample("billing/order-placed.sqs.json").records[0].body.clone().unwrap();
    assert_eq!(rig.billing.failures(sqs_batch(vec![body.clone()])).await, vec!["m0"]);
    assert!(rig.published.published().is_empty());
    assert!(matches!(rig.invoices.all()[0].status, InvoiceStatus::Pending));
    // SQS redelivers after the visibility timeout.
    assert!(rig.billing.failures(sqs_batch(vec![body])).await.is_empty());
    assert_eq!(rig.gateway.calls.load(Ordering::SeqCst), 2);
    assert_eq!(rig.published.envelopes::<OrderBilled>().len(), 1);
}

#[tokio::test]
async fn a_settled_invoice_is_not_charged_again() {
    // GIVEN an earlier attempt charged and recorded the outcome, then died before publishing.
    let rig = rig(0);
    let (order, cause) = sample_order();
    rig.invoices
        .create_or_get(Invoice {
            invoice_id: format!("inv-{}", order.order_id),
            order_id: order.order_id.clone(),
            amount_minor: order.totals.total_minor,
            currency: order.currency,
            status: InvoiceStatus::Paid { payment_reference: "pay-earlier".into() },
            cancel_requested: false,
        })
        .await
        .unwrap();
    // WHEN the event is redelivered
    let envelope = Envelope { metadata: cause.clone(), data: order };
    assert!(rig.billing.failures(sqs_batch(vec![eventbridge_body(&envelope)])).await.is_empty());
    // THEN no second charge, and the event announces the earlier payment with the id derived from the cause.
    assert_eq!(rig.gateway.calls.load(Ordering::SeqCst), 0);
    let billed = rig.published.envelopes::<OrderBilled>();
    assert_eq!(billed[0].data.payment_reference, "pay-earlier");
    assert_eq!(billed[0].metadata.event_id, uuid::Uuid::new_v5(&cause.event_id, b"OrderBilled"));
}

#[tokio::test]
async fn a_crash_between_charge_and_settle_takes_the_money_once() {
    let rig = rig(0);
    let store = Arc::new(CrashesBeforeSettling { inner: rig.invoices.clone(), crashes_left: AtomicUsize::new(1) });
    let billing: Harnessed<BillingInput> =
        Harnessed::new("billing", Arc::new(Billing::new(store, rig.gateway.clone(), rig.published.clone())));
    let body = sqs_sample("billing/order-placed.sqs.json").records[0].body.clone().unwrap();

    // The first delivery charges, then dies before recording the outcome ...
    assert_eq!(billing.failures(sqs_batch(vec![body.clone()])).await, vec!["m0"]);
    assert!(matches!(rig.invoices.all()[0].status, InvoiceStatus::Pending));
    // ... the redelivery asks the provider again with the same key, and records what it says.
    assert!(billing.failures(sqs_batch(vec![body])).await.is_empty());
    assert_eq!(rig.gateway.calls.load(Ordering::SeqCst), 2, "asked twice");
    assert_eq!(rig.gateway.charges_taken(), 1, "charged once");
    assert!(matches!(rig.invoices.all()[0].status, InvoiceStatus::Paid { .. }));
    assert_eq!(rig.published.envelopes::<OrderBilled>().len(), 1);
}

#[tokio::test]
async fn an_invoice_of_unknown_status_is_never_charged() {
    let rig = rig(0);
    let (order, _) = sample_order();
    rig.invoices.insert(invoice_of(&order, InvoiceStatus::Unknown("CHARGEBACK".into())));
    let event = sqs_sample("billing/order-placed.sqs.json");
    assert!(rig.billing.failures(event).await.is_empty(), "dead-lettered, so acknowledged");
    assert_eq!(rig.gateway.calls.load(Ordering::SeqCst), 0);
    let letters = rig.billing.dead_letters.letters();
    assert!(letters[0].reason.contains("status `CHARGEBACK`"), "{}", letters[0].reason);
    assert!(rig.published.published().is_empty());
}

#[tokio::test]
async fn a_non_positive_total_is_refused_without_an_invoice() {
    let rig = rig(0);
    let (mut order, _) = sample_order();
    for line in &mut order.lines {
        line.unit_price_minor = 0;
    }
    order.totals = orderflow_contracts::Totals::for_lines(&order.lines, 0, 0).unwrap();
    bill(&rig, order).await;
    assert!(rig.billing.dead_letters.letters()[0].reason.contains("only a positive total is charged"));
    assert!(rig.invoices.all().is_empty());
    assert_eq!(rig.gateway.calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn settling_never_overwrites_an_outcome_already_recorded() {
    let store = InMemoryInvoiceStore::default();
    let (order, _) = sample_order();
    store.insert(Invoice {
        invoice_id: "inv-1".into(),
        order_id: order.order_id.clone(),
        amount_minor: 100,
        currency: Currency::GBP,
        status: InvoiceStatus::Declined { reason: "first".into() },
        cancel_requested: false,
    });
    let stands =
        store.settle(&order.order_id, &InvoiceStatus::Paid { payment_reference: "late".into() }).await.unwrap();
    assert_eq!(stands, InvoiceStatus::Declined { reason: "first".into() });
    assert_eq!(store.all()[0].status, InvoiceStatus::Declined { reason: "first".into() });
}

// ------------------------------------------------------------------ compensation: refunds

/// An `OrderCancelled` for `order` (a new event each call, as each cancellation is).
fn cancellation(order: &OrderPlaced) -> String {
    eventbridge_body(&Envelope::new(
        OrderCancelled {
            order_id: order.order_id.clone(),
            cancelled_by: CancelledBy::Customer,
            currency: order.currency,
            total_minor: order.totals.total_minor,
            cancelled_at: chrono::Utc::now(),
        },
        None,
    ))
}

async fn cancel(rig: &Rig, order: &OrderPlaced) -> Vec<String> {
    rig.billing.failures(sqs_batch(vec![cancellation(order)])).await
}

#[tokio::test]
async fn a_charged_order_that_is_cancelled_is_refunded_once_however_often_it_is_cancelled() {
    let rig = rig(0);
    let (order, _) = sample_order();
    bill(&rig, order.clone()).await;
    assert!(cancel(&rig, &order).await.is_empty());
    // A second cancellation (another event: a duplicate request, a deadline after a customer's cancel).
    assert!(cancel(&rig, &order).await.is_empty());

    assert_eq!(rig.gateway.refund_calls.load(Ordering::SeqCst), 1, "the provider is asked once");
    let refunds = rig.gateway.refunds.lock().unwrap().clone();
    assert_eq!(
        refunds.values().map(|r| r.1).collect::<Vec<_>>(),
        vec![order.totals.total_minor],
        "the whole charge, once"
    );
    // And the order's OrderPlaced delivered again, after all that (Billing keeps no claims).
    bill(&rig, order.clone()).await;
    assert_eq!(rig.gateway.refund_calls.load(Ordering::SeqCst), 1, "still asked once");
    let refunded = rig.published.envelopes::<PaymentRefunded>();
    assert_eq!(refunded.len(), 3, "each cancellation, and the redelivery, is answered");
    for r in &refunded {
        assert_eq!((r.data.amount_minor, r.data.currency), (order.totals.total_minor, order.currency));
        assert_eq!(r.data.refund_reference.as_deref(), Some(format!("rfd-inv-{}", order.order_id).as_str()));
        // ... as the one refund it is: the same event, which consumers (and subscribers) drop again.
        assert_eq!(r.metadata.event_id, refunded[0].metadata.event_id, "one refund, one event id");
    }
    assert!(matches!(rig.invoices.all()[0].status, InvoiceStatus::Refunded { .. }));
}

#[tokio::test]
async fn an_order_cancelled_before_billing_is_never_charged_however_late_its_order_placed() {
    let rig = rig(0);
    let (order, _) = sample_order();
    assert!(cancel(&rig, &order).await.is_empty());
    let refunded = rig.published.envelopes::<PaymentRefunded>();
    assert_eq!(refunded.len(), 1);
    assert_eq!((refunded[0].data.amount_minor, refunded[0].data.refund_reference.clone()), (0, None), "nothing taken");
    assert_eq!(rig.invoices.all()[0].status, InvoiceStatus::Voided);

    // The order's OrderPlaced arrives late.
    bill(&rig, order).await;
    assert_eq!(rig.gateway.calls.load(Ordering::SeqCst), 0, "never charged");
    assert!(rig.published.envelopes::<OrderBilled>().is_empty());
    assert_eq!(rig.gateway.refund_calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_declined_order_that_is_cancelled_refunds_nothing() {
    let rig = rig(0);
    let (mut order, _) = sample_order();
    order.customer.email = "ada+decline@example.com".into();
    bill(&rig, order.clone()).await;
    assert!(cancel(&rig, &order).await.is_empty());
    assert_eq!(rig.gateway.refund_calls.load(Ordering::SeqCst), 0);
    assert_eq!(rig.published.envelopes::<PaymentRefunded>()[0].data.amount_minor, 0);
}

#[tokio::test]
async fn a_cancellation_while_the_charge_is_in_flight_is_refunded_by_the_charge_once_it_settles() {
    let rig = rig(0);
    let (order, _) = sample_order();
    // GIVEN the invoice exists, its charge not settled yet (in flight, or its process died).
    rig.invoices.insert(invoice_of(&order, InvoiceStatus::Pending));
    // WHEN the cancellation arrives: acknowledged (however long the charge takes, nothing waits on
    // a retry budget), the cancellation marked on the invoice, nothing refunded yet.
    assert!(cancel(&rig, &order).await.is_empty());
    assert_eq!(rig.gateway.refund_calls.load(Ordering::SeqCst), 0);
    assert!(rig.published.envelopes::<PaymentRefunded>().is_empty());
    assert!(rig.invoices.all()[0].cancel_requested);
    // THEN the charge settles (its OrderPlaced redelivered), sees the mark and refunds, once.
    bill(&rig, order.clone()).await;
    assert_eq!(rig.gateway.charges_taken(), 1);
    assert_eq!(rig.gateway.refunds.lock().unwrap().len(), 1);
    assert_eq!(rig.published.envelopes::<OrderBilled>().len(), 1, "billed, for the books");
    let refunded = rig.published.envelopes::<PaymentRefunded>();
    assert_eq!(refunded.len(), 1);
    assert_eq!(refunded[0].data.amount_minor, order.totals.total_minor);
    assert!(matches!(rig.invoices.all()[0].status, InvoiceStatus::Refunded { .. }));
    // A later cancellation of the same order refunds nothing more.
    assert!(cancel(&rig, &order).await.is_empty());
    assert_eq!(rig.gateway.refund_calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_declined_charge_that_was_cancelled_in_flight_says_nothing_was_refunded() {
    let rig = rig(0);
    let (mut order, _) = sample_order();
    order.customer.email = "ada+decline@example.com".into();
    rig.invoices.insert(invoice_of(&order, InvoiceStatus::Pending));
    assert!(cancel(&rig, &order).await.is_empty());
    bill(&rig, order).await;
    assert_eq!(rig.gateway.refund_calls.load(Ordering::SeqCst), 0);
    let refunded = rig.published.envelopes::<PaymentRefunded>();
    assert_eq!((refunded.len(), refunded[0].data.amount_minor), (1, 0));
}

#[tokio::test]
async fn a_crash_between_refund_and_record_refunds_once() {
    let rig = rig(0);
    let (order, _) = sample_order();
    bill(&rig, order.clone()).await;
    let store = Arc::new(CrashesBeforeSettling { inner: rig.invoices.clone(), crashes_left: AtomicUsize::new(1) });
    let billing: Harnessed<BillingInput> =
        Harnessed::new("billing", Arc::new(Billing::new(store, rig.gateway.clone(), rig.published.clone())));
    let cancelled = cancellation(&order);
    assert_eq!(billing.failures(sqs_batch(vec![cancelled.clone()])).await, vec!["m0"]);
    assert!(matches!(rig.invoices.all()[0].status, InvoiceStatus::Paid { .. }), "not recorded");
    assert!(billing.failures(sqs_batch(vec![cancelled])).await.is_empty());
    assert_eq!(rig.gateway.refund_calls.load(Ordering::SeqCst), 2, "asked twice");
    assert_eq!(rig.gateway.refunds.lock().unwrap().len(), 1, "refunded once");
    assert!(matches!(rig.invoices.all()[0].status, InvoiceStatus::Refunded { .. }));
    assert_eq!(rig.published.envelopes::<PaymentRefunded>().len(), 1);
}

#[tokio::test]
async fn a_refund_whose_announcement_was_lost_is_announced_when_the_charge_is_redelivered() {
    let rig = rig(0);
    let (order, cause) = sample_order();
    rig.invoices.insert(invoice_of(&order, InvoiceStatus::Pending));
    assert!(cancel(&rig, &order).await.is_empty(), "marked in flight");
    // The charge settles and is refunded, then the bus is down: nothing announced.
    rig.published.fail_next(1);
    let placed = eventbridge_body(&Envelope { metadata: cause, data: order.clone() });
    assert_eq!(rig.billing.failures(sqs_batch(vec![placed.clone()])).await, vec!["m0"]);
    assert!(matches!(rig.invoices.all()[0].status, InvoiceStatus::Refunded { .. }));
    assert!(rig.published.published().is_empty());
    // Its redelivery announces both, and refunds nothing more.
    assert!(rig.billing.failures(sqs_batch(vec![placed])).await.is_empty());
    assert_eq!(rig.published.envelopes::<OrderBilled>().len(), 1);
    assert_eq!(rig.published.envelopes::<PaymentRefunded>()[0].data.amount_minor, order.totals.total_minor);
    assert_eq!(rig.gateway.refunds.lock().unwrap().len(), 1);
    assert_eq!(rig.gateway.refund_calls.load(Ordering::SeqCst), 1, "the provider asked once");
}
