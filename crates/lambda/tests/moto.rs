//! The serverless order path against moto's DynamoDB and SQS, through the functions as
//! Lambda runs them:
//! - `create-order` and `get-order` get real API Gateway (HTTP API, payload 2.0) event
//!   JSON, through `lambda_http`'s own adapter (what `lambda_http::run` wraps the router
//!   in), and answer with the JSON Lambda would return to API Gateway;
//! - `relay` gets a real DynamoDB stream event;
//! - `process-order` gets real SQS event JSON, and what Lambda's event source mapping does
//!   with its answer (delete what did not fail; leave the rest for redelivery after the
//!   visibility timeout) is done here as Lambda does it.
//!
//! The functions are wired by `Functions` from the same variables Terraform sets. Orders
//! are priced by a real catalog service over HTTPS (a TLS front with the test CA's
//! certificate, trusted through `CATALOG_CA_FILE`), and tokens signed by a real key.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::future::IntoFuture as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use aws_lambda_events::event::dynamodb::Event as StreamEvent;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use axum::Router;
use chrono::Utc;
use lambda_http::request::LambdaRequest;
use lambda_http::{Adapter, Context, LambdaEvent, Service as _};
use oxcart_catalog::Catalog;
use oxcart_catalog::domain::{NewProduct, parse_currency};
use oxcart_dynamodb::{DynamoCheckpoints, DynamoEventStore, create_state_table, local_config};
use oxcart_events::EventStore;
use oxcart_events::consumer::Handler;
use oxcart_lambda::functions::{Env, Functions};
use oxcart_lambda::views::{DynamoOrderViews, create_orders_table};
use oxcart_lambda::{relay, worker};
use oxcart_orders::domain::Order;
use oxcart_orders::read_model::OrderViews as _;
use oxcart_platform::auth::{Role, SigningKey};
use oxcart_sqs::{Queue, QueueSpec, SqsRelay, create_queue};
use oxcart_test_util::moto::Moto;
use oxcart_test_util::services::{ca, other_ca};
use oxcart_test_util::tls_proxy::TlsProxy;
use serde_json::{Value, json};
use uuid::Uuid;

/// Visibility timeout of the test queue: short, so redelivery is quick to see.
const VISIBILITY: Duration = Duration::from_secs(2);
/// Receives before redrive moves a message to the dead-letter queue.
const MAX_RECEIVES: u32 = 3;
/// What Lambda does with the worker's answer.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Invocation {
    /// The function returned: the messages it did not report failed are deleted.
    Returns,
    /// The function ran but timed out before returning: nothing is deleted, and every
    /// message comes back after the visibility timeout (its effects already made).
    TimesOut,
}

/// What an API function answered, as API Gateway reads it.
struct Answer {
    status: u16,
    headers: HashMap<String, String>,
    body: Value,
}

struct World {
    _moto: Moto,
    _catalog: (tempfile::TempDir, TlsProxy),
    sqs: aws_sdk_sqs::Client,
    dynamodb: aws_sdk_dynamodb::Client,
    queue: String,
    dlq: String,
    store: DynamoEventStore,
    views: DynamoOrderViews,
    create_order: Router,
    get_order: Router,
    relay: SqsRelay,
    process_order: Vec<Arc<dyn Handler>>,
    key: SigningKey,
    product: Uuid,
    /// Messages the worker was handed a second time or later.
    redelivered: AtomicUsize,
}

/// The catalog service on a port of its own, with one product (12.50 EUR), behind TLS.
async fn catalog_service() -> ((tempfile::TempDir, TlsProxy), String, Uuid) {
    let (db, dir) = oxcart_test_util::sqlite::migrated().await;
    let catalog = Catalog::new(db);
    let product = catalog
        .create(NewProduct {
            sku: "MUG-01".into(),
            name: "Enamel mug".into(),
            description: String::new(),
            price: 1250,
            currency: parse_currency("EUR").unwrap(),
            tax_class: "standard".into(),
            stock: 1000,
        })
        .await
        .unwrap();
    let (router, _) = oxcart_catalog::http::router(catalog).split_for_parts();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy = TlsProxy::start(listener.local_addr().unwrap()).await;
    tokio::spawn(axum::serve(listener, router).into_future());
    let url = proxy.url();
    ((dir, proxy), url, product.id)
}

