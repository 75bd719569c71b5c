//! Refunds an admin asks for: `POST /api/orders/{id}/refunds`, carried out by payments
//! through the provider, told to the customer, and netted out of revenue.

use std::time::Duration;

use oxcart_db as db;
use oxcart_test_util::api::Reply;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{TestApp, eventually, order_reaches, payment_until};

struct Shop {
    app: TestApp,
    admin: String,
    customer: String,
    product: Uuid,
}

async fn shop() -> Shop {
    let app = TestApp::spawn_with(|c| {
        c.consumers.base_delay = Duration::from_millis(20);
        c.consumers.max_delay = Duration::from_millis(200);
    })
    .await;
    let admin = app.admin().await;
    let product = app.api.product(&admin, "Mug", 1450, "EUR", 50).await;
    let (customer, _) = app.api.customer().await;
    Shop {
        app,
        admin,
        customer,
        product,
    }
}

impl Shop {
    /// A paid order of two mugs (29.00 EUR).
    async fn paid_order(&self) -> String {
        let placed = self
            .app
            .api
            .place_order(&self.customer, &[(self.product, 2)])
            .await;
        let id = placed.ok(201)["id"].as_str().unwrap().to_owned();
        order_reaches(&self.app.api, &self.customer, &id, "PAID").await;
        id
    }

    async fn refund(&self, token: &str, order: &str, body: &Value, key: Option<&str>) -> Reply {
        let mut request = self
            .app
            .api
            .client()
            .post(self.app.api.url(&format!("/api/orders/{order}/refunds")))
            .bearer_auth(token)
            .json(body);
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        self.app.api.send(request).await
    }

    /// Waits until the order's payment has `refunded` back.
    async fn refunded(&self, order: &str, refunded: i64) -> Value {
        let what = format!("had {refunded} refunded");
        payment_until(&self.app.api, &self.customer, order, &what, |p| {
            p["refundedAmount"] == refunded
        })
        .await
    }

    /// Refunds the simulated provider made for the order, in minor units.
    async fn provider_refunds(&self) -> Vec<i64> {
        db::query_scalar(
            "SELECT amount FROM simulated_provider_operations WHERE kind = 'refund' ORDER BY created_at, amount",
        )
        .fetch_all(&mut *self.app.db.read().await.unwrap())
        .await
        .unwrap()
    }

    async fn summary(&self) -> Value {
        let reply = self
            .app
            .api
            .get("/api/analytics/summary", Some(&self.admin))
            .await;
        reply.ok(200)["revenue"][0].clone()
    }

    /// The text of each `.eml` file of `template` for `order`.
    fn mails(&self, order: &str, template: &str) -> Vec<String> {
        let dir = self.app.config.data_dir.join("mail");
        std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
            .filter(|eml| {
                eml.contains(&format!("X-Oxcart-Order-Id: {order}"))
                    && eml.contains(&format!("X-Oxcart-Template: {template}"))
            })
            .map(|eml| crate::helpers::plain_text(&eml))
            .collect()
    }
}

