//! The authorization matrix: every operation of the OpenAPI document, called by an
//! anonymous client, by the customer who owns the resource, by another customer and by
//! an admin, each answered with the status its rule states. The operations are read
//! from the served document, so a route added without a rule here fails the test, and so
//! does a rule for a route that is gone.
//!
//! The callers go in the order anonymous, other customer, owner, admin, on the same
//! resources, so a rule for a change states what each sees after the ones before: the
//! owner cancels the order, and the admin then finds it cancelled already (409).

use std::collections::BTreeSet;

use oxcart_test_util::api::{Api, PASSWORD, Reply, order_body};
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{TestApp, order_reaches};

/// Who calls.
#[derive(Debug, Clone, Copy)]
enum Who {
    Anonymous,
    Other,
    Owner,
    Admin,
}

const CALLERS: [Who; 4] = [Who::Anonymous, Who::Other, Who::Owner, Who::Admin];

/// The resources the calls address, and the callers' tokens.
struct Shop {
    owner: String,
    owner_id: Uuid,
    other: String,
    admin: String,
    product: Uuid,
    /// The owner's paid order: shipped and delivered by the admin along the way.
    paid: Uuid,
    /// The owner's order that gets cancelled.
    to_cancel: Uuid,
    /// The owner's order cancelled after payment: it has a credit note.
    refunded: Uuid,
    /// An account signed in only by the matrix's sign-in row.
    signer: String,
}

/// One operation's rule: the request each caller makes, and the status each gets, in
/// the order of [`CALLERS`].
struct Rule {
    method: &'static str,
    route: &'static str,
    expect: [u16; 4],
}

const fn rule(method: &'static str, route: &'static str, expect: [u16; 4]) -> Rule {
    Rule {
        method,
        route,
        expect,
    }
}

/// Every operation, with what anonymous, another customer, the owner and an admin get.
const RULES: &[Rule] = &[
    rule("POST", "/api/users", [201, 201, 201, 201]),
    rule("POST", "/api/auth/token", [200, 200, 200, 200]),
    // Possession of a refresh token is the authorization: a made-up one is refused to all.
    rule("POST", "/api/auth/refresh", [401, 401, 401, 401]),
    rule("POST", "/api/auth/sign-out", [204, 204, 204, 204]),
    // Answered alike for every address, account or not, and whoever asks.
    rule("POST", "/api/auth/password-reset", [202, 202, 202, 202]),
    // Possession of the e-mailed code is the authorization: a made-up one is refused.
    rule(
        "POST",
        "/api/auth/password-reset/confirm",
        [422, 422, 422, 422],
    ),
    rule("GET", "/api/users/me", [401, 200, 200, 200]),
    // With a wrong current password: authenticated callers get as far as checking it.
    rule("POST", "/api/users/me/password", [401, 422, 422, 422]),
    rule("GET", "/api/users/{id}", [401, 404, 200, 200]),
    rule("GET", "/.well-known/jwks.json", [200, 200, 200, 200]),
    rule("GET", "/api/products", [200, 200, 200, 200]),
    rule("POST", "/api/products", [401, 403, 403, 201]),
    rule("GET", "/api/products/{id}", [200, 200, 200, 200]),
    rule("PATCH", "/api/products/{id}", [401, 403, 403, 200]),
    rule("GET", "/api/orders", [401, 200, 200, 200]),
    rule("POST", "/api/orders", [401, 201, 201, 201]),
    rule("GET", "/api/orders/{id}", [401, 404, 200, 200]),
    rule("POST", "/api/orders/{id}/cancel", [401, 404, 200, 409]),
    rule("POST", "/api/orders/{id}/ship", [401, 403, 403, 200]),
    rule("POST", "/api/orders/{id}/deliver", [401, 403, 403, 200]),
    rule("POST", "/api/orders/{id}/refunds", [401, 403, 403, 202]),
    rule("GET", "/api/orders/{id}/events", [401, 404, 200, 200]),
    // Filtered, not refused: another customer's query finds nothing (checked below).
    rule("GET", "/api/payments", [401, 200, 200, 200]),
    // Stripe's signature is the authorization, whoever calls; this app charges through
    // the simulation, so there is no webhook for anyone (signed deliveries: `stripe.rs`).
    rule(
        "POST",
        "/api/payments/webhooks/stripe",
        [404, 404, 404, 404],
    ),
    rule("GET", "/api/invoices/{orderId}", [401, 404, 200, 200]),
    rule(
        "GET",
        "/api/invoices/{orderId}/credit-note",
        [401, 404, 200, 200],
    ),
    // A cancellation's refund has the order's id.
    rule(
        "GET",
        "/api/invoices/{orderId}/credit-notes/{refundId}",
        [401, 404, 200, 200],
    ),
    rule("GET", "/api/analytics/summary", [401, 403, 403, 200]),
    // Admins only; a public URL the test cannot reach, but registering it does not call it.
    rule("POST", "/api/webhooks", [401, 403, 403, 201]),
    rule("GET", "/api/webhooks", [401, 403, 403, 200]),
    rule("GET", "/api/webhooks/{id}/deliveries", [401, 403, 403, 404]),
    rule("DELETE", "/api/webhooks/{id}", [401, 403, 403, 404]),
];