async fn world() -> World {
    let moto = Moto::start().await;
    let config = local_config(&moto.endpoint);
    let dynamodb = aws_sdk_dynamodb::Client::new(&config);
    let sqs = aws_sdk_sqs::Client::new(&config);
    let store = DynamoEventStore::new(dynamodb.clone(), "oxcart-events");
    store.create_table().await.unwrap();
    create_state_table(&dynamodb, "oxcart-state").await.unwrap();
    create_orders_table(&dynamodb, "oxcart-orders")
        .await
        .unwrap();
    let (queue, dlq) = create_queue(
        &sqs,
        &QueueSpec {
            name: "oxcart-process-order".into(),
            visibility_timeout_secs: VISIBILITY.as_secs() as u32,
            max_receive_count: Some(MAX_RECEIVES),
        },
    )
    .await
    .unwrap();
    let (catalog, catalog_url, product) = catalog_service().await;
    let key = SigningKey::generate().unwrap();
    let variables = HashMap::from([
        ("EVENTS_TABLE", "oxcart-events".to_owned()),
        ("STATE_TABLE", "oxcart-state".to_owned()),
        ("ORDERS_TABLE", "oxcart-orders".to_owned()),
        ("ORDER_QUEUE_URL", queue.clone()),
        ("OXCART_ORDERS__CATALOG_URL", catalog_url),
        ("CATALOG_CA_FILE", ca().display().to_string()),
        (
            "OXCART_JWT_PUBLIC_KEY",
            key.jwk()["x"].as_str().unwrap().to_owned(),
        ),
        ("OXCART_PAYMENTS__SLOW_DELAY", "50ms".to_owned()),
    ]);
    let env = Env::from_lookup(|name| variables.get(name).cloned()).unwrap();
    let functions = Functions::new(&config, env);
    World {
        _moto: moto,
        _catalog: catalog,
        sqs,
        dynamodb: dynamodb.clone(),
        queue,
        dlq: dlq.unwrap(),
        store,
        views: DynamoOrderViews::new(dynamodb, "oxcart-orders"),
        create_order: functions.create_order().await.unwrap(),
        get_order: functions.get_order().unwrap(),
        relay: functions.relay().unwrap(),
        process_order: functions.process_order(),
        key,
        product,
        redelivered: AtomicUsize::new(0),
    }
}

impl World {
    fn token(&self, user: Uuid) -> String {
        self.key
            .issuer(Duration::from_secs(600))
            .issue(user, Role::Customer, "ada@example.com", Utc::now())
            .unwrap()
            .token
    }

