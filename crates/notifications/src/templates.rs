//! The e-mails a customer gets, as plain text and HTML, rendered from the order by
//! templates ([minijinja](https://docs.rs/minijinja)).
//!
//! Each template is three files: `<name>.subject.txt`, `<name>.txt` and `<name>.html`,
//! the last two extending `layout.txt` and `layout.html` (the greeting, the order's lines,
//! the address). They are built into the binary from `crates/notifications/templates/`;
//! a file of the same name in `mail.templates_dir` replaces one, so the copy can change
//! without a rebuild. HTML is escaped by the engine.
//!
//! Every template is rendered once with a sample order when the service starts, with
//! undefined variables an error: a misspelt variable in an override stops the start,
//! naming the file, instead of leaving a blank in a customer's mail.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use minijinja::{Environment, UndefinedBehavior, context};
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
    pub const ALL: [Template; 5] = [
        Self::Confirmation,
        Self::PaymentFailed,
        Self::Shipped,
        Self::Cancelled,
        Self::Refunded,
    ];

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

/// The files built into the binary.
const BUILT_IN: &[(&str, &str)] = &[
    ("layout.txt", include_str!("../templates/layout.txt")),
    ("layout.html", include_str!("../templates/layout.html")),
    (
        "order-confirmation.subject.txt",
        include_str!("../templates/order-confirmation.subject.txt"),
    ),
    (
        "order-confirmation.txt",
        include_str!("../templates/order-confirmation.txt"),
    ),
    (
        "order-confirmation.html",
        include_str!("../templates/order-confirmation.html"),
    ),
    (
        "payment-failed.subject.txt",
        include_str!("../templates/payment-failed.subject.txt"),
    ),
    (
        "payment-failed.txt",
        include_str!("../templates/payment-failed.txt"),
    ),
    (
        "payment-failed.html",
        include_str!("../templates/payment-failed.html"),
    ),
    (
        "order-shipped.subject.txt",
        include_str!("../templates/order-shipped.subject.txt"),
    ),
    (
        "order-shipped.txt",
        include_str!("../templates/order-shipped.txt"),
    ),
    (
        "order-shipped.html",
        include_str!("../templates/order-shipped.html"),
    ),
    (
        "order-cancelled.subject.txt",
        include_str!("../templates/order-cancelled.subject.txt"),
    ),
    (
        "order-cancelled.txt",
        include_str!("../templates/order-cancelled.txt"),
    ),
    (
        "order-cancelled.html",
        include_str!("../templates/order-cancelled.html"),
    ),
    (
        "order-refunded.subject.txt",
        include_str!("../templates/order-refunded.subject.txt"),
    ),
    (
        "order-refunded.txt",
        include_str!("../templates/order-refunded.txt"),
    ),
    (
        "order-refunded.html",
        include_str!("../templates/order-refunded.html"),
    ),
    (
        "password-reset.subject.txt",
        include_str!("../templates/password-reset.subject.txt"),
    ),
    (
        "password-reset.txt",
        include_str!("../templates/password-reset.txt"),
    ),
    (
        "password-reset.html",
        include_str!("../templates/password-reset.html"),
    ),
];

/// What a password-reset e-mail says: the code, the shop's page for it if there is one,
/// and how long it works.
#[derive(Debug, Clone)]
pub struct Reset<'a> {
    pub name: Option<&'a str>,
    pub token: &'a str,
    pub link: Option<&'a str>,
    pub expires_in: std::time::Duration,
}

/// Why the templates cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}: {source:#}")]
    Template {
        file: String,
        #[source]
        source: minijinja::Error,
    },
}

/// The e-mail templates, loaded and checked; cheap to clone.
#[derive(Debug, Clone)]
pub struct Templates {
    env: Arc<Environment<'static>>,
}

