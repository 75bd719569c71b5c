//! Payments through Stripe: the app with `payments.provider = "stripe"`, against
//! stripe-mock (Stripe's official mock, which checks every request against Stripe's
//! OpenAPI document) behind the front in `oxcart_test_util::stripe`, which adds what the
//! mock leaves out (outcomes by test payment method, idempotency, faults).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use oxcart::config::Config;
use oxcart_payments::ProviderKind;
use oxcart_payments::stripe::sign;
use oxcart_test_util::api::order_body;
use oxcart_test_util::stripe::{Fault, StripeFront, mock_url};
use secrecy::SecretString;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{TestApp, order_reaches, payment, payment_until};

const WEBHOOK_SECRET: &str = "whsec_oxcart_test";

struct Shop {
    app: TestApp,
    front: StripeFront,
    admin: String,
    customer: String,
    product: Uuid,
}

/// The app charging through Stripe at the front, with quick retries and a timeout
/// short enough for a test to outlast.
async fn shop() -> Shop {
    let mock = mock_url().expect("OXCART_TEST_STRIPE_MOCK (.ci/services starts stripe-mock)");
    let front = StripeFront::start(&mock).await;
    let url = front.url.clone();
    let app = TestApp::spawn_with(|c: &mut Config| {
        c.consumers.base_delay = Duration::from_millis(20);
        c.consumers.max_delay = Duration::from_millis(200);
        c.payments.provider = ProviderKind::Stripe;
        c.payments.stripe.api_base = url;
        c.payments.stripe.api_key = Some(SecretString::from("sk_test_oxcart"));
        c.payments.stripe.webhook_secret = Some(SecretString::from(WEBHOOK_SECRET));
        c.payments.stripe.timeout = Duration::from_millis(700);
        c.payments.stripe.retry_delay = Duration::from_millis(20);
    })
    .await;
    let admin = app.admin().await;
    let product = app.api.product(&admin, "Mug", 1450, "EUR", 50).await;
    let (customer, _) = app.api.customer().await;
    Shop {
        app,
        front,
        admin,
        customer,
        product,
    }
}

impl Shop {
    /// Places an order of two mugs paid with `payment_method`; its id.
    async fn order(&self, payment_method: &str) -> String {
        let mut body = order_body(&[(self.product, 2)]);
        body["paymentToken"] = json!(payment_method);
        let placed = self
            .app
            .api
            .post("/api/orders", Some(&self.customer), &body)
            .await;
        placed.ok(201)["id"].as_str().unwrap().to_owned()
    }

    async fn payment(&self, order: &str) -> Value {
        payment(&self.app.api, &self.customer, order).await
    }

    async fn payment_reaches(&self, order: &str, status: &str) -> Value {
        let what = format!("reached {status}");
        payment_until(&self.app.api, &self.customer, order, &what, |p| {
            p["status"] == status
        })
        .await
    }

    /// How many events of `event_type` the log holds for the order (its own stream's
    /// and its payment's).
    async fn events(&self, order: &str, event_type: &str) -> i64 {
        let payment = oxcart_payments::payment_id(order.parse().unwrap());
        oxcart_db::query_scalar(
            "SELECT COUNT(*) FROM events WHERE event_type = $1 AND aggregate_id IN ($2, $3)",
        )
        .bind(event_type)
        .bind(order)
        .bind(payment.to_string())
        .fetch_one(&mut *self.app.db.read().await.unwrap())
        .await
        .unwrap()
    }