    /// Invokes an API function with the event API Gateway sends for this request.
    async fn invoke(
        function: &Router,
        (method, path): (&str, &str),
        headers: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Answer {
        let headers: serde_json::Map<String, Value> = headers
            .iter()
            .map(|(name, value)| ((*name).to_owned(), json!(value)))
            .chain([
                ("host".to_owned(), json!("api.example.com")),
                ("content-type".to_owned(), json!("application/json")),
            ])
            .collect();
        let (path, query) = path.split_once('?').unwrap_or((path, ""));
        let route = if path.starts_with("/api/orders/") {
            format!("{method} /api/orders/{{id}}")
        } else {
            format!("{method} {path}")
        };
        let event = json!({
            "version": "2.0",
            "routeKey": route,
            "rawPath": path,
            "rawQueryString": query,
            "headers": headers,
            "requestContext": {
                "accountId": "123456789012",
                "apiId": "oxcart",
                "domainName": "api.example.com",
                "domainPrefix": "api",
                "http": { "method": method, "path": path, "protocol": "HTTP/1.1",
                          "sourceIp": "192.0.2.1", "userAgent": "curl/8.5.0" },
                "requestId": Uuid::now_v7().to_string(),
                "routeKey": route,
                "stage": "$default",
                "time": "25/Nov/2026:10:00:00 +0000",
                "timeEpoch": 1_795_600_800_000_u64
            },
            "body": body.map(Value::to_string),
            "isBase64Encoded": false
        });
        let request: LambdaRequest = serde_json::from_value(event).unwrap();
        let mut adapter = Adapter::from(function.clone());
        std::future::poll_fn(|cx| adapter.poll_ready(cx))
            .await
            .unwrap();
        let response = adapter
            .call(LambdaEvent::new(request, Context::default()))
            .await
            .unwrap();
        // What goes back to API Gateway, read as it reads it.
        let response = serde_json::to_value(&response).unwrap();
        let text = response["body"].as_str().unwrap_or_default();
        Answer {
            status: u16::try_from(response["statusCode"].as_u64().unwrap()).unwrap(),
            headers: serde_json::from_value(response["headers"].clone()).unwrap(),
            body: serde_json::from_str(text).unwrap_or(Value::Null),
        }
    }

    async fn place(&self, user: Uuid, payment: &str, key: &str) -> Answer {
        let body = order(self.product, payment);
        let auth = format!("Bearer {}", self.token(user));
        Self::invoke(
            &self.create_order,
            ("POST", "/api/orders"),
            &[("authorization", &auth), ("idempotency-key", key)],
            Some(&body),
        )
        .await
    }

    /// `GET /api/orders/{id}`, with `query` (`?min_version=1`) when not empty.
    async fn get(&self, user: Uuid, id: &str, query: &str) -> Answer {
        let auth = format!("Bearer {}", self.token(user));
        Self::invoke(
            &self.get_order,
            ("GET", &format!("/api/orders/{id}{query}")),
            &[("authorization", &auth)],
            None,
        )
        .await
    }

    /// What the events table's stream hands the relay: an INSERT of a log item.
    async fn stream_fires(&self) -> u64 {
        let event: StreamEvent = serde_json::from_value(json!({
            "Records": [{
                "eventID": "1",
                "eventName": "INSERT",
                "eventVersion": "1.1",
                "eventSource": "aws:dynamodb",
                "awsRegion": "us-east-1",
                "dynamodb": {
                    "ApproximateCreationDateTime": 1_764_000_000,
                    "Keys": { "pk": { "S": "log" }, "sk": { "N": "1" } },
                    "NewImage": { "pk": { "S": "log" }, "sk": { "N": "1" }, "first": { "N": "1" } },
                    "SequenceNumber": "111",
                    "SizeBytes": 26,
                    "StreamViewType": "NEW_IMAGE"
                },
                "eventSourceARN": "arn:aws:dynamodb:us-east-1:123456789012:table/oxcart-events/stream/2026-11-25T00:00:00.000"
            }]
        }))
        .unwrap();
        relay::on_stream(&self.relay, &event).await.unwrap()
    }

    /// One poll of the event source mapping: receive a batch and invoke the worker with
    /// it as Lambda would. Answers with the batch's size and the worker's answer.
    async fn mapping_polls(&self, invocation: Invocation) -> (usize, SqsBatchResponse) {
        let received = self
            .sqs
            .receive_message()
            .queue_url(&self.queue)
            .max_number_of_messages(10)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        let messages = received.messages();
        let again = messages
            .iter()
            .filter(|m| {
                m.attributes()
                    .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                    .is_some_and(|n| n != "1")
            })
            .count();
        self.redelivered.fetch_add(again, Ordering::SeqCst);
        let records: Vec<_> = messages
            .iter()
            .map(|m| {
                let attributes: serde_json::Map<String, Value> = m
                    .attributes()
                    .map(|a| {
                        a.iter()
                            .map(|(k, v)| (k.as_str().to_owned(), json!(v)))
                            .collect()
                    })
                    .unwrap_or_default();
                json!({
                    "messageId": m.message_id(),
                    "receiptHandle": m.receipt_handle(),
                    "body": m.body(),
                    "attributes": attributes,
                    "messageAttributes": {},
                    "md5OfBody": m.md5_of_body(),
                    "eventSource": "aws:sqs",
                    "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:oxcart-process-order.fifo",
                    "awsRegion": "us-east-1"
                })
            })
            .collect();
        let event: SqsEvent = serde_json::from_value(json!({ "Records": records })).unwrap();
        let response = worker::process(&self.process_order, event).await;
        // The answer goes back to Lambda as JSON; read it back the same way.
        let response: SqsBatchResponse =
            serde_json::from_value(serde_json::to_value(&response).unwrap()).unwrap();
        if invocation == Invocation::TimesOut {
            return (messages.len(), response);
        }
        for message in messages {
            let failed = response
                .batch_item_failures
                .iter()
                .any(|f| Some(f.item_identifier.as_str()) == message.message_id());
            if !failed {
                self.sqs
                    .delete_message()
                    .queue_url(&self.queue)
                    .receipt_handle(message.receipt_handle().unwrap())
                    .send()
                    .await
                    .unwrap();
            }
        }
        (messages.len(), response)
    }

    async fn depth(&self, queue: &str) -> u64 {
        let attributes = self
            .sqs
            .get_queue_attributes()
            .queue_url(queue)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .unwrap()
            .attributes
            .unwrap_or_default();
        attributes.values().map(|v| v.parse::<u64>().unwrap()).sum()
    }

    async fn send_poison(&self, body: &str, group: &str, dedup: &str) {
        self.sqs
            .send_message()
            .queue_url(&self.queue)
            .message_body(body)
            .message_group_id(group)
            .message_deduplication_id(dedup)
            .send()
            .await
            .unwrap();
    }

    async fn dead_letters(&self) -> Vec<String> {
        let parked = self
            .sqs
            .receive_message()
            .queue_url(&self.dlq)
            .max_number_of_messages(10)
            .send()
            .await
            .unwrap();
        let mut bodies: Vec<String> = parked
            .messages()
            .iter()
            .filter_map(|m| m.body().map(str::to_owned))
            .collect();
        bodies.sort_unstable();
        bodies
    }

    /// The charges the provider booked, by idempotency key (the order id).
    async fn charges(&self) -> Vec<String> {
        let mut keys = Vec::new();
        let mut pages = self
            .dynamodb
            .scan()
            .table_name("oxcart-state")
            .filter_expression("sk = :operation AND kind = :charge")
            .expression_attribute_values(":operation", AttributeValue::S("operation".into()))
            .expression_attribute_values(":charge", AttributeValue::S("charge".into()))
            .into_paginator()
            .items()
            .send();
        while let Some(item) = pages.next().await {
            let item = item.unwrap();
            let pk = item["pk"].as_s().unwrap();
            keys.push(pk.trim_start_matches("provider#").to_owned());
        }
        keys
    }

    async fn event_types(&self, stream: Uuid) -> Vec<String> {
        self.store
            .read_stream(stream)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.event.event_type)
            .collect()
    }
}

