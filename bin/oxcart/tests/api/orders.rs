use oxcart_db as db;
use std::time::Duration;

use oxcart_test_util::api::order_body;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::TestApp;

/// An app with one EUR product in stock, an admin and a customer.
struct Shop {
    app: TestApp,
    admin: String,
    customer: String,
    customer_id: Uuid,
    mug: Uuid,
}

/// A shop without payments: orders stay CREATED (the saga waits for a charge), so these
/// tests see exactly the events they cause. The saga has its own tests (`saga.rs`).
async fn shop() -> Shop {
    shop_with(|c| c.services = "users,catalog,orders".parse().unwrap()).await
}

async fn shop_with(configure: impl FnOnce(&mut oxcart::config::Config)) -> Shop {
    let app = TestApp::spawn_with(configure).await;
    let admin = app.admin().await;
    let mug = app.api.product(&admin, "Enamel mug", 1450, "EUR", 25).await;
    let (customer, customer_id) = app.api.customer().await;
    Shop {
        app,
        admin,
        customer,
        customer_id,
        mug,
    }
}

fn id_of(body: &Value) -> Uuid {
    body["id"].as_str().unwrap().parse().unwrap()
}

#[tokio::test]
async fn placing_reading_listing_and_cancelling_an_order() {
    let s = shop().await;
    let api = &s.app.api;
    let placed = api.place_order(&s.customer, &[(s.mug, 2)]).await;
    let order = placed.ok(201).clone();
    assert_eq!(
        placed.headers["location"],
        format!("/api/orders/{}", order["id"].as_str().unwrap())
    );
    assert_eq!(placed.headers["etag"], "\"1\"");
    assert_eq!(order["status"], "CREATED");
    assert_eq!(order["customerId"], s.customer_id.to_string());
    assert_eq!(order["totalAmount"], 2900);
    assert_eq!(order["items"][0]["name"], "Enamel mug");
    assert_eq!(order["items"][0]["lineTotal"], 2900);
    assert_eq!(order["version"], 1);

    // The read model, once it has caught up, shows exactly what the command returned.
    let id = id_of(&order);
    let read = api
        .get(
            &format!("/api/orders/{id}?min_version=1"),
            Some(&s.customer),
        )
        .await;
    assert_eq!(read.ok(200), &order);

    let listed = api.get("/api/orders", Some(&s.customer)).await;
    assert_eq!(listed.ok(200)["items"].as_array().unwrap().len(), 1);
    assert_eq!(listed.body["items"][0]["id"], order["id"]);

    let cancelled = api
        .post(
            &format!("/api/orders/{id}/cancel"),
            Some(&s.customer),
            &json!({ "reason": "wrong size" }),
        )
        .await;
    assert_eq!(cancelled.ok(200)["status"], "CANCELLED");
    assert_eq!(cancelled.body["statusReason"], "wrong size");
    assert_eq!(cancelled.body["version"], 2);
    let read = api
        .get(
            &format!("/api/orders/{id}?min_version=2"),
            Some(&s.customer),
        )
        .await;
    assert_eq!(read.ok(200), &cancelled.body);

    let again = api
        .post(
            &format!("/api/orders/{id}/cancel"),
            Some(&s.customer),
            &json!({}),
        )
        .await;
    assert!(
        again.problem(409)["detail"]
            .as_str()
            .unwrap()
            .contains("CANCELLED")
    );

    let history = api
        .get(&format!("/api/orders/{id}/events"), Some(&s.customer))
        .await;
    let events = history.ok(200)["events"].as_array().unwrap();
    let types: Vec<_> = events
        .iter()
        .map(|e| e["eventType"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["order.created", "order.cancelled"]);
    assert_eq!(events[0]["orderId"], order["id"]);
    assert_eq!(events[1]["data"]["cancelledBy"], s.customer_id.to_string());
    s.app.stop().await;
}

#[tokio::test]
async fn prices_come_from_the_catalog_never_the_client() {
    let s = shop().await;
    let mut body = order_body(&[(s.mug, 1)]);
    body["items"][0]["price"] = json!(1);
    let reply = s
        .app
        .api
        .post("/api/orders", Some(&s.customer), &body)
        .await;
    reply.problem_at(422, "#/items/0/price");
    body["items"][0].as_object_mut().unwrap().remove("price");
    body["totalAmount"] = json!(1);
    s.app
        .api
        .post("/api/orders", Some(&s.customer), &body)
        .await
        .problem_at(422, "#/totalAmount");

    // A price change applies to later orders only.
    let patched = s
        .app
        .api
        .call(
            reqwest::Method::PATCH,
            &format!("/api/products/{}", s.mug),
            Some(&s.admin),
            Some(&json!({ "price": 2000 })),
        )
        .await;
    patched.ok(200);
    let order = s.app.api.place_order(&s.customer, &[(s.mug, 1)]).await;
    assert_eq!(order.ok(201)["totalAmount"], 2000);
}

#[tokio::test]
async fn an_idempotency_key_places_one_order() {
    let s = shop().await;
    let body = order_body(&[(s.mug, 3)]);
    let send = |key: &'static str, body: Value| {
        let api = s.app.api.clone();
        let token = s.customer.clone();
        async move {
            let request = api
                .client()
                .post(api.url("/api/orders"))
                .bearer_auth(token)
                .header("Idempotency-Key", key)
                .json(&body);
            api.send(request).await
        }
    };
    let first = send("order-attempt-1", body.clone()).await;
    let second = send("order-attempt-1", body.clone()).await;
    assert_eq!(first.ok(201), second.ok(201));
    assert!(first.headers.get("idempotent-replayed").is_none());
    assert_eq!(second.headers["idempotent-replayed"], "true");

    // Retries racing each other still place one order.
    let racing =
        futures::future::join_all((0..8).map(|_| send("order-attempt-2", body.clone()))).await;
    let ids: std::collections::HashSet<_> =
        racing.iter().map(|r| r.ok(201)["id"].clone()).collect();
    assert_eq!(ids.len(), 1);

    let mut different = body.clone();
    different["items"][0]["quantity"] = json!(4);
    send("order-attempt-1", different)
        .await
        .problem_naming(422, "idempotency-key");

    // The same key from another customer is that customer's own.
    let (other, _) = s.app.api.customer().await;
    let theirs = s
        .app
        .api
        .send(
            s.app
                .api
                .client()
                .post(s.app.api.url("/api/orders"))
                .bearer_auth(other)
                .header("Idempotency-Key", "order-attempt-1")
                .json(&body),
        )
        .await;
    assert_ne!(theirs.ok(201)["id"], first.body["id"]);

    let listed = s
        .app
        .api
        .get("/api/orders?limit=100", Some(&s.customer))
        .await;
    assert_eq!(listed.ok(200)["items"].as_array().unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn simultaneous_cancels_let_one_win() {
    let s = shop().await;
    for _ in 0..5 {
        let id = id_of(
            s.app
                .api
                .place_order(&s.customer, &[(s.mug, 1)])
                .await
                .ok(201),
        );
        let attempt = |token: String| {
            let api = s.app.api.clone();
            tokio::spawn(async move {
                api.post(
                    &format!("/api/orders/{id}/cancel"),
                    Some(&token),
                    &json!({}),
                )
                .await
            })
        };
        let replies =
            futures::future::join_all([attempt(s.customer.clone()), attempt(s.admin.clone())])
                .await;
        let mut statuses: Vec<u16> = replies
            .iter()
            .map(|r| r.as_ref().unwrap().status.as_u16())
            .collect();
        statuses.sort_unstable();
        assert_eq!(statuses, [200, 409]);
        let history = s
            .app
            .api
            .get(&format!("/api/orders/{id}/events"), Some(&s.admin))
            .await;
        let versions: Vec<_> = history.ok(200)["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["version"].as_u64().unwrap())
            .collect();
        assert_eq!(versions, [1, 2]);
    }
}

#[tokio::test]
async fn customers_see_only_their_own_orders_and_admins_see_all() {
    let s = shop().await;
    let api = &s.app.api;
    let mine = id_of(api.place_order(&s.customer, &[(s.mug, 1)]).await.ok(201));
    let (other, other_id) = api.customer().await;
    let theirs = id_of(api.place_order(&other, &[(s.mug, 1)]).await.ok(201));

    api.get(&format!("/api/orders/{theirs}"), Some(&s.customer))
        .await
        .problem(404);
    api.get(&format!("/api/orders/{theirs}/events"), Some(&s.customer))
        .await
        .problem(404);
    api.post(
        &format!("/api/orders/{theirs}/cancel"),
        Some(&s.customer),
        &json!({}),
    )
    .await
    .problem(404);
    api.get(
        &format!("/api/orders/{mine}?min_version=1"),
        Some(&s.customer),
    )
    .await
    .ok(200);
    api.get(
        &format!("/api/orders/{theirs}?min_version=1"),
        Some(&s.admin),
    )
    .await
    .ok(200);

    let listed = api.get("/api/orders", Some(&s.customer)).await;
    let ids: Vec<_> = listed.ok(200)["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, [mine.to_string()]);
    api.get(
        &format!("/api/orders?customerId={other_id}"),
        Some(&s.customer),
    )
    .await
    .problem(403);
    let all = api.get("/api/orders", Some(&s.admin)).await;
    assert_eq!(all.ok(200)["items"].as_array().unwrap().len(), 2);
    let filtered = api
        .get(
            &format!("/api/orders?customerId={other_id}"),
            Some(&s.admin),
        )
        .await;
    assert_eq!(filtered.ok(200)["items"][0]["id"], theirs.to_string());

    api.get(&format!("/api/orders/{mine}"), None)
        .await
        .problem(401);
    api.get("/api/orders", Some("not-a-token"))
        .await
        .problem(401);
}

#[tokio::test]
async fn lists_page_newest_first_and_filter_by_status() {
    let s = shop().await;
    let mut placed = Vec::new();
    for _ in 0..5 {
        placed.push(id_of(
            s.app
                .api
                .place_order(&s.customer, &[(s.mug, 1)])
                .await
                .ok(201),
        ));
    }
    let last = placed[4];
    // The reason is optional: a cancel may come with no body at all.
    let bare = s
        .app
        .api
        .call(
            reqwest::Method::POST,
            &format!("/api/orders/{}/cancel", placed[1]),
            Some(&s.customer),
            None,
        )
        .await;
    assert_eq!(bare.ok(200)["statusReason"], Value::Null);
    s.app
        .api
        .get(
            &format!("/api/orders/{}?min_version=2", placed[1]),
            Some(&s.customer),
        )
        .await
        .ok(200);
    s.app
        .api
        .get(
            &format!("/api/orders/{last}?min_version=1"),
            Some(&s.customer),
        )
        .await
        .ok(200);

    let mut seen = Vec::new();
    let mut path = "/api/orders?limit=2".to_owned();
    loop {
        let page = s.app.api.get(&path, Some(&s.customer)).await;
        let body = page.ok(200);
        let items = body["items"].as_array().unwrap();
        assert!(items.len() <= 2);
        seen.extend(items.iter().map(id_of));
        match body["nextCursor"].as_str() {
            Some(cursor) => path = format!("/api/orders?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    placed.reverse();
    assert_eq!(seen, placed);

    let cancelled = s
        .app
        .api
        .get("/api/orders?status=CANCELLED", Some(&s.customer))
        .await;
    let items = cancelled.ok(200)["items"].as_array().unwrap();
    assert_eq!(items.iter().map(id_of).collect::<Vec<_>>(), [placed[3]]);
    s.app
        .api
        .get("/api/orders?status=LOST", Some(&s.customer))
        .await
        .problem_naming(400, "status");
}

#[tokio::test]
async fn reads_of_versions_that_will_never_exist_are_answered_at_once() {
    let s = shop_with(|c| c.orders.read_wait = Duration::from_secs(30)).await;
    let order = s.app.api.place_order(&s.customer, &[(s.mug, 1)]).await;
    let id = id_of(order.ok(201));
    let started = std::time::Instant::now();
    let ahead = s
        .app
        .api
        .get(
            &format!("/api/orders/{id}?min_version=7"),
            Some(&s.customer),
        )
        .await;
    ahead.problem_naming(400, "min_version");
    let missing = s
        .app
        .api
        .get(
            &format!("/api/orders/{}?min_version=1", Uuid::now_v7()),
            Some(&s.customer),
        )
        .await;
    missing.problem(404);
    // The event store says so without waiting out the 30 s read wait.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

/// Rows of both read-model tables, in a stable order.
async fn read_model_rows(db: &oxcart_db::Db) -> Vec<Vec<Option<String>>> {
    use sqlx::Row;
    let mut rows = Vec::new();
    for sql in [
        "SELECT order_id, user_id, status, status_reason, currency, CAST(total_amount AS TEXT) AS a, shipping_address, \
         CAST(version AS TEXT) AS v, created_at, updated_at FROM order_read_model ORDER BY order_id",
        "SELECT order_id, CAST(line_no AS TEXT) AS l, product_id, sku, name, CAST(unit_price AS TEXT) AS p, \
         CAST(quantity AS TEXT) AS q, CAST(line_total AS TEXT) AS t FROM order_item_read_model ORDER BY order_id, line_no",
    ] {
        for row in db::query(sql)
            .fetch_all(&mut *db.read_primary().await.unwrap())
            .await
            .unwrap()
        {
            rows.push(
                (0..row.len())
                    .map(|i| row.try_get::<Option<String>, _>(i).unwrap())
                    .collect(),
            );
        }
    }
    rows
}

#[tokio::test]
async fn a_rebuild_reproduces_the_live_read_model() {
    // Every service: the rebuild must reproduce what the whole saga wrote.
    let s = shop_with(|_| {}).await;
    let api = &s.app.api;
    let cup = api.product(&s.admin, "Cup", 700, "EUR", 100).await;
    let mut ids = Vec::new();
    for n in 0..12 {
        let id = id_of(
            api.place_order(&s.customer, &[(s.mug, n % 3 + 1), (cup, 1)])
                .await
                .ok(201),
        );
        ids.push(id.to_string());
        if n % 4 == 0 {
            api.post(
                &format!("/api/orders/{id}/cancel"),
                Some(&s.admin),
                &json!({ "reason": format!("test {n}") }),
            )
            .await
            .ok(200);
        }
    }
    // Once the saga has finished with every order, the live read model is complete.
    crate::saga::settle(&s.app.db, &ids, &crate::saga::GROUPS).await;
    let live = read_model_rows(&s.app.db).await;
    assert_eq!(live.iter().filter(|r| r.len() == 10).count(), 12);

    let store = oxcart_sql::SqlEventStore::new(s.app.db.clone());
    let head = oxcart_events::EventStore::head(&store).await.unwrap();
    let rebuilt = oxcart_orders::read_model::rebuild(&s.app.db, &store)
        .await
        .unwrap();
    assert_eq!((rebuilt.orders, rebuilt.position), (12, head));
    assert_eq!(read_model_rows(&s.app.db).await, live);

    // The live projection carries on from the rebuilt checkpoint.
    let next = id_of(api.place_order(&s.customer, &[(cup, 1)]).await.ok(201));
    api.get(
        &format!("/api/orders/{next}?min_version=1"),
        Some(&s.customer),
    )
    .await
    .ok(200);
    s.app.stop().await;
}