#[tokio::test]
async fn a_partial_refund_is_made_once_told_to_the_customer_and_netted_out_of_revenue() {
    let shop = shop().await;
    let order = shop.paid_order().await;
    let body = json!({ "amount": 500, "reason": "arrived damaged" });
    let first = shop
        .refund(&shop.admin, &order, &body, Some("refund-1"))
        .await;
    let refund = first.ok(202).clone();
    assert_eq!(
        (refund["amount"].as_i64(), refund["currency"].as_str()),
        (Some(500), Some("EUR"))
    );
    assert_eq!(refund["status"], "REQUESTED");
    // A retry with the same key is the same refund.
    let again = shop
        .refund(&shop.admin, &order, &body, Some("refund-1"))
        .await;
    assert_eq!(again.ok(202)["id"], refund["id"]);

    let payment = shop.refunded(&order, 500).await;
    assert_eq!(payment["status"], "SUCCEEDED", "the rest is still paid");
    let refunds = payment["refunds"].as_array().unwrap();
    assert_eq!(refunds.len(), 1);
    assert_eq!(refunds[0]["id"], refund["id"]);
    assert_eq!(
        (refunds[0]["source"].as_str(), refunds[0]["reason"].as_str()),
        (Some("REQUEST"), Some("arrived damaged"))
    );
    assert_eq!(shop.provider_refunds().await, [500]);

    // The customer hears of it, once.
    let mails = eventually("an order-refunded e-mail", || async {
        Some(shop.mails(&order, "order-refunded")).filter(|m| !m.is_empty())
    })
    .await;
    assert_eq!(mails.len(), 1);
    assert!(mails[0].contains("5.00 EUR"), "{}", mails[0]);

    // Revenue is net of it.
    let revenue = eventually("revenue net of the refund", || async {
        Some(shop.summary().await).filter(|r| r["refunded"] == 500)
    })
    .await;
    assert_eq!(
        (
            revenue["gross"].as_i64(),
            revenue["refunded"].as_i64(),
            revenue["amount"].as_i64()
        ),
        (Some(2900), Some(500), Some(2400))
    );

    // The same key for another refund is refused; so is more than is left.
    let reused = shop
        .refund(
            &shop.admin,
            &order,
            &json!({ "amount": 600, "reason": "arrived damaged" }),
            Some("refund-1"),
        )
        .await;
    reused.problem_naming(422, "idempotency-key");
    let too_much = shop
        .refund(
            &shop.admin,
            &order,
            &json!({ "amount": 2401, "reason": "all of it" }),
            None,
        )
        .await;
    let problem = too_much.problem_at(422, "#/amount");
    assert!(
        problem["errors"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("2400"),
        "{problem}"
    );
    // The rest, then nothing.
    shop.refund(
        &shop.admin,
        &order,
        &json!({ "amount": 2400, "reason": "all of it" }),
        None,
    )
    .await
    .ok(202);
    let payment = shop.refunded(&order, 2900).await;
    assert_eq!(payment["status"], "REFUNDED");
    shop.refund(
        &shop.admin,
        &order,
        &json!({ "amount": 1, "reason": "one more" }),
        None,
    )
    .await
    .problem_at(422, "#/amount");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        shop.provider_refunds().await,
        [500, 2400],
        "nothing more was refunded"
    );
    shop.app.stop().await;
}

#[tokio::test]
async fn only_admins_refund_and_only_what_was_paid() {
    let shop = shop().await;
    let order = shop.paid_order().await;
    let body = json!({ "amount": 100, "reason": "goodwill" });
    shop.refund(&shop.customer, &order, &body, None)
        .await
        .problem(403);
    let missing = Uuid::now_v7();
    shop.refund(&shop.admin, &missing.to_string(), &body, None)
        .await
        .problem(404);
    shop.refund(
        &shop.admin,
        &order,
        &json!({ "amount": 0, "reason": " " }),
        None,
    )
    .await
    .problem_at(422, "#/reason");
    shop.refund(&shop.admin, &order, &json!({ "reason": "no amount" }), None)
        .await
        .problem_at(422, "#/amount");

    // An order not paid (its card declined) has nothing to refund.
    let mut declined = oxcart_test_util::api::order_body(&[(shop.product, 1)]);
    declined["paymentToken"] = json!("tok_declined");
    let placed = shop
        .app
        .api
        .post("/api/orders", Some(&shop.customer), &declined)
        .await;
    let unpaid = placed.ok(201)["id"].as_str().unwrap().to_owned();
    order_reaches(&shop.app.api, &shop.customer, &unpaid, "PAYMENT_FAILED").await;
    shop.refund(&shop.admin, &unpaid, &body, None)
        .await
        .problem(409);
    assert!(shop.provider_refunds().await.is_empty());
    shop.app.stop().await;
}

#[tokio::test]
async fn cancelling_a_partly_refunded_order_refunds_the_rest() {
    let shop = shop().await;
    let order = shop.paid_order().await;
    let body = json!({ "amount": 1000, "reason": "late delivery" });
    shop.refund(&shop.admin, &order, &body, None).await.ok(202);
    shop.refunded(&order, 1000).await;
    shop.app
        .api
        .post(
            &format!("/api/orders/{order}/cancel"),
            Some(&shop.customer),
            &json!({ "reason": "no longer needed" }),
        )
        .await
        .ok(200);
    let payment = shop.refunded(&order, 2900).await;
    assert_eq!(payment["status"], "REFUNDED");
    let refunds: Vec<_> = payment["refunds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["source"].as_str().unwrap().to_owned(),
                r["amount"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        refunds,
        [
            ("REQUEST".to_owned(), 1000),
            ("CANCELLATION".to_owned(), 1900)
        ]
    );
    assert_eq!(shop.provider_refunds().await, [1000, 1900]);
    // The cancellation's e-mail names what it gives back: the rest.
    let mails = eventually("an order-cancelled e-mail", || async {
        Some(shop.mails(&order, "order-cancelled")).filter(|m| !m.is_empty())
    })
    .await;
    assert!(
        mails
            .first()
            .is_some_and(|m| m.contains("A refund of 19.00 EUR")),
        "{mails:?}"
    );
    shop.app.stop().await;
}