/// A `POST /api/orders` body: two of `product`, paid with the test card `payment`.
fn order(product: Uuid, payment: &str) -> Value {
    json!({
        "items": [{ "productId": product, "quantity": 2 }],
        "shippingAddress": { "name": "Ada", "line1": "1 Road", "city": "London",
                             "postalCode": "N1", "country": "GB" },
        "paymentToken": payment,
    })
}

fn order_id(answer: &Answer) -> String {
    answer.body["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
#[ignore = "needs moto (OXCART_TEST_PYTHON); .ci/run provides it"]
async fn fifty_orders_end_paid_or_payment_failed_through_redelivery_and_poison() {
    let w = world().await;
    // Ten orders for each test card: approved, declined twice over, approved after one
    // outage (its first charge fails and the message is redelivered), approved slowly.
    let cards = [
        ("tok_success", "PAID"),
        ("tok_declined", "PAYMENT_FAILED"),
        ("tok_insufficient_funds", "PAYMENT_FAILED"),
        ("tok_transient", "PAID"),
        ("tok_slow", "PAID"),
    ];
    let mut placed = Vec::new();
    for n in 0..50 {
        let customer = Uuid::now_v7();
        let (card, expected) = cards[n % cards.len()];
        let key = format!("order-{n}");
        let answer = w.place(customer, card, &key).await;
        assert_eq!(answer.status, 201, "{}", answer.body);
        assert_eq!(answer.body["status"], "CREATED");
        assert_eq!(answer.body["totalAmount"], 2500, "priced by the catalog");
        let id = order_id(&answer);
        assert_eq!(answer.headers["location"], format!("/api/orders/{id}"));
        placed.push((customer, id, key, card, expected));
    }
    // A client retrying with its key gets the same order back, not a second one.
    for (customer, id, key, card, _) in &placed[..5] {
        let again = w.place(*customer, card, key).await;
        assert_eq!(again.status, 201);
        assert_eq!(&order_id(&again), id);
        assert_eq!(again.headers["idempotent-replayed"], "true");
    }
    // A message no handler can read, in a group of its own.
    w.send_poison("{not json", "poison", "poison-1").await;

    // The first worker invocation charges its batch but times out before it returns:
    // every message of it comes back after the visibility timeout.
    assert_eq!(w.stream_fires().await, 50);
    let (timed_out, _) = w.mapping_polls(Invocation::TimesOut).await;
    assert!(timed_out > 0);

    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let relayed = w.stream_fires().await;
        let (received, _) = w.mapping_polls(Invocation::Returns).await;
        if relayed == 0 && received == 0 && w.depth(&w.queue).await == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the queue did not drain: {} messages left",
            w.depth(&w.queue).await
        );
    }

    assert!(
        w.redelivered.load(Ordering::SeqCst) >= timed_out,
        "the timed-out batch was delivered again"
    );
    let mut outcomes = HashMap::new();
    for (customer, id, _, card, expected) in &placed {
        let answer = w.get(*customer, id, "").await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert_eq!(answer.body["status"], *expected, "order paid with {card}");
        *outcomes.entry(*expected).or_insert(0) += 1;
        let order: Uuid = id.parse().unwrap();
        let events = w.event_types(order).await;
        assert_eq!(events.len(), 2, "one outcome per order: {events:?}");
        let payment = w.event_types(oxcart_payments::payment_id(order)).await;
        assert_eq!(payment.len(), 1, "one payment outcome: {payment:?}");
        let view: Order = serde_json::from_value(answer.body.clone()).unwrap();
        assert_eq!(view.version, 2);
    }
    assert_eq!(
        outcomes,
        HashMap::from([("PAID", 30), ("PAYMENT_FAILED", 20)])
    );
    // One charge per order at the provider, redeliveries and retries included.
    let mut charges = w.charges().await;
    charges.sort_unstable();
    let mut ids: Vec<String> = placed.iter().map(|p| p.1.clone()).collect();
    ids.sort_unstable();
    assert_eq!(charges, ids);

    // The poison message comes back after each visibility timeout; after its last
    // receive the redrive policy parks it in the dead-letter queue.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while w.depth(&w.dlq).await < 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the poison message never reached the dead-letter queue"
        );
        tokio::time::sleep(VISIBILITY).await;
        w.mapping_polls(Invocation::Returns).await;
    }
    assert_eq!(w.depth(&w.queue).await, 0);
    assert_eq!(w.dead_letters().await, ["{not json"]);
}