impl Shop {
    async fn set_up(app: &TestApp) -> Self {
        let api = &app.api;
        let admin = app.admin().await;
        let (owner, owner_id) = api.customer().await;
        let (other, _) = api.customer().await;
        let signer = format!("signer-{}@example.com", Uuid::new_v4().simple());
        api.register(&signer, PASSWORD).await.ok(201);
        let product = api.product(&admin, "Mug", 990, "EUR", 1000).await;
        let order = |api: &Api| {
            let api = api.clone();
            let owner = owner.clone();
            async move {
                let reply = api.place_order(&owner, &[(product, 1)]).await;
                let id: Uuid = reply.ok(201)["id"].as_str().unwrap().parse().unwrap();
                order_reaches(&api, &owner, &id.to_string(), "PAID").await;
                id
            }
        };
        let paid = order(api).await;
        let to_cancel = order(api).await;
        let refunded = order(api).await;
        api.post(
            &format!("/api/orders/{refunded}/cancel"),
            Some(&owner),
            &json!({}),
        )
        .await
        .ok(200);
        // The credit note follows the refund.
        for _ in 0..200 {
            let note = api
                .get(
                    &format!("/api/invoices/{refunded}/credit-note"),
                    Some(&owner),
                )
                .await;
            if note.status == 200 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        Self {
            owner,
            owner_id,
            other,
            admin,
            product,
            paid,
            to_cancel,
            refunded,
            signer,
        }
    }

    fn token(&self, who: Who) -> Option<&str> {
        match who {
            Who::Anonymous => None,
            Who::Other => Some(&self.other),
            Who::Owner => Some(&self.owner),
            Who::Admin => Some(&self.admin),
        }
    }

    /// The path `rule` is called on, with its parameters filled in.
    fn path(&self, rule: &Rule) -> String {
        let order = match rule.route {
            "/api/orders/{id}/cancel" => self.to_cancel,
            "/api/invoices/{orderId}/credit-note"
            | "/api/invoices/{orderId}/credit-notes/{refundId}" => self.refunded,
            _ => self.paid,
        };
        let id = match rule.route {
            "/api/users/{id}" => self.owner_id,
            route if route.starts_with("/api/products/") => self.product,
            _ => order,
        };
        let path = rule
            .route
            .replace("{id}", &id.to_string())
            .replace("{orderId}", &order.to_string())
            .replace("{refundId}", &order.to_string());
        match rule.route {
            "/api/payments" => format!("{path}?orderId={}", self.paid),
            _ => path,
        }
    }

    /// A body the operation accepts, so that what decides the answer is who calls.
    fn body(&self, rule: &Rule) -> Option<Value> {
        let unique = Uuid::new_v4().simple().to_string();
        Some(match (rule.method, rule.route) {
            ("POST", "/api/users") => {
                json!({ "email": format!("new-{unique}@example.com"), "password": PASSWORD })
            }
            ("POST", "/api/auth/token") => json!({ "email": self.signer, "password": PASSWORD }),
            ("POST", "/api/auth/refresh" | "/api/auth/sign-out") => {
                json!({ "refreshToken": "made-up" })
            }
            ("POST", "/api/auth/password-reset") => {
                json!({ "email": format!("reset-{unique}@example.com") })
            }
            ("POST", "/api/auth/password-reset/confirm") => {
                json!({ "token": "made-up", "newPassword": "a new passphrase" })
            }
            ("POST", "/api/users/me/password") => {
                json!({ "currentPassword": "not the password", "newPassword": "a new passphrase" })
            }
            ("POST", "/api/products") => json!({
                "sku": format!("SKU-{unique}"), "name": "Cup", "description": "",
                "price": 500, "currency": "EUR", "stock": 5
            }),
            ("PATCH", _) => json!({ "name": "Renamed mug" }),
            ("POST", "/api/orders") => order_body(&[(self.product, 1)]),
            ("POST", "/api/orders/{id}/cancel") => json!({ "reason": "changed my mind" }),
            ("POST", "/api/orders/{id}/refunds") => json!({ "amount": 100, "reason": "goodwill" }),
            ("POST", "/api/webhooks") => {
                json!({ "url": "https://93.184.216.34/hook", "eventTypes": ["order.paid"] })
            }
            _ => return None,
        })
    }
}

async fn call(
    api: &Api,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> Reply {
    let method = Method::from_bytes(method.as_bytes()).unwrap();
    api.call(method, path, token, body).await
}

/// The operations the served document lists: (method, route).
async fn operations(api: &Api) -> BTreeSet<(String, String)> {
    let doc = api.get("/openapi.json", None).await;
    let mut operations = BTreeSet::new();
    for (route, item) in doc.ok(200)["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if ["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                operations.insert((method.to_uppercase(), route.clone()));
            }
        }
    }
    operations
}

