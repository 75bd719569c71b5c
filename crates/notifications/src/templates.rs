//! The e-mails a customer gets, as plain text and HTML, rendered from the order.

use oxcart_events::types::{order, payment};
use oxcart_orders::domain::Order;
use oxcart_platform::money::format_amount;

/// The customer-visible steps that send an e-mail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Template {
    /// `order.paid`: the order confirmation.
    Confirmation,
    /// `order.payment_failed`.
    PaymentFailed,
    /// `order.shipped`.
    Shipped,
    /// `order.cancelled`, with the refund when there is one.
    Cancelled,
    /// `payment.refunded`, for a refund an admin made (a cancellation's is told by
    /// `Cancelled`).
    Refunded,
}

impl Template {
    pub fn for_event(event_type: &str) -> Option<Self> {
        match event_type {
            order::PAID => Some(Self::Confirmation),
            order::PAYMENT_FAILED => Some(Self::PaymentFailed),
            order::SHIPPED => Some(Self::Shipped),
            order::CANCELLED => Some(Self::Cancelled),
            payment::REFUNDED => Some(Self::Refunded),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Confirmation => "order-confirmation",
            Self::PaymentFailed => "payment-failed",
            Self::Shipped => "order-shipped",
            Self::Cancelled => "order-cancelled",
            Self::Refunded => "order-refunded",
        }
    }
}

/// A rendered e-mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// What the event adds to the order: a decline reason, whether a refund is due, what
/// a refund gave back.
#[derive(Debug, Clone, Default)]
pub struct Details {
    pub reason: Option<String>,
    pub refund_due: bool,
    /// Minor units.
    pub refunded: Option<i64>,
    /// What refunds gave back before a cancellation, minor units.
    pub refunded_before: i64,
}