#[tokio::test]
#[ignore = "needs moto (OXCART_TEST_PYTHON); .ci/run provides it"]
async fn the_api_functions_answer_as_the_server_does() {
    let w = world().await;
    let customer = Uuid::now_v7();
    let placed = w.place(customer, "tok_success", "k1").await;
    assert_eq!(placed.status, 201);
    let id = order_id(&placed);

    // Not yet projected: a plain read finds nothing; a read of the version just written
    // waits for it (OXCART_ORDERS__READ_WAIT), then says so.
    assert_eq!(w.get(customer, &id, "").await.status, 404);
    let early = w.get(customer, &id, "?min_version=1").await;
    assert_eq!(early.status, 503, "{}", early.body);
    assert_eq!(early.headers["content-type"], "application/problem+json");
    w.stream_fires().await;
    w.mapping_polls(Invocation::Returns).await;
    let read = w.get(customer, &id, "?min_version=1").await;
    assert_eq!(read.status, 200);
    assert_eq!(read.body["id"], id.as_str());
    assert_eq!(read.headers["etag"], "\"1\"");

    let auth = format!("Bearer {}", w.token(customer));
    // Someone else's order does not exist for them.
    assert_eq!(w.get(Uuid::now_v7(), &id, "").await.status, 404);
    // No token: 401 with the challenge.
    let anonymous = World::invoke(
        &w.get_order,
        ("GET", &format!("/api/orders/{id}")),
        &[],
        None,
    )
    .await;
    assert_eq!(anonymous.status, 401);
    assert!(anonymous.headers["www-authenticate"].starts_with("Bearer"));
    // Bad input: a problem document naming the field.
    let bad = World::invoke(
        &w.create_order,
        ("POST", "/api/orders"),
        &[("authorization", &auth)],
        Some(
            &json!({ "items": [{ "productId": w.product, "quantity": 1 }], "shippingAddress": {} }),
        ),
    )
    .await;
    assert_eq!(bad.status, 422, "{}", bad.body);
    assert_eq!(bad.headers["content-type"], "application/problem+json");
    assert_eq!(bad.body["errors"][0]["pointer"], "#/shippingAddress/name");
    // An unknown product: refused, nothing appended.
    let unknown = order(Uuid::now_v7(), "tok_success");
    let head = w.store.head().await.unwrap();
    let refused = World::invoke(
        &w.create_order,
        ("POST", "/api/orders"),
        &[("authorization", &auth)],
        Some(&unknown),
    )
    .await;
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert_eq!(w.store.head().await.unwrap(), head);
    // Each function serves its own route only.
    let elsewhere = World::invoke(
        &w.get_order,
        ("POST", "/api/orders"),
        &[("authorization", &auth)],
        Some(&unknown),
    )
    .await;
    assert_eq!(elsewhere.status, 404);
    assert_eq!(
        elsewhere.headers["content-type"],
        "application/problem+json"
    );
}

