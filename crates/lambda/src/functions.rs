//! The four functions, wired from their environment: what each binary in `src/bin` runs,
//! and what the tests run against moto.
//!
//! | function | trigger | reads | writes |
//! | --- | --- | --- | --- |
//! | `create-order` | `POST /api/orders` | events table, the catalog over HTTP | events table |
//! | `get-order` | `GET /api/orders/{id}` | orders table, events table | — |
//! | `relay` | the events table's stream | events table, state table | the queue, state table |
//! | `process-order` | the queue | events table, state table | events table, orders table, state table |
//!
//! Every table and queue is named by a variable (set by `deploy/serverless/terraform`);
//! a function checks at start-up that the ones it needs are there, so a misconfigured
//! function fails its init, visibly, instead of its first request.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::{Extension, Router};
use figment::Figment;
use figment::providers::Serialized;
use oxcart_dynamodb::{DynamoCheckpoints, DynamoEventStore, SdkConfig};
use oxcart_events::bus::topics;
use oxcart_events::consumer::Handler;
use oxcart_events::store::BoxError;
use oxcart_orders::domain::ProductSnapshot;
use oxcart_orders::remote::RemoteCatalog;
use oxcart_orders::{OrdersConfig, OrdersService, ProductCatalog, ReadSide};
use oxcart_payments::PaymentsConfig;
use oxcart_platform::auth::TokenVerifier;
use oxcart_platform::http::client::ServiceClient;
use oxcart_platform::http::{self, HttpConfig};
use oxcart_platform::metrics::Metrics;
use oxcart_platform::tls::TrustedCas;
use oxcart_sqs::{Queue, SqsRelay};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use uuid::Uuid;

use crate::ledger::DynamoLedger;
use crate::views::{DynamoOrderViews, OrderViewProjection};

/// The relay's name for the one queue every worker handler reads.
pub const QUEUE_GROUP: &str = "process-order";

/// The functions' settings, from the variables Terraform sets: the tables and queue it
/// made, and the sections of the server's own configuration the functions use, by the
/// server's names (`OXCART_ORDERS__READ_WAIT=2s`) and from the same structs, so the
/// defaults are the services' own.
#[derive(Debug, Clone, PartialEq)]
pub struct Env {
    /// `EVENTS_TABLE`: the event store.
    pub events_table: String,
    /// `STATE_TABLE`: checkpoints and the simulated provider's books.
    pub state_table: String,
    /// `ORDERS_TABLE`: the order read model.
    pub orders_table: String,
    /// `ORDER_QUEUE_URL`: the FIFO queue the relay feeds and `process-order` drains.
    pub queue_url: Option<String>,
    /// `CATALOG_CA_FILE`: a PEM file of CAs the catalog's `https://` certificate is
    /// verified against, besides the public roots.
    pub catalog_ca_file: Option<std::path::PathBuf>,
    /// `OXCART_JWT_PUBLIC_KEY`: the `x` of the token issuer's JSON Web Key.
    pub jwt_public_key: Option<String>,
    /// `OXCART_HTTP__REQUEST_TIMEOUT`: a request's budget, inside the function's timeout
    /// (default 9 s: a function's 10 s, less a second).
    pub http: HttpConfig,
    /// `OXCART_ORDERS__*`: the catalog `create-order` prices with (`CATALOG_URL`), how long
    /// a call to it and a read with `minVersion` may wait.
    pub orders: OrdersConfig,
    /// `OXCART_PAYMENTS__SLOW_DELAY`: how long `tok_slow` takes.
    pub payments: PaymentsConfig,
}

/// The server's sections, as far as the functions read them.
#[derive(Debug, Serialize, Deserialize)]
#[serde(default)]
struct Sections {
    http: HttpConfig,
    orders: OrdersConfig,
    payments: PaymentsConfig,
}

impl Default for Sections {
    fn default() -> Self {
        Self {
            http: HttpConfig {
                request_timeout: Duration::from_secs(9),
                ..HttpConfig::default()
            },
            orders: OrdersConfig::default(),
            payments: PaymentsConfig::default(),
        }
    }
}

/// Every variable [`Env`] reads: Terraform may set these and no others.
pub const VARIABLES: &[&str] = &[
    "EVENTS_TABLE",
    "STATE_TABLE",
    "ORDERS_TABLE",
    "ORDER_QUEUE_URL",
    "CATALOG_CA_FILE",
    "OXCART_JWT_PUBLIC_KEY",
    "OXCART_HTTP__REQUEST_TIMEOUT",
    "OXCART_ORDERS__CATALOG_URL",
    "OXCART_ORDERS__CATALOG_TIMEOUT",
    "OXCART_ORDERS__READ_WAIT",
    "OXCART_PAYMENTS__SLOW_DELAY",
    // Read by the logger, not by `Env`.
    "RUST_LOG",
];

