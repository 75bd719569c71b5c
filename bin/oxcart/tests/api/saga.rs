//! The order saga end to end on the all-in-one: stock, payments, e-mail, invoices and
//! analytics, with every effect exactly once.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Duration;

use oxcart_db::{self as db, Db};
use oxcart_test_util::api::{Api, order_body};
use serde_json::{Value, json};
use sqlx::Row;
use uuid::Uuid;

use crate::helpers::TestApp;

pub const TERMINAL: [&str; 3] = ["PAID", "PAYMENT_FAILED", "CANCELLED"];

/// The consumer groups of the all-in-one, plus the order projection.
pub const GROUPS: [&str; 8] = [
    "catalog-service",
    "payment-service",
    "email-service",
    "invoice-service",
    "analytics-service",
    "webhook-service",
    "order-service",
    "order-projection",
];

/// The simulated provider's test cards, in the mix an order takes by its number.
pub fn token(n: usize) -> &'static str {
    match n % 10 {
        6 => "tok_declined",
        7 => "tok_insufficient_funds",
        8 => "tok_transient",
        9 => "tok_slow",
        _ => "tok_success",
    }
}

/// The settings that keep a saga test quick: fast retries, a short slow card.
pub const FAST: [(&str, &str); 4] = [
    ("OXCART_CONSUMERS__BASE_DELAY", "20ms"),
    ("OXCART_CONSUMERS__MAX_DELAY", "200ms"),
    ("OXCART_PAYMENTS__SLOW_DELAY", "200ms"),
    // These tests place hundreds of orders a second as one customer, which the
    // per-caller limit would rightly refuse.
    ("OXCART_RATE_LIMIT__REQUESTS_PER_SECOND", "0"),
];

/// Waits until the saga is done with every order in `ids` (none is still CREATED) and
/// every consumer group has caught up with the log, so that nothing is on its way.
pub async fn settle(db: &Db, ids: &[String], groups: &[&str]) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
    loop {
        let statuses = statuses(db).await;
        let open = ids
            .iter()
            .filter(|id| statuses.get(*id).is_none_or(|s| s == "CREATED"))
            .count();
        let head = head(db).await;
        let mut behind = Vec::new();
        for &group in groups {
            let at: Option<i64> =
                db::query_scalar("SELECT position FROM projection_checkpoints WHERE name = $1")
                    .bind(group)
                    .fetch_optional(&mut *db.read().await.unwrap())
                    .await
                    .unwrap();
            if at.unwrap_or(0) < head {
                behind.push(group);
            }
        }
        if open == 0 && behind.is_empty() {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not settled: {open} orders open, behind: {behind:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The log's head as its readers see it: the position of the last event in the order
/// they read, which on PostgreSQL need not be the highest position. There the log is
/// read by writing transaction, then position, and a transaction that began writing
/// first may take its position from the sequence last. A consumer that has read
/// everything has this position as its checkpoint, not `MAX(position)`.
pub async fn head(db: &Db) -> i64 {
    oxcart_events::EventStore::head(&oxcart_sql::SqlEventStore::new(db.clone()))
        .await
        .unwrap()
}

async fn statuses(db: &Db) -> HashMap<String, String> {
    db::query("SELECT order_id, status FROM order_read_model")
        .fetch_all(&mut *db.read().await.unwrap())
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get("order_id"), r.get("status")))
        .collect()
}

/// Everything the saga did, read back from the database and the mail directory.
#[derive(Debug)]
pub struct Audit {
    pub status: HashMap<String, String>,
    /// Approved charges at the provider, per order.
    pub charges: HashMap<String, i64>,
    /// `payment.succeeded` events per order.
    pub succeeded_events: HashMap<String, i64>,
    /// `.eml` files per (order, template).
    pub mails: HashMap<(String, String), i64>,
    /// Invoice numbers in order, with their orders.
    pub invoices: Vec<(String, String)>,
}

pub async fn audit(db: &Db, mail_dir: &Path) -> Audit {
    let count = |sql: &'static str| async move {
        db::query(sql)
            .fetch_all(&mut *db.read().await.unwrap())
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get::<String, _>(0), r.get::<i64, _>(1)))
            .collect::<HashMap<_, _>>()
    };
    let charges = count(
        "SELECT idempotency_key, COUNT(*) FROM simulated_provider_operations \
         WHERE kind = 'charge' AND approved = 1 GROUP BY idempotency_key",
    )
    .await;
    let mut succeeded_events = HashMap::new();
    for data in
        db::query_scalar::<String>("SELECT data FROM events WHERE event_type = 'payment.succeeded'")
            .fetch_all(&mut *db.read().await.unwrap())
            .await
            .unwrap()
    {
        let data: Value = serde_json::from_str(&data).unwrap();
        let order = data["orderId"].as_str().unwrap().to_owned();
        *succeeded_events.entry(order).or_insert(0) += 1;
    }
    let invoices =
        db::query("SELECT number, order_id FROM invoices WHERE kind = 'invoice' ORDER BY number")
            .fetch_all(&mut *db.read().await.unwrap())
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get("number"), r.get("order_id")))
            .collect();
    let mut mails = HashMap::new();
    if let Ok(entries) = std::fs::read_dir(mail_dir) {
        for entry in entries {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "eml") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let header = |name: &str| {
                text.lines()
                    .find_map(|l| l.strip_prefix(&format!("{name}: ")))
                    .unwrap_or_else(|| panic!("{} has no {name}", path.display()))
                    .trim()
                    .to_owned()
            };
            *mails
                .entry((header("X-Oxcart-Order-Id"), header("X-Oxcart-Template")))
                .or_insert(0) += 1;
        }
    }
    Audit {
        status: statuses(db).await,
        charges,
        succeeded_events,
        mails,
        invoices,
    }
}