    /// POSTs a Stripe event to the webhook, signed with `secret` at `at`.
    async fn deliver(&self, event: &Value, secret: &str, at: u64) -> oxcart_test_util::api::Reply {
        let body = serde_json::to_vec(event).unwrap();
        let signature = sign(&SecretString::from(secret), at, &body);
        let request = self
            .app
            .api
            .client()
            .post(self.app.api.url("/api/payments/webhooks/stripe"))
            .header("Content-Type", "application/json")
            .header("Stripe-Signature", signature)
            .body(body);
        self.app.api.send(request).await
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The PaymentIntent requests the front saw.
fn intent_requests(front: &StripeFront) -> Vec<oxcart_test_util::stripe::Seen> {
    front
        .seen()
        .into_iter()
        .filter(|s| s.method == "POST" && s.path == "/v1/payment_intents")
        .collect()
}

#[tokio::test]
#[ignore = "needs stripe-mock (.ci/services)"]
async fn a_charge_retried_after_a_timeout_creates_one_payment_intent() {
    let shop = shop().await;
    // Stripe charges, and its answer arrives after the client has given up.
    shop.front.fault(Fault::Slow(Duration::from_millis(1500)));
    let order = shop.order("pm_card_visa").await;
    order_reaches(&shop.app.api, &shop.customer, &order, "PAID").await;

    let requests = intent_requests(&shop.front);
    assert!(
        requests.len() >= 2,
        "the timed-out charge was retried: {requests:?}"
    );
    let keys: std::collections::HashSet<_> =
        requests.iter().map(|r| r.idempotency_key.clone()).collect();
    assert_eq!(keys.len(), 1, "every attempt carries one key: {keys:?}");
    assert!(
        keys.iter()
            .all(|k| k.as_deref().is_some_and(|k| k.contains(&order)))
    );
    let intents = shop.front.intents();
    assert_eq!(intents.len(), 1, "one PaymentIntent: {intents:?}");
    let intent = &intents[0];
    assert_eq!(
        (intent["amount"].as_i64(), intent["currency"].as_str()),
        (Some(2900), Some("eur"))
    );

    let payment = shop.payment(&order).await;
    assert_eq!(payment["status"], "SUCCEEDED");
    assert_eq!(payment["providerReference"], intent["id"]);
    assert_eq!(shop.events(&order, "order.paid").await, 1);
    shop.app.stop().await;
}

#[tokio::test]
#[ignore = "needs stripe-mock (.ci/services)"]
async fn a_decline_becomes_payment_failed_with_stripes_decline_code() {
    let shop = shop().await;
    let order = shop.order("pm_card_chargeDeclinedInsufficientFunds").await;
    order_reaches(&shop.app.api, &shop.customer, &order, "PAYMENT_FAILED").await;
    let payment = shop.payment(&order).await;
    assert_eq!(payment["status"], "FAILED");
    assert_eq!(payment["failureReason"], "insufficient_funds");
    // A PaymentMethod Stripe does not know is a decline too, not a retry loop.
    let unknown = shop.order("pm_nothing_like_it").await;
    order_reaches(&shop.app.api, &shop.customer, &unknown, "PAYMENT_FAILED").await;
    assert_eq!(
        shop.payment(&unknown).await["failureReason"],
        "resource_missing"
    );
    shop.app.stop().await;
}

#[tokio::test]
#[ignore = "needs stripe-mock (.ci/services)"]
async fn rate_limits_and_server_errors_are_retried_with_the_same_key() {
    let shop = shop().await;
    shop.front.fault(Fault::Status(429));
    shop.front.fault(Fault::Status(500));
    let order = shop.order("pm_card_visa").await;
    order_reaches(&shop.app.api, &shop.customer, &order, "PAID").await;
    let requests = intent_requests(&shop.front);
    assert_eq!(requests.len(), 3, "two refused attempts, then the charge");
    assert_eq!(shop.front.intents().len(), 1);
    // Cancelling the paid order refunds it through Stripe, in full.
    let cancel = shop
        .app
        .api
        .post(
            &format!("/api/orders/{order}/cancel"),
            Some(&shop.customer),
            &json!({ "reason": "changed my mind" }),
        )
        .await;
    cancel.ok(200);
    let payment = shop.payment_reaches(&order, "REFUNDED").await;
    let refunds = shop.front.refunds();
    assert_eq!(refunds.len(), 1);
    assert_eq!(payment["refundReference"], refunds[0]["id"]);
    assert_eq!(refunds[0]["amount"], 2900);
    shop.app.stop().await;
}

#[tokio::test]
#[ignore = "needs stripe-mock (.ci/services)"]
async fn a_webhook_settles_a_processing_payment_once_and_a_bad_signature_changes_nothing() {
    let shop = shop().await;
    shop.front.fault(Fault::Processing);
    let order = shop.order("pm_card_visa").await;
    let payment = shop.payment_reaches(&order, "PROCESSING").await;
    let intent = payment["providerReference"].as_str().unwrap().to_owned();
    let event = json!({
        "id": format!("evt_{}", Uuid::new_v4().simple()),
        "object": "event",
        "type": "payment_intent.succeeded",
        "data": { "object": { "id": intent, "object": "payment_intent", "status": "succeeded" } },
    });

    // Signed with another secret, or too long ago: refused, and nothing moves.
    let forged = shop.deliver(&event, "whsec_someone_else", now()).await;
    forged.problem_naming(400, "Stripe-Signature");
    let stale = shop.deliver(&event, WEBHOOK_SECRET, now() - 600).await;
    stale.problem_naming(400, "Stripe-Signature");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(shop.payment(&order).await["status"], "PROCESSING");
    assert_eq!(
        shop.app
            .api
            .get(&format!("/api/orders/{order}"), Some(&shop.customer))
            .await
            .body["status"],
        "CREATED"
    );

    let first = shop.deliver(&event, WEBHOOK_SECRET, now()).await;
    assert_eq!(first.ok(200)["outcome"], "changed");
    order_reaches(&shop.app.api, &shop.customer, &order, "PAID").await;
    // Stripe delivers at least once: the same event again changes nothing.
    let again = shop.deliver(&event, WEBHOOK_SECRET, now()).await;
    assert_eq!(again.ok(200)["outcome"], "duplicate");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(shop.events(&order, "payment.succeeded").await, 1);
    assert_eq!(shop.events(&order, "order.paid").await, 1);
    assert_eq!(shop.payment(&order).await["status"], "SUCCEEDED");

    // An event of no interest is acknowledged, so Stripe stops sending it.
    let other = json!({ "id": "evt_other", "type": "customer.created", "data": { "object": {} } });
    assert_eq!(
        shop.deliver(&other, WEBHOOK_SECRET, now()).await.ok(200)["outcome"],
        "nothing"
    );
    shop.app.stop().await;
}

#[tokio::test]
#[ignore = "needs stripe-mock (.ci/services)"]
async fn a_failure_reported_by_webhook_fails_the_order() {
    let shop = shop().await;
    shop.front.fault(Fault::Processing);
    let order = shop.order("pm_card_visa").await;
    let payment = shop.payment_reaches(&order, "PROCESSING").await;
    let event = json!({
        "id": format!("evt_{}", Uuid::new_v4().simple()),
        "type": "payment_intent.payment_failed",
        "data": { "object": { "id": payment["providerReference"], "status": "requires_payment_method",
                              "last_payment_error": { "type": "card_error", "code": "card_declined",
                                                      "decline_code": "expired_card" } } },
    });
    assert_eq!(
        shop.deliver(&event, WEBHOOK_SECRET, now()).await.ok(200)["outcome"],
        "changed"
    );
    order_reaches(&shop.app.api, &shop.customer, &order, "PAYMENT_FAILED").await;
    assert_eq!(shop.payment(&order).await["failureReason"], "expired_card");
    shop.app.stop().await;
}

#[tokio::test]
#[ignore = "needs stripe-mock (.ci/services)"]
async fn a_partial_refund_through_stripe_becomes_payment_refunded() {
    let shop = shop().await;
    let order = shop.order("pm_card_visa").await;
    order_reaches(&shop.app.api, &shop.customer, &order, "PAID").await;
    let refund = shop
        .app
        .api
        .post(
            &format!("/api/orders/{order}/refunds"),
            Some(&shop.admin),
            &json!({ "amount": 700, "reason": "one mug chipped" }),
        )
        .await;
    let refund_id = refund.ok(202)["id"].as_str().unwrap().to_owned();
    let payment = payment_until(
        &shop.app.api,
        &shop.customer,
        &order,
        "had 700 refunded",
        |p| p["refundedAmount"] == 700,
    )
    .await;
    assert_eq!(payment["status"], "SUCCEEDED", "{payment}");
    let refunds = shop.front.refunds();
    assert_eq!(refunds.len(), 1);
    assert_eq!(
        (
            refunds[0]["amount"].as_i64(),
            refunds[0]["payment_intent"].as_str()
        ),
        (Some(700), payment["providerReference"].as_str())
    );
    assert_eq!(payment["refunds"][0]["providerReference"], refunds[0]["id"]);
    let keys: Vec<_> = shop
        .front
        .seen()
        .into_iter()
        .filter(|s| s.path == "/v1/refunds")
        .filter_map(|s| s.idempotency_key)
        .collect();
    assert_eq!(keys, [format!("oxcart-refund:{refund_id}")]);
    assert_eq!(shop.events(&order, "payment.refunded").await, 1);
    shop.app.stop().await;
}