impl Env {
    /// Reads the variables; a missing table name or a malformed value is an error that
    /// names the variable.
    pub fn from_env() -> Result<Self, BoxError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, BoxError> {
        let required = |name: &str| get(name).ok_or_else(|| format!("{name} is not set"));
        let mut sections = Figment::from(Serialized::defaults(Sections::default()));
        for name in VARIABLES.iter().filter(|name| name.contains("__")) {
            let Some(text) = get(name) else { continue };
            let key = name["OXCART_".len()..]
                .replace("__", ".")
                .to_ascii_lowercase();
            let value: figment::value::Value = text.parse().unwrap_or_else(|never| match never {});
            sections = sections.merge(Serialized::default(&key, value));
        }
        // A bad value is reported by the variable it came from: its key's path, as
        // `OXCART_<SECTION>__<KEY>` spells it.
        let sections: Sections = sections.extract().map_err(|error| {
            let name = format!("OXCART_{}", error.path.join("__").to_ascii_uppercase());
            format!("{name}: {}", error.kind)
        })?;
        Ok(Self {
            events_table: required("EVENTS_TABLE")?,
            state_table: required("STATE_TABLE")?,
            orders_table: required("ORDERS_TABLE")?,
            queue_url: get("ORDER_QUEUE_URL"),
            catalog_ca_file: get("CATALOG_CA_FILE").map(Into::into),
            jwt_public_key: get("OXCART_JWT_PUBLIC_KEY"),
            http: sections.http,
            orders: sections.orders,
            payments: sections.payments,
        })
    }
}

/// The clients and settings every function is built from.
#[derive(Clone)]
pub struct Functions {
    env: Env,
    dynamodb: aws_sdk_dynamodb::Client,
    sqs: aws_sdk_sqs::Client,
}

impl Functions {
    pub fn new(config: &SdkConfig, env: Env) -> Self {
        Self {
            env,
            dynamodb: aws_sdk_dynamodb::Client::new(config),
            sqs: aws_sdk_sqs::Client::new(config),
        }
    }

    /// From the Lambda environment: its region and role's credentials, and [`Env`].
    pub async fn from_env() -> Result<Self, BoxError> {
        let env = Env::from_env()?;
        Ok(Self::new(&oxcart_dynamodb::sdk_config(None).await, env))
    }

    fn store(&self) -> Arc<DynamoEventStore> {
        Arc::new(DynamoEventStore::new(
            self.dynamodb.clone(),
            &self.env.events_table,
        ))
    }

    fn views(&self) -> DynamoOrderViews {
        DynamoOrderViews::new(self.dynamodb.clone(), &self.env.orders_table)
    }

    /// The orders service on DynamoDB: its view is kept by the worker's projection
    /// handler, not by a runner of its own.
    fn orders(&self, catalog: Arc<dyn ProductCatalog>, metrics: &Metrics) -> OrdersService {
        oxcart_orders::build(
            oxcart_orders::Ports {
                store: self.store(),
                catalog,
                read_side: ReadSide::Views(Arc::new(self.views())),
            },
            &self.env.orders,
            metrics,
        )
    }

    /// The router an API function serves: `routes` in the server's own layers (request
    /// ids, problem answers for unknown routes, panics and timeouts, the caller's token).
    /// `metrics` is not scraped from a function (its figures are CloudWatch's and
    /// X-Ray's); it only serves the shared middleware.
    fn api(&self, routes: OpenApiRouter, metrics: &Metrics) -> Result<Router, BoxError> {
        let x = self
            .env
            .jwt_public_key
            .as_deref()
            .ok_or("OXCART_JWT_PUBLIC_KEY is not set")?;
        let verifier =
            TokenVerifier::from_jwk_x(x).map_err(|e| format!("OXCART_JWT_PUBLIC_KEY: {e}"))?;
        let (router, _) = routes.split_for_parts();
        // No rate limits here: a function's memory is not shared with its other instances,
        // so API Gateway's throttling (deploy/serverless) is the limit.
        Ok(http::finish(
            router.layer(Extension(verifier)),
            &self.env.http,
            metrics,
            None,
        )?)
    }

    /// `create-order`: `POST /api/orders`, priced by the catalog at
    /// `OXCART_ORDERS__CATALOG_URL`, which is reached once here: a certificate refused
    /// fails the function's init.
    pub async fn create_order(&self) -> Result<Router, BoxError> {
        const URL: &str = "OXCART_ORDERS__CATALOG_URL";
        let config = &self.env.orders;
        let url = config
            .catalog_url
            .as_deref()
            .ok_or_else(|| format!("{URL} is not set"))?;
        let cas = TrustedCas::from_optional(self.env.catalog_ca_file.as_deref())
            .map_err(|e| format!("CATALOG_CA_FILE: {e}"))?;
        let client = ServiceClient::new(url, config.catalog_timeout, &cas)
            .map_err(|e| format!("{URL}: {e}"))?;
        client.check().await.map_err(|e| format!("{URL}: {e}"))?;
        let metrics = Metrics::new();
        let orders = self.orders(Arc::new(RemoteCatalog::new(client)), &metrics);
        self.api(orders.create_routes(), &metrics)
    }