pub fn render(
    template: Template,
    order: &Order,
    name: Option<&str>,
    details: &Details,
) -> Rendered {
    let short = order.id.simple().to_string()[..8].to_uppercase();
    let total = format_amount(&order.currency, order.total_amount);
    let greeting = match name {
        Some(name) => format!("Hello {name},"),
        None => "Hello,".to_owned(),
    };
    let (subject, paragraphs): (String, Vec<String>) = match template {
        Template::Confirmation => (
            format!("Your order {short} is confirmed"),
            vec![
                format!("Thank you for your order. We have received your payment of {total}."),
                "We will let you know when it ships.".to_owned(),
            ],
        ),
        Template::PaymentFailed => (
            format!("Payment for your order {short} did not go through"),
            vec![
                format!(
                    "We could not take payment of {total}{}. Nothing was charged and the items are back on sale.",
                    details
                        .reason
                        .as_deref()
                        .map(|r| format!(" ({})", r.replace('_', " ")))
                        .unwrap_or_default()
                ),
                "You are welcome to place the order again with another card.".to_owned(),
            ],
        ),
        Template::Shipped => (
            format!("Your order {short} is on its way"),
            vec![format!(
                "Your order has left our warehouse for {}.",
                order.shipping_address.city
            )],
        ),
        Template::Cancelled => {
            let mut paragraphs = vec![match &details.reason {
                Some(reason) => format!("Your order has been cancelled: {reason}."),
                None => "Your order has been cancelled.".to_owned(),
            }];
            paragraphs.push(if details.refund_due {
                let rest = order.total_amount - details.refunded_before;
                format!(
                    "A refund of {} is on its way to your card.",
                    format_amount(&order.currency, rest)
                )
            } else {
                "You have not been charged.".to_owned()
            });
            (format!("Your order {short} was cancelled"), paragraphs)
        }
        Template::Refunded => {
            let amount = format_amount(&order.currency, details.refunded.unwrap_or_default());
            (
                format!("A refund for your order {short}"),
                vec![
                    match &details.reason {
                        Some(reason) => {
                            format!("We have refunded {amount} of your order: {reason}.")
                        }
                        None => format!("We have refunded {amount} of your order."),
                    },
                    "It is on its way to your card; your bank may take a few days to show it."
                        .to_owned(),
                ],
            )
        }
    };

    let lines: Vec<(String, String)> = order
        .items
        .iter()
        .map(|l| {
            (
                format!("{} × {} ({})", l.quantity, l.name, l.sku),
                format_amount(&order.currency, l.line_total),
            )
        })
        .collect();
    let a = &order.shipping_address;
    let address: Vec<&str> = [
        Some(a.name.as_str()),
        Some(a.line1.as_str()),
        a.line2.as_deref(),
        Some(a.city.as_str()),
        a.region.as_deref(),
        Some(a.postal_code.as_str()),
        Some(a.country.as_str()),
    ]
    .into_iter()
    .flatten()
    .collect();

    let mut text = format!("{greeting}\n\n");
    for paragraph in &paragraphs {
        text.push_str(paragraph);
        text.push_str("\n\n");
    }
    for (line, amount) in &lines {
        text.push_str(&format!("  {line}  {amount}\n"));
    }
    text.push_str(&format!(
        "  Total  {total}\n\nShipping to:\n  {}\n\nOrder {}\n",
        address.join("\n  "),
        order.id
    ));

    let mut html = format!(
        "<!doctype html><html><body style=\"font-family: sans-serif\"><p>{}</p>",
        escape(&greeting)
    );
    for paragraph in &paragraphs {
        html.push_str(&format!("<p>{}</p>", escape(paragraph)));
    }
    html.push_str("<table>");
    for (line, amount) in &lines {
        html.push_str(&format!(
            "<tr><td>{}</td><td align=\"right\">{}</td></tr>",
            escape(line),
            escape(amount)
        ));
    }
    html.push_str(&format!(
        "<tr><th align=\"left\">Total</th><th align=\"right\">{}</th></tr></table><p>Shipping to:<br>{}</p>\
         <p style=\"color: #666\">Order {}</p></body></html>",
        escape(&total),
        address.iter().map(|l| escape(l)).collect::<Vec<_>>().join("<br>"),
        order.id
    ));
    Rendered {
        subject,
        text,
        html,
    }
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use oxcart_orders::domain::{OrderLine, OrderStatus, ShippingAddress};
    use uuid::Uuid;

    use super::*;

    fn order() -> Order {
        Order {
            id: Uuid::now_v7(),
            customer_id: Uuid::now_v7(),
            status: OrderStatus::Paid,
            status_reason: None,
            items: vec![OrderLine {
                product_id: Uuid::now_v7(),
                sku: "MUG-1".into(),
                name: "Mug <large>".into(),
                price: 1250,
                quantity: 2,
                line_total: 2500,
            }],
            currency: "EUR".into(),
            total_amount: 2500,
            shipping_address: ShippingAddress {
                name: "Ada".into(),
                line1: "1 Road".into(),
                line2: None,
                city: "London".into(),
                region: None,
                postal_code: "N1".into(),
                country: "GB".into(),
            },
            refunds: Vec::new(),
            version: 2,
            created_at: Utc::now(),
            updated_at: Utc::now(),
        }
    }

    #[test]
    fn a_confirmation_shows_lines_total_and_address_escaped_in_html() {
        let order = order();
        let mail = render(
            Template::Confirmation,
            &order,
            Some("Ada"),
            &Details::default(),
        );
        assert!(mail.subject.contains("is confirmed"));
        assert!(
            mail.text.contains("2 × Mug <large> (MUG-1)  25.00 EUR"),
            "{}",
            mail.text
        );
        assert!(mail.text.contains("Total  25.00 EUR"));
        assert!(mail.html.contains("Mug &lt;large&gt;"));
        assert!(!mail.html.contains("<large>"));
        assert!(mail.text.contains(&order.id.to_string()));
    }

    #[test]
    fn a_cancellation_says_whether_money_comes_back() {
        let order = order();
        let refunded = Details {
            reason: Some("changed my mind".into()),
            refund_due: true,
            ..Details::default()
        };
        let mail = render(Template::Cancelled, &order, None, &refunded);
        assert!(mail.text.contains("cancelled: changed my mind."));
        assert!(mail.text.contains("A refund of 25.00 EUR"));
        let unpaid = render(Template::Cancelled, &order, None, &Details::default());
        assert!(unpaid.text.contains("You have not been charged."));
    }

    #[test]
    fn a_declined_payment_names_the_reason() {
        let details = Details {
            reason: Some("insufficient_funds".into()),
            ..Details::default()
        };
        let mail = render(Template::PaymentFailed, &order(), None, &details);
        assert!(mail.text.contains("(insufficient funds)"), "{}", mail.text);
    }

    #[test]
    fn a_refund_says_how_much_and_why() {
        let details = Details {
            reason: Some("arrived damaged".into()),
            refunded: Some(500),
            ..Details::default()
        };
        let mail = render(Template::Refunded, &order(), None, &details);
        assert!(
            mail.text
                .contains("We have refunded 5.00 EUR of your order: arrived damaged."),
            "{}",
            mail.text
        );
        assert!(mail.subject.starts_with("A refund for your order"));
    }
}
