//! Which event gets which email, rendered from the crate's templates. The `.html` templates are
//! escaped (a customer named `<script>` is shown, never run); the `.txt` ones are not.

use minijinja::{context, Environment};
use orderflow_contracts::{
    display_amount, short_order_id, Address, OrderPlaced, OrderState, OrderStatus, OrderStatusChanged,
};
use serde::Serialize;

/// One email to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email {
    /// The order it is about (for logs; never the address).
    pub order_id: String,
    /// The recipient.
    pub to: String,
    /// Subject line.
    pub subject: String,
    /// Plain-text body.
    pub text: String,
    /// HTML body.
    pub html: String,
}

/// The templates, parsed once per process (at the first email), not per email.
fn environment() -> &'static Environment<'static> {
    static ENVIRONMENT: std::sync::OnceLock<Environment<'static>> = std::sync::OnceLock::new();
    ENVIRONMENT.get_or_init(parse_templates)
}

fn parse_templates() -> Environment<'static> {
    let mut env = Environment::new();
    for (name, source) in [
        ("layout.html", include_str!("../templates/layout.html")),
        ("placed.html", include_str!("../templates/placed.html")),
        ("placed.txt", include_str!("../templates/placed.txt")),
        ("ready_to_ship.html", include_str!("../templates/ready_to_ship.html")),
        ("ready_to_ship.txt", include_str!("../templates/ready_to_ship.txt")),
        ("payment_failed.html", include_str!("../templates/payment_failed.html")),
        ("payment_failed.txt", include_str!("../templates/payment_failed.txt")),
        ("backordered.html", include_str!("../templates/backordered.html")),
        ("backordered.txt", include_str!("../templates/backordered.txt")),
        ("cancelled.html", include_str!("../templates/cancelled.html")),
        ("cancelled.txt", include_str!("../templates/cancelled.txt")),
    ] {
        env.add_template(name, source).expect("the crate's templates parse (a test renders each)");
    }
    env
}

#[derive(Serialize)]
struct Line {
    sku: String,
    quantity: u32,
    amount: String,
}

fn address(a: &Address) -> String {
    [
        Some(a.line1.as_str()),
        a.line2.as_deref(),
        Some(a.city.as_str()),
        Some(a.postal_code.as_str()),
        Some(a.country.as_str()),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join(", ")
}

fn email(template: &str, subject: String, to: &str, order_id: &str, ctx: minijinja::Value) -> Result<Email, String> {
    let env = environment();
    let ctx = context! { subject => subject.clone(), ..ctx };
    let render =
        |name: String| env.get_template(&name).and_then(|t| t.render(&ctx)).map_err(|e| format!("{name}: {e}"));
    Ok(Email {
        order_id: order_id.to_string(),
        to: to.to_string(),
        text: render(format!("{template}.txt"))?,
        html: render(format!("{template}.html"))?,
        subject,
    })
}

/// The email for a placed order.
pub fn placed(order: &OrderPlaced) -> Result<Email, String> {
    let lines = order
        .lines
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let minor = i64::from(l.quantity)
                .checked_mul(l.unit_price_minor)
                .ok_or_else(|| format!("lines[{i}]: the line's amount overflows"))?;
            Ok(Line { sku: l.sku.clone(), quantity: l.quantity, amount: display_amount(minor, order.currency) })
        })
        .collect::<Result<Vec<Line>, String>>()?;
    email(
        "placed",
        format!("We have your order {}", short_order_id(&order.order_id)),
        &order.customer.email,
        &order.order_id,
        context! {
            name => order.customer.name,
            order_id => order.order_id,
            lines => lines,
            shipping => display_amount(order.totals.shipping_minor, order.currency),
            total => display_amount(order.totals.total_minor, order.currency),
            address => address(&order.shipping_address),
        },
    )
}

fn last_reason(order: &OrderState) -> String {
    order.history.last().and_then(|h| h.reason.clone()).unwrap_or_default()
}

/// The notice for a status change, if that status gets one.
pub fn status_changed(changed: &OrderStatusChanged) -> Option<Result<Email, String>> {
    let order = &changed.order;
    let short = short_order_id(&order.order_id);
    let (template, subject) = match order.status {
        OrderStatus::ReadyToShip => ("ready_to_ship", format!("Your order {short} is ready to ship")),
        OrderStatus::PaymentFailed => ("payment_failed", format!("We could not take payment for order {short}")),
        OrderStatus::Backordered => ("backordered", format!("Your order {short} is delayed")),
        OrderStatus::Cancelled => ("cancelled", format!("Your order {short} is cancelled")),
        // Cancelling: the customer hears once the refund is known.
        OrderStatus::Placed | OrderStatus::Cancelling => return None,
    };
    let why = order.history.iter().rev().find(|h| h.status == OrderStatus::Cancelling).and_then(|h| h.reason.clone());
    let refund = order.refunded_minor.filter(|m| *m > 0).map(|m| display_amount(m, order.currency));
    Some(email(
        template,
        subject,
        &order.customer.email,
        &order.order_id,
        context! {
            name => order.customer.name,
            order_id => order.order_id,
            tracking => order.tracking_number,
            reason => last_reason(order),
            delayed => changed.previous_status == OrderStatus::Backordered,
            why => why,
            refund => refund,
        },
    ))
}