#[tokio::test]
#[ignore = "needs moto (OXCART_TEST_PYTHON); .ci/run provides it"]
async fn an_acknowledged_order_outlives_a_relay_that_cannot_reach_the_queue() {
    let w = world().await;
    let customer = Uuid::now_v7();
    let placed = w.place(customer, "tok_success", "k").await;
    assert_eq!(placed.status, 201);
    // The relay's invocation fails (here: its queue is gone); Lambda retries the stream
    // batch, and nothing has moved the checkpoint past the order.
    let broken = SqsRelay::new(
        Arc::new(w.store.clone()),
        Arc::new(DynamoCheckpoints::new(w.dynamodb.clone(), "oxcart-state")),
        w.sqs.clone(),
        vec![Queue {
            group: "process-order".into(),
            url: format!("{}-gone", w.queue),
            topics: vec![oxcart_events::bus::topics::ORDERS],
        }],
    );
    assert!(broken.catch_up().await.is_err());
    assert_eq!(w.depth(&w.queue).await, 0);
    assert_eq!(w.stream_fires().await, 1, "the retry relays the order");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        w.stream_fires().await;
        w.mapping_polls(Invocation::Returns).await;
        let answer = w.get(customer, &order_id(&placed), "").await;
        if answer.status == 200 && answer.body["status"] == "PAID" {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{}", answer.body);
    }
}