impl Audit {
    pub fn mails(&self, order: &str, template: &str) -> i64 {
        self.mails
            .get(&(order.to_owned(), template.to_owned()))
            .copied()
            .unwrap_or(0)
    }

    /// The delivery contract: every order terminal; a paid order has exactly one charge,
    /// one confirmation and one invoice; a failed payment one e-mail and no charge; the
    /// invoice numbers run from 1 without a gap.
    pub fn assert_exactly_once(&self, ids: &[String]) {
        for id in ids {
            let status = self.status.get(id).map(String::as_str);
            let charges = self.charges.get(id).copied().unwrap_or(0);
            match status {
                Some("PAID") => {
                    assert_eq!(charges, 1, "charges of paid order {id}");
                    assert_eq!(self.succeeded_events.get(id), Some(&1), "order {id}");
                    assert_eq!(
                        self.mails(id, "order-confirmation"),
                        1,
                        "confirmations of {id}"
                    );
                    assert_eq!(
                        self.invoices.iter().filter(|(_, o)| o == id).count(),
                        1,
                        "invoices of {id}"
                    );
                }
                Some("PAYMENT_FAILED") => {
                    assert_eq!(charges, 0, "charges of declined order {id}");
                    assert_eq!(self.mails(id, "payment-failed"), 1, "e-mails of {id}");
                }
                Some("CANCELLED") => {
                    assert_eq!(
                        charges, 0,
                        "charges of order {id}, cancelled for want of stock"
                    );
                    assert_eq!(self.mails(id, "order-cancelled"), 1, "e-mails of {id}");
                }
                other => panic!("order {id} ended {other:?}"),
            }
        }
        assert!(
            self.mails.values().all(|&n| n == 1),
            "a duplicate e-mail: {:?}",
            self.mails
        );
        let paid = ids.iter().filter(|id| self.status[*id] == "PAID").count();
        assert_eq!(self.invoices.len(), paid);
        for (n, (number, _)) in self.invoices.iter().enumerate() {
            let year = &number[4..8];
            assert_eq!(
                *number,
                format!("INV-{year}-{:06}", n + 1),
                "a gap in the invoice numbers"
            );
        }
    }
}