impl Templates {
    /// The built-in templates, with the files of `dir` (when given) in place of those of
    /// the same name. Every template is rendered once with a sample order: a syntax
    /// error or an undefined variable is an error here, naming the file.
    pub fn load(dir: Option<&Path>) -> Result<Self, TemplateError> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_keep_trailing_newline(false);
        for (name, built_in) in BUILT_IN {
            let source = match dir.map(|d| d.join(name)).filter(|p| p.is_file()) {
                Some(path) => std::fs::read_to_string(&path)
                    .map_err(|source| TemplateError::Read { path, source })?,
                None => (*built_in).to_owned(),
            };
            env.add_template_owned(*name, source)
                .map_err(|source| TemplateError::Template {
                    file: (*name).to_owned(),
                    source,
                })?;
        }
        let templates = Self { env: Arc::new(env) };
        let sample = sample_order();
        let details = Details {
            reason: Some("sample".into()),
            refund_due: true,
            refunded: Some(100),
            refunded_before: 0,
        };
        for template in Template::ALL {
            templates.render(template, &sample, Some("Sample"), &details)?;
            templates.render(template, &sample, None, &Details::default())?;
        }
        let link = "https://shop.example/reset?token=sample";
        for (name, link) in [(Some("Sample"), Some(link)), (None, None)] {
            templates.render_reset(&Reset {
                name,
                token: "sample",
                link,
                expires_in: std::time::Duration::from_secs(3600),
            })?;
        }
        Ok(templates)
    }

    /// The password-reset e-mail (`password-reset.*`): variables `name` (or none),
    /// `token`, `link` (or none) and `expires_in` (`1h`).
    pub fn render_reset(&self, reset: &Reset<'_>) -> Result<Rendered, TemplateError> {
        let context = context! {
            name => reset.name,
            token => reset.token,
            link => reset.link,
            expires_in => humantime::format_duration(reset.expires_in).to_string(),
        };
        self.parts("password-reset", &context)
    }

    fn parts(&self, name: &str, context: &minijinja::Value) -> Result<Rendered, TemplateError> {
        let part = |suffix: &str| {
            let file = format!("{name}.{suffix}");
            self.env
                .get_template(&file)
                .and_then(|t| t.render(context))
                .map_err(|source| TemplateError::Template { file, source })
        };
        Ok(Rendered {
            subject: part("subject.txt")?.trim().to_owned(),
            text: format!("{}\n", part("txt")?.trim_end()),
            html: part("html")?,
        })
    }

    /// The built-in templates alone.
    #[cfg(test)]
    pub fn built_in() -> Self {
        Self::load(None).expect("the built-in templates render")
    }

    pub fn render(
        &self,
        template: Template,
        order: &Order,
        name: Option<&str>,
        details: &Details,
    ) -> Result<Rendered, TemplateError> {
        self.parts(template.name(), &context(template, order, name, details))
    }
}

/// The variables every template sees: `name` (or none), `order` (`id`, `short_id`,
/// `total`, `currency`, `city`, `items` with `quantity`, `name`, `sku`, `total`, and
/// `address` as lines), `reason` (or none), and `refund` (the amount a cancellation
/// or a refund gives back, formatted; none when nothing comes back).
fn context(
    template: Template,
    order: &Order,
    name: Option<&str>,
    details: &Details,
) -> minijinja::Value {
    let money = |amount: i64| format_amount(&order.currency, amount);
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
    let items: Vec<minijinja::Value> = order
        .items
        .iter()
        .map(|l| {
            context! { quantity => l.quantity, name => l.name, sku => l.sku, total => money(l.line_total) }
        })
        .collect();
    let refund = match template {
        Template::Cancelled if details.refund_due => {
            Some(money(order.total_amount - details.refunded_before))
        }
        Template::Refunded => details.refunded.map(money),
        _ => None,
    };
    context! {
        name => name,
        order => context! {
            id => order.id.to_string(),
            short_id => order.id.simple().to_string()[..8].to_uppercase(),
            total => money(order.total_amount),
            currency => order.currency,
            city => a.city,
            items => items,
            address => address,
        },
        reason => details.reason,
        refund => refund,
    }
}