    /// `get-order`: `GET /api/orders/{id}`, from the orders table.
    pub fn get_order(&self) -> Result<Router, BoxError> {
        let metrics = Metrics::new();
        let orders = self.orders(Arc::new(NoCatalog), &metrics);
        self.api(orders.get_routes(), &metrics)
    }

    /// `relay`: the log to the queue, from the state table's checkpoint.
    pub fn relay(&self) -> Result<SqsRelay, BoxError> {
        let url = self
            .env
            .queue_url
            .clone()
            .ok_or("ORDER_QUEUE_URL is not set")?;
        Ok(SqsRelay::new(
            self.store(),
            Arc::new(DynamoCheckpoints::new(
                self.dynamodb.clone(),
                &self.env.state_table,
            )),
            self.sqs.clone(),
            vec![Queue {
                group: QUEUE_GROUP.into(),
                url,
                topics: vec![topics::ORDERS, topics::PAYMENTS],
            }],
        ))
    }

    /// `process-order`: the handlers each message of the queue goes through. One queue
    /// serves them all, so a message one of them fails is delivered to all again; each
    /// applies an event at most once in effect, which makes that harmless.
    pub fn process_order(&self) -> Vec<Arc<dyn Handler>> {
        let store = self.store();
        let ledger = DynamoLedger::new(self.dynamodb.clone(), &self.env.state_table);
        let payments = oxcart_payments::build_event_sourced(
            store.clone(),
            Arc::new(ledger),
            &self.env.payments,
        );
        let orders = self.orders(Arc::new(NoCatalog), &Metrics::new());
        let mut handlers: Vec<Arc<dyn Handler>> =
            vec![Arc::new(OrderViewProjection::new(store, self.views()))];
        handlers.extend(payments.handlers);
        handlers.push(orders.saga());
        handlers
    }
}

/// The catalog port of functions that never place an order (the saga and `get-order`
/// only move and read existing ones).
struct NoCatalog;

#[async_trait]
impl ProductCatalog for NoCatalog {
    async fn snapshots(&self, _ids: &[Uuid]) -> Result<Vec<ProductSnapshot>, BoxError> {
        Err("this function does not price orders".into())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::HashMap;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Result<Env, BoxError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Env::from_lookup(|name| {
            assert!(VARIABLES.contains(&name), "{name} is not in VARIABLES");
            map.get(name).cloned()
        })
    }

    const TABLES: [(&str, &str); 3] = [
        ("EVENTS_TABLE", "e"),
        ("STATE_TABLE", "s"),
        ("ORDERS_TABLE", "o"),
    ];

    #[test]
    fn the_tables_are_required_and_the_rest_has_defaults() {
        let error = env(&TABLES[1..]).unwrap_err();
        assert_eq!(error.to_string(), "EVENTS_TABLE is not set");
        let env = env(&TABLES).unwrap();
        assert_eq!(env.http.request_timeout, Duration::from_secs(9));
        assert_eq!(env.queue_url, None);
    }

    /// The functions start from the defaults the server starts from, stated once by each
    /// service (they had drifted: the catalog's call timeout was 3 s here and 5 s there).
    #[test]
    fn the_defaults_are_the_services_own() {
        let env = env(&TABLES).unwrap();
        assert_eq!(env.orders, OrdersConfig::default());
        assert_eq!(env.payments, PaymentsConfig::default());
    }

    #[test]
    fn the_sections_read_the_servers_variables() {
        let mut pairs = TABLES.to_vec();
        pairs.extend([
            ("OXCART_ORDERS__READ_WAIT", "500ms"),
            ("OXCART_ORDERS__CATALOG_URL", "https://catalog.example"),
            ("OXCART_PAYMENTS__SLOW_DELAY", "50ms"),
            ("OXCART_HTTP__REQUEST_TIMEOUT", "4s"),
        ]);
        let env = env(&pairs).unwrap();
        assert_eq!(env.orders.read_wait, Duration::from_millis(500));
        assert_eq!(
            env.orders.catalog_url.as_deref(),
            Some("https://catalog.example")
        );
        assert_eq!(
            env.orders.catalog_timeout,
            OrdersConfig::default().catalog_timeout
        );
        assert_eq!(env.payments.slow_delay, Duration::from_millis(50));
        assert_eq!(env.http.request_timeout, Duration::from_secs(4));
    }

    #[test]
    fn a_malformed_duration_names_its_variable() {
        let mut pairs = TABLES.to_vec();
        pairs.push(("OXCART_ORDERS__READ_WAIT", "two seconds"));
        let error = env(&pairs).unwrap_err().to_string();
        assert!(
            error.starts_with("OXCART_ORDERS__READ_WAIT: invalid value"),
            "{error}"
        );
    }
}
