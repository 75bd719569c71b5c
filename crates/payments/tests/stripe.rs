//! The Stripe adapter on its own, against stripe-mock behind the test front
//! (`oxcart_test_util::stripe`): what each call sends and what it makes of the answer.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use oxcart_payments::provider::{Charge, ChargeOutcome, PaymentProvider, Refund};
use oxcart_payments::stripe::{SetupError, Stripe, StripeConfig};
use oxcart_platform::tls::TrustedCas;
use oxcart_test_util::stripe::{Fault, StripeFront, mock_url};
use secrecy::SecretString;

async fn stripe() -> (Stripe, StripeFront) {
    let mock = mock_url().expect("OXCART_TEST_STRIPE_MOCK (.ci/services starts stripe-mock)");
    let front = StripeFront::start(&mock).await;
    let config = StripeConfig {
        api_key: Some(SecretString::from("sk_test_oxcart")),
        api_base: front.url.clone(),
        timeout: Duration::from_millis(500),
        retry_delay: Duration::from_millis(10),
        max_retries: 2,
        ..StripeConfig::default()
    };
    (Stripe::new(&config, &TrustedCas::public()).unwrap(), front)
}

fn charge(key: &str, token: &str) -> Charge {
    Charge {
        idempotency_key: key.to_owned(),
        amount: 2000,
        currency: "EUR".to_owned(),
        token: Some(token.to_owned()),
    }
}

#[tokio::test]
#[ignore = "needs stripe-mock (.ci/services)"]
async fn partial_refunds_add_up_to_the_charge_and_no_further() {
    let (stripe, front) = stripe().await;
    let ChargeOutcome::Approved { reference } = stripe
        .charge(&charge("order-1", "pm_card_visa"))
        .await
        .unwrap()
    else {
        panic!("pm_card_visa is approved");
    };
    let refund = |key: &str, amount| Refund {
        idempotency_key: key.to_owned(),
        charge_reference: reference.clone(),
        amount,
        currency: "EUR".to_owned(),
    };
    let first = stripe.refund(&refund("refund:1", 500)).await.unwrap();
    assert!(first.starts_with("re_"), "{first}");
    // The same key again is the same refund, not a second one.
    assert_eq!(
        stripe.refund(&refund("refund:1", 500)).await.unwrap(),
        first
    );
    stripe.refund(&refund("refund:2", 1500)).await.unwrap();
    let amounts: Vec<_> = front
        .refunds()
        .iter()
        .map(|r| r["amount"].as_i64().unwrap())
        .collect();
    assert_eq!(amounts, [500, 1500]);
    // Nothing is left: Stripe refuses, and the adapter says why, without retrying.
    let error = stripe
        .refund(&refund("refund:3", 1))
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("already been refunded"), "{error}");
    assert_eq!(front.refunds().len(), 2);
    // Every refund request carried its own key, prefixed.
    let keys: Vec<_> = front
        .seen()
        .into_iter()
        .filter(|s| s.path == "/v1/refunds")
        .filter_map(|s| s.idempotency_key)
        .collect();
    assert_eq!(
        keys,
        [
            "oxcart-refund:1",
            "oxcart-refund:1",
            "oxcart-refund:2",
            "oxcart-refund:3"
        ]
    );
}

#[tokio::test]
#[ignore = "needs stripe-mock (.ci/services)"]
async fn declines_carry_stripes_code_and_a_missing_method_is_declined_without_a_call() {
    let (stripe, front) = stripe().await;
    let declined = stripe
        .charge(&charge("order-2", "pm_card_chargeDeclined"))
        .await
        .unwrap();
    assert_eq!(
        declined,
        ChargeOutcome::Declined {
            code: "generic_decline".into()
        }
    );
    let none = Charge {
        token: None,
        ..charge("order-3", "")
    };
    assert_eq!(
        stripe.charge(&none).await.unwrap(),
        ChargeOutcome::Declined {
            code: "no_payment_method".into()
        }
    );
    assert_eq!(
        front.seen().len(),
        1,
        "no request for a charge without a method"
    );
    // What was sent, as Stripe's API names it.
    let sent = &front.seen()[0].form;
    let value = |name: &str| {
        sent.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(value("amount"), Some("2000"));
    assert_eq!(value("currency"), Some("eur"));
    assert_eq!(value("confirm"), Some("true"));
    assert_eq!(value("error_on_requires_action"), Some("true"));
}

#[tokio::test]
#[ignore = "needs stripe-mock (.ci/services)"]
async fn an_outage_longer_than_the_retries_is_unavailable_and_retried_later() {
    let (stripe, front) = stripe().await;
    for _ in 0..3 {
        front.fault(Fault::Status(503));
    }
    let error = stripe
        .charge(&charge("order-4", "pm_card_visa"))
        .await
        .unwrap_err();
    assert!(
        error.is::<oxcart_payments::provider::Unavailable>(),
        "{error}"
    );
    assert!(front.intents().is_empty());
    // The consumer's retry, later, with the same key: one PaymentIntent.
    let outcome = stripe
        .charge(&charge("order-4", "pm_card_visa"))
        .await
        .unwrap();
    assert!(
        matches!(outcome, ChargeOutcome::Approved { .. }),
        "{outcome:?}"
    );
    assert_eq!(front.intents().len(), 1);
}

#[test]
fn stripe_without_an_api_key_is_refused_naming_the_variable() {
    let error = Stripe::new(&StripeConfig::default(), &TrustedCas::public())
        .err()
        .unwrap();
    assert!(matches!(error, SetupError::NoApiKey));
    assert!(error.to_string().contains("STRIPE_API_KEY"), "{error}");
}

/// The front puts every request through stripe-mock first: a parameter Stripe's OpenAPI
/// document refuses is refused, so what the adapter sends is checked against Stripe's.
#[tokio::test]
#[ignore = "needs stripe-mock (.ci/services)"]
async fn requests_are_checked_against_stripes_openapi_document() {
    let (_, front) = stripe().await;
    let refused = reqwest::Client::new()
        .post(format!("{}/v1/payment_intents", front.url))
        .bearer_auth("sk_test_oxcart")
        .form(&[("amount", "twenty"), ("currency", "eur")])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    let body: serde_json::Value = refused.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("amount"), "{body}");
    assert!(front.intents().is_empty());
}