#[tokio::test]
#[ignore = "needs moto (OXCART_TEST_PYTHON); .ci/run provides it"]
async fn a_stale_view_never_overwrites_a_newer_one() {
    let w = world().await;
    let customer = Uuid::now_v7();
    let placed = w.place(customer, "tok_declined", "k").await;
    let id: Uuid = order_id(&placed).parse().unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while w.views.get_latest(id).await.unwrap().map(|o| o.version) != Some(2) {
        assert!(tokio::time::Instant::now() < deadline);
        w.stream_fires().await;
        w.mapping_polls(Invocation::Returns).await;
    }
    // A view of version 1 written late (a slow worker that folded before the payment
    // failed) must not win.
    let first: Order = serde_json::from_value(placed.body).unwrap();
    assert!(!w.views.put(&first).await.unwrap());
    let view = w.views.get_latest(id).await.unwrap().unwrap();
    assert_eq!(view.version, 2);
    assert_eq!(view.status.as_str(), "PAYMENT_FAILED");
}

#[tokio::test]
#[ignore = "needs moto (OXCART_TEST_PYTHON); .ci/run provides it"]
async fn a_poison_message_fails_alone_and_ends_in_the_dead_letter_queue() {
    let w = world().await;
    let poison_group = Uuid::now_v7().to_string();
    for (n, body) in ["{not json", "{\"eventType\": \"order.created\"}"]
        .iter()
        .enumerate()
    {
        w.send_poison(body, &poison_group, &format!("poison-{n}"))
            .await;
    }
    let placed = w.place(Uuid::now_v7(), "tok_success", "k").await;
    let id: Uuid = order_id(&placed).parse().unwrap();
    w.stream_fires().await;

    // First batch: both poison messages and the order's event. Only the poison ones are
    // reported (the second held back behind the first, its group being FIFO); the order
    // is projected and charged.
    let (received, response) = w.mapping_polls(Invocation::Returns).await;
    assert_eq!(received, 3);
    assert_eq!(response.batch_item_failures.len(), 2);
    assert!(w.views.get_latest(id).await.unwrap().is_some());
    assert_eq!(
        w.event_types(oxcart_payments::payment_id(id)).await,
        ["payment.succeeded"]
    );

    // SQS delivers them again after each visibility timeout; after the last receive the
    // redrive policy moves them to the dead-letter queue.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while w.depth(&w.dlq).await < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the poison messages never reached the dead-letter queue"
        );
        tokio::time::sleep(VISIBILITY).await;
        w.stream_fires().await;
        w.mapping_polls(Invocation::Returns).await;
    }
    assert_eq!(w.depth(&w.queue).await, 0);
    assert_eq!(
        w.dead_letters().await,
        ["{\"eventType\": \"order.created\"}", "{not json"]
    );
}

/// `create-order` trusts the catalog's certificate only through `CATALOG_CA_FILE`: with a
/// CA that did not sign it, the function fails its init, saying why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the test CA (.ci/services)"]
async fn a_catalog_certificate_from_another_ca_fails_the_init() {
    let (_catalog, url, _) = catalog_service().await;
    let variables = HashMap::from([
        ("EVENTS_TABLE", "oxcart-events".to_owned()),
        ("STATE_TABLE", "oxcart-state".to_owned()),
        ("ORDERS_TABLE", "oxcart-orders".to_owned()),
        ("OXCART_ORDERS__CATALOG_URL", url.clone()),
        ("CATALOG_CA_FILE", other_ca().display().to_string()),
    ]);
    let env = Env::from_lookup(|name| variables.get(name).cloned()).unwrap();
    let functions = Functions::new(&local_config("http://127.0.0.1:1"), env);
    let Err(error) = functions.create_order().await else {
        panic!("create-order started with a certificate it cannot verify");
    };
    let error = error.to_string();
    assert!(
        error.starts_with("OXCART_ORDERS__CATALOG_URL: ")
            && error.contains(&url)
            && error.contains("UnknownIssuer"),
        "{error}"
    );
}
