//! A thin client for the oxcart HTTP API, with the checks most API tests repeat.

use std::net::SocketAddr;

use reqwest::{Method, StatusCode, header::HeaderMap};
use serde_json::{Value, json};
use uuid::Uuid;

pub const PASSWORD: &str = "correct horse battery staple";

#[derive(Clone, Debug)]
pub struct Api {
    base: String,
    http: reqwest::Client,
}

/// A response, with its body parsed as JSON when it is JSON.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Reply {
    pub fn content_type(&self) -> &str {
        self.headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    /// Asserts the reply is a problem document with `status`, and returns it.
    pub fn problem(&self, status: u16) -> &Value {
        assert_eq!(
            self.status.as_u16(),
            status,
            "unexpected status; body: {}",
            self.text
        );
        assert_eq!(
            self.content_type(),
            "application/problem+json",
            "body: {}",
            self.text
        );
        assert_eq!(self.body["status"], status, "body: {}", self.text);
        assert!(
            self.body["type"]
                .as_str()
                .is_some_and(|t| t.starts_with("/docs#problem-")),
            "{}",
            self.text
        );
        assert!(self.body["title"].is_string(), "{}", self.text);
        &self.body
    }

    /// Asserts a problem whose `errors` name the body field at `pointer`.
    pub fn problem_at(&self, status: u16, pointer: &str) -> &Value {
        let body = self.problem(status);
        let errors = body["errors"]
            .as_array()
            .unwrap_or_else(|| panic!("no errors member: {}", self.text));
        assert!(
            errors.iter().any(|e| e["pointer"] == pointer),
            "no error at {pointer}: {}",
            self.text
        );
        body
    }

    /// Asserts a problem whose `errors` name the parameter or header `name`.
    pub fn problem_naming(&self, status: u16, name: &str) -> &Value {
        let body = self.problem(status);
        let errors = body["errors"]
            .as_array()
            .unwrap_or_else(|| panic!("no errors member: {}", self.text));
        assert!(
            errors
                .iter()
                .any(|e| e["parameter"] == name || e["header"] == name),
            "no error naming {name}: {}",
            self.text
        );
        body
    }

    pub fn ok(&self, status: u16) -> &Value {
        assert_eq!(
            self.status.as_u16(),
            status,
            "unexpected status; body: {}",
            self.text
        );
        &self.body
    }
}

impl Api {
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            base: format!("http://{addr}"),
            http: reqwest::Client::new(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.http
    }

    pub async fn send(&self, request: reqwest::RequestBuilder) -> Reply {
        let response = request.send().await.expect("request sent");
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.expect("body read");
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            body,
            text,
        }
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Reply {
        let mut request = self.http.request(method, self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        self.send(request).await
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        self.call(Method::GET, path, token, None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: &Value) -> Reply {
        self.call(Method::POST, path, token, Some(body)).await
    }

    pub async fn register(&self, email: &str, password: &str) -> Reply {
        self.post(
            "/api/users",
            None,
            &json!({ "email": email, "password": password, "name": "Test User" }),
        )
        .await
    }

    /// `POST /api/auth/token`, whatever it answers.
    pub async fn sign_in(&self, email: &str, password: &str) -> Reply {
        self.post(
            "/api/auth/token",
            None,
            &json!({ "email": email, "password": password }),
        )
        .await
    }

    pub async fn token(&self, email: &str, password: &str) -> String {
        let reply = self.sign_in(email, password).await;
        reply.ok(200)["accessToken"]
            .as_str()
            .expect("accessToken")
            .to_owned()
    }

    /// Registers a fresh customer and returns its token and id.
    pub async fn customer(&self) -> (String, Uuid) {
        let email = format!("customer-{}@example.com", Uuid::new_v4().simple());
        let user = self.register(&email, PASSWORD).await;
        let id = user.ok(201)["id"]
            .as_str()
            .expect("id")
            .parse()
            .expect("uuid");
        (self.token(&email, PASSWORD).await, id)
    }

    /// Creates a product as `admin` and returns its id.
    pub async fn product(
        &self,
        admin: &str,
        name: &str,
        price: i64,
        currency: &str,
        stock: i64,
    ) -> Uuid {
        let sku = format!("SKU-{}", Uuid::new_v4().simple());
        let body = json!({ "sku": sku, "name": name, "description": "", "price": price, "currency": currency, "stock": stock });
        let reply = self.post("/api/products", Some(admin), &body).await;
        reply.ok(201)["id"]
            .as_str()
            .expect("id")
            .parse()
            .expect("uuid")
    }

    pub async fn place_order(&self, token: &str, items: &[(Uuid, u32)]) -> Reply {
        self.post("/api/orders", Some(token), &order_body(items))
            .await
    }
}

/// A valid order request for `items`.
pub fn order_body(items: &[(Uuid, u32)]) -> Value {
    json!({
        "items": items.iter().map(|(id, qty)| json!({ "productId": id, "quantity": qty })).collect::<Vec<_>>(),
        "shippingAddress": {
            "name": "Ada Lovelace",
            "line1": "12 St James's Square",
            "city": "London",
            "postalCode": "SW1Y 4JH",
            "country": "GB"
        },
        "paymentToken": "tok_success"
    })
}