/// Scrapes `/metrics` until `done` holds for its text (gauges are sampled, so they may
/// take a few seconds to move); returns that text.
pub async fn scrape_until(api: &Api, done: impl Fn(&str) -> bool) -> String {
    let mut text = String::new();
    for _ in 0..150 {
        text = api.get("/metrics", None).await.text;
        if done(&text) {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("/metrics never showed what was expected:\n{text}");
}

fn shipping() -> Value {
    order_body(&[])["shippingAddress"].clone()
}

/// Places an order as a careful client would: with an `Idempotency-Key`, sending it
/// again after a 503 (the service could not reach its database or a peer, and said to
/// retry), so that an order the server did take is never placed twice.
async fn place(api: &Api, token: &str, items: &[(Uuid, u32)], card: &str) -> Value {
    let body = json!({
        "items": items.iter().map(|(id, q)| json!({ "productId": id, "quantity": q })).collect::<Vec<_>>(),
        "shippingAddress": shipping(),
        "paymentToken": card,
    });
    let key = Uuid::new_v4().to_string();
    for _ in 0..30 {
        let request = api
            .client()
            .post(api.url("/api/orders"))
            .bearer_auth(token)
            .header("idempotency-key", &key)
            .json(&body);
        let reply = api.send(request).await;
        if reply.status.as_u16() == 503 {
            assert!(reply.headers.contains_key("retry-after"), "{}", reply.text);
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        }
        return reply.ok(201).clone();
    }
    panic!("the order was still refused with 503 after 15 s");
}

/// The backbone issue's scenario: three products (one scarce), five customers and the
/// card mix of [`token`]. Shared with the distributed-mode test.
pub struct Scenario {
    pub admin: String,
    pub mug: Uuid,
    pub lamp: Uuid,
    pub print: Uuid,
    pub customers: Vec<String>,
    /// Each placed order with its number in the scenario.
    pub placed: Vec<(usize, Value)>,
}

impl Scenario {
    pub async fn set_up(api: &Api, admin: String) -> Self {
        let mug = api.product(&admin, "Mug", 1250, "EUR", 1000).await;
        let lamp = api.product(&admin, "Lamp", 4999, "EUR", 1000).await;
        // Scarce: some orders for it find no stock left and are cancelled.
        let print = api.product(&admin, "Signed print", 15000, "EUR", 15).await;
        let mut customers = Vec::new();
        for _ in 0..5 {
            customers.push(api.customer().await.0);
        }
        Self {
            admin,
            mug,
            lamp,
            print,
            customers,
            placed: Vec::new(),
        }
    }

    /// Places orders number `range` at once.
    pub async fn place(&mut self, api: &Api, range: std::ops::Range<usize>) {
        let orders = futures::future::join_all(range.map(|n| {
            let items: Vec<(Uuid, u32)> = match n % 4 {
                0 => vec![(self.mug, 1 + (n % 3) as u32)],
                1 => vec![(self.lamp, 1), (self.mug, 2)],
                2 => vec![(self.print, 1)],
                _ => vec![(self.lamp, 2)],
            };
            let customer = &self.customers[n % 5];
            async move { (n, place(api, customer, &items, token(n)).await) }
        }))
        .await;
        self.placed.extend(orders);
    }

    pub fn ids(&self) -> Vec<String> {
        self.placed
            .iter()
            .map(|(_, o)| o["id"].as_str().unwrap().to_owned())
            .collect()
    }

    /// Every card in the mix was exercised and the print ran out; stock fell by exactly
    /// what paid orders took; the analytics (asked of `analytics`) agree with the orders.
    pub async fn assert_outcome(&self, api: &Api, analytics: &Api, audit: &Audit) {
        let ids = self.ids();
        let count = |status: &str| ids.iter().filter(|id| audit.status[*id] == status).count();
        assert!(count("PAID") >= 100, "{:?}", count("PAID"));
        assert!(count("PAYMENT_FAILED") >= 30);
        assert!(count("CANCELLED") >= 1, "the print's stock should run out");

        let mut sold: HashMap<Uuid, i64> = HashMap::new();
        let mut revenue = 0;
        for (_, order) in &self.placed {
            if audit.status[order["id"].as_str().unwrap()] != "PAID" {
                continue;
            }
            revenue += order["totalAmount"].as_i64().unwrap();
            for item in order["items"].as_array().unwrap() {
                let id: Uuid = item["productId"].as_str().unwrap().parse().unwrap();
                *sold.entry(id).or_default() += item["quantity"].as_i64().unwrap();
            }
        }
        for (product, initial) in [(self.mug, 1000), (self.lamp, 1000), (self.print, 15)] {
            let stock = api
                .get(&format!("/api/products/{product}"), None)
                .await
                .ok(200)["stock"]
                .as_i64()
                .unwrap();
            assert_eq!(
                stock,
                initial - sold.get(&product).copied().unwrap_or(0),
                "stock of {product}"
            );
        }

        let summary = analytics
            .get("/api/analytics/summary", Some(&self.admin))
            .await;
        let summary = summary.ok(200);
        assert_eq!(summary["orders"], ids.len());
        let by_status: BTreeMap<String, i64> =
            serde_json::from_value(summary["byStatus"].clone()).unwrap();
        for status in TERMINAL {
            assert_eq!(
                by_status.get(status).copied().unwrap_or(0),
                count(status) as i64,
                "{status}"
            );
        }
        let paid = count("PAID") as i64;
        assert_eq!(
            summary["revenue"],
            json!([{
                "currency": "EUR", "amount": revenue, "gross": revenue, "refunded": 0, "orders": paid,
                "averageOrderValue": (revenue + paid / 2) / paid,
            }])
        );
        assert_eq!(summary["payments"]["succeeded"], paid);
        assert_eq!(
            summary["payments"]["failed"],
            count("PAYMENT_FAILED") as i64
        );
        let top: i64 = summary["topProducts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["quantity"].as_i64().unwrap())
            .sum();
        assert_eq!(top, sold.values().sum::<i64>());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_orders_reach_a_terminal_state_with_every_effect_once() {
    let app = TestApp::spawn_with(|c| {
        c.consumers.base_delay = Duration::from_millis(20);
        c.consumers.max_delay = Duration::from_millis(200);
        c.payments.slow_delay = Duration::from_millis(200);
    })
    .await;
    let api = &app.api;
    let mut scenario = Scenario::set_up(api, app.admin().await).await;
    scenario.place(api, 0..200).await;
    let ids = scenario.ids();
    settle(&app.db, &ids, &GROUPS).await;

    let audit = audit(&app.db, &app.config.data_dir.join("mail")).await;
    audit.assert_exactly_once(&ids);
    scenario.assert_outcome(api, api, &audit).await;
    let (placed, customers) = (&scenario.placed, &scenario.customers);

    // A payment record per order, visible to its owner.
    // Order 16 took the declined card, for the mug (always in stock).
    let (n, order) = &placed[16];
    let payments = api
        .get(
            &format!("/api/payments?orderId={}", order["id"].as_str().unwrap()),
            Some(&customers[n % 5]),
        )
        .await;
    let payment = &payments.ok(200)["items"][0];
    assert_eq!(
        (
            payment["status"].as_str(),
            payment["failureReason"].as_str()
        ),
        (Some("FAILED"), Some("card_declined"))
    );
    let stranger = api.customer().await.0;
    let hidden = api
        .get(
            &format!("/api/payments?orderId={}", order["id"].as_str().unwrap()),
            Some(&stranger),
        )
        .await;
    assert_eq!(hidden.ok(200)["items"], json!([]));

    // The business metrics counted it all.
    let metrics = api.get("/metrics", None).await;
    let text = &metrics.text;
    assert!(
        text.contains("orders_created_total{status=\"created\"} 200"),
        "{text}"
    );
    assert!(text.contains("events_dead_lettered_total{group=\"payment-service\"} 0"));
    // SQLite's group commit reports its fsyncs and what they made durable: every write
    // above, in fewer physical commits than transactions or as many, never more.
    let count = |name: &str| -> Option<u64> {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
    };
    let commits = count("db_group_commits_total");
    if app.db.backend() == db::Backend::Sqlite {
        let commits = commits.unwrap_or_else(|| panic!("db_group_commits_total in {text}"));
        assert!(commits > 0);
        assert!(count("db_group_commit_transactions_total").unwrap() >= commits);
    } else {
        // PostgreSQL has no group commit of ours to report.
        assert_eq!(commits, None);
    }
    // tok_transient fails its first attempt, once per such order.
    let failed = text
        .lines()
        .find_map(|l| l.strip_prefix("events_failed_total{group=\"payment-service\"} "))
        .unwrap();
    let charged_transient = placed
        .iter()
        .filter(|(n, o)| {
            token(*n) == "tok_transient" && audit.status[o["id"].as_str().unwrap()] != "CANCELLED"
        })
        .count();
    assert_eq!(failed.parse::<usize>().unwrap(), charged_transient);
    // Every group reports its lag, and once the log is drained it is zero for all.
    scrape_until(api, |text| {
        let lags: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("consumer_lag{"))
            .collect();
        lags.len() == GROUPS.len() && lags.iter().all(|l| l.ends_with(" 0"))
    })
    .await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_ship_and_deliver_paid_orders_and_the_customer_hears_of_it() {
    let app = TestApp::spawn().await;
    let api = &app.api;
    let admin = app.admin().await;
    let mug = api.product(&admin, "Mug", 1250, "EUR", 10).await;
    let (customer, _) = api.customer().await;
    let order = place(api, &customer, &[(mug, 1)], "tok_success").await;
    let id = order["id"].as_str().unwrap().to_owned();
    settle(&app.db, std::slice::from_ref(&id), &GROUPS).await;

    let ship = format!("/api/orders/{id}/ship");
    api.post(&ship, Some(&customer), &json!({}))
        .await
        .problem(403);
    let shipped = api.post(&ship, Some(&admin), &json!({})).await;
    assert_eq!(shipped.ok(200)["status"], "SHIPPED");
    api.post(&ship, Some(&admin), &json!({})).await.problem(409);
    let delivered = api
        .post(
            &format!("/api/orders/{id}/deliver"),
            Some(&admin),
            &json!({}),
        )
        .await;
    assert_eq!(delivered.ok(200)["status"], "DELIVERED");
    // Too late to cancel a delivered order.
    api.post(
        &format!("/api/orders/{id}/cancel"),
        Some(&customer),
        &json!({}),
    )
    .await
    .problem(409);
    let unknown = format!("/api/orders/{}/deliver", Uuid::now_v7());
    api.post(&unknown, Some(&admin), &json!({}))
        .await
        .problem(404);

    settle(&app.db, std::slice::from_ref(&id), &GROUPS).await;
    let audit = audit(&app.db, &app.config.data_dir.join("mail")).await;
    assert_eq!(audit.mails(&id, "order-confirmation"), 1);
    assert_eq!(audit.mails(&id, "order-shipped"), 1);
    let summary = api.get("/api/analytics/summary", Some(&admin)).await;
    assert_eq!(summary.ok(200)["byStatus"], json!({ "DELIVERED": 1 }));
    assert_eq!(summary.body["revenue"][0]["amount"], 1250);
    app.stop().await;
}

#[tokio::test]
async fn analytics_are_for_admins_over_valid_ranges() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let (customer, _) = app.api.customer().await;
    let api = &app.api;
    api.get("/api/analytics/summary", Some(&customer))
        .await
        .problem(403);
    api.get(
        "/api/analytics/summary?from=2026-11-30&to=2026-11-01",
        Some(&admin),
    )
    .await
    .problem_naming(422, "from");
    api.get(
        "/api/analytics/summary?from=2024-01-01&to=2026-01-01",
        Some(&admin),
    )
    .await
    .problem_naming(422, "from");
    api.get("/api/analytics/summary?from=yesterday", Some(&admin))
        .await
        .problem_naming(400, "from");
    let empty = api
        .get(
            "/api/analytics/summary?from=2026-01-01&to=2026-01-31",
            Some(&admin),
        )
        .await;
    assert_eq!(empty.ok(200)["orders"], 0);
    assert_eq!(empty.body["payments"]["successRate"], Value::Null);
    app.stop().await;
}