/// The order every template is tried on at start-up.
fn sample_order() -> Order {
    use oxcart_orders::domain::{OrderLine, OrderStatus, ShippingAddress};
    let at = chrono::DateTime::UNIX_EPOCH;
    Order {
        id: uuid::Uuid::nil(),
        customer_id: uuid::Uuid::nil(),
        status: OrderStatus::Paid,
        status_reason: None,
        items: vec![OrderLine {
            product_id: uuid::Uuid::nil(),
            sku: "SAMPLE-1".into(),
            name: "Sample".into(),
            price: 100,
            quantity: 1,
            line_total: 100,
            tax_class: "standard".into(),
        }],
        currency: "EUR".into(),
        total_amount: 100,
        shipping_address: ShippingAddress {
            name: "Sample".into(),
            line1: "1 Road".into(),
            line2: Some("Flat 2".into()),
            city: "Town".into(),
            region: Some("Region".into()),
            postal_code: "1".into(),
            country: "GB".into(),
        },
        customer_tax_id: None,
        refunds: Vec::new(),
        version: 1,
        created_at: at,
        updated_at: at,
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use oxcart_orders::domain::{OrderLine, OrderStatus, ShippingAddress};
    use uuid::Uuid;

    use super::*;

    fn built_in(
        template: Template,
        order: &Order,
        name: Option<&str>,
        details: &Details,
    ) -> Rendered {
        Templates::built_in()
            .render(template, order, name, details)
            .unwrap()
    }

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
                tax_class: "standard".into(),
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
            customer_tax_id: None,
            refunds: Vec::new(),
            version: 2,
            created_at: Utc::now(),
            updated_at: Utc::now(),
        }
    }

    #[test]
    fn a_confirmation_shows_lines_total_and_address_escaped_in_html() {
        let order = order();
        let mail = built_in(
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
        let mail = built_in(Template::Cancelled, &order, None, &refunded);
        assert!(mail.text.contains("cancelled: changed my mind."));
        assert!(mail.text.contains("A refund of 25.00 EUR"));
        let unpaid = built_in(Template::Cancelled, &order, None, &Details::default());
        assert!(unpaid.text.contains("You have not been charged."));
    }

    #[test]
    fn a_declined_payment_names_the_reason() {
        let details = Details {
            reason: Some("insufficient_funds".into()),
            ..Details::default()
        };
        let mail = built_in(Template::PaymentFailed, &order(), None, &details);
        assert!(mail.text.contains("(insufficient funds)"), "{}", mail.text);
    }

    #[test]
    fn a_refund_says_how_much_and_why() {
        let details = Details {
            reason: Some("arrived damaged".into()),
            refunded: Some(500),
            ..Details::default()
        };
        let mail = built_in(Template::Refunded, &order(), None, &details);
        assert!(
            mail.text
                .contains("We have refunded 5.00 EUR of your order: arrived damaged."),
            "{}",
            mail.text
        );
        assert!(mail.subject.starts_with("A refund for your order"));
    }

    #[test]
    fn a_file_in_the_templates_dir_replaces_the_built_in_one() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("order-shipped.subject.txt"),
            "On its way to {{ order.city }}: {{ order.short_id }}",
        )
        .unwrap();
        let templates = Templates::load(Some(dir.path())).unwrap();
        let mail = templates
            .render(Template::Shipped, &order(), None, &Details::default())
            .unwrap();
        assert!(
            mail.subject.starts_with("On its way to London: "),
            "{}",
            mail.subject
        );
        // The rest are the built-in ones.
        assert!(
            mail.text.contains("has left our warehouse"),
            "{}",
            mail.text
        );
    }

    #[test]
    fn a_misspelt_variable_or_bad_syntax_stops_the_start_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("order-refunded.txt"), "{{ refnud }}").unwrap();
        let error = Templates::load(Some(dir.path())).unwrap_err().to_string();
        assert!(error.starts_with("order-refunded.txt: "), "{error}");
        assert!(error.contains("undefined"), "{error}");

        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("layout.html"), "{% block message %}").unwrap();
        let error = Templates::load(Some(dir.path())).unwrap_err().to_string();
        assert!(error.starts_with("layout.html: "), "{error}");
    }
}