#[tokio::test]
async fn every_operation_answers_each_kind_of_caller_as_its_rule_says() {
    // The matrix is about who may do what, not about how often.
    let app = TestApp::spawn_with(|config| {
        config.rate_limit.sign_in_per_address = 0;
        config.rate_limit.requests_per_second = 0;
    })
    .await;
    let api = &app.api;

    let served = operations(api).await;
    let ruled: BTreeSet<(String, String)> = RULES
        .iter()
        .map(|r| (r.method.to_owned(), r.route.to_owned()))
        .collect();
    let unruled: Vec<_> = served.difference(&ruled).collect();
    let gone: Vec<_> = ruled.difference(&served).collect();
    assert!(
        unruled.is_empty() && gone.is_empty(),
        "operations without a rule: {unruled:?}; rules for no operation: {gone:?}"
    );

    let shop = Shop::set_up(&app).await;
    let mut wrong = Vec::new();
    for rule in RULES {
        let path = shop.path(rule);
        for (who, expected) in CALLERS.into_iter().zip(rule.expect) {
            let body = shop.body(rule);
            let reply = call(api, rule.method, &path, shop.token(who), body.as_ref()).await;
            if reply.status != expected {
                wrong.push(format!(
                    "{} {} as {who:?}: {} (expected {expected}) {}",
                    rule.method,
                    rule.route,
                    reply.status.as_u16(),
                    reply.text.chars().take(200).collect::<String>()
                ));
            }
            if let (Who::Other, "/api/payments") = (who, rule.route) {
                assert_eq!(
                    reply.body["items"],
                    json!([]),
                    "another customer's payments"
                );
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    app.stop().await;
}
