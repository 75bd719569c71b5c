//! Reads from a PostgreSQL streaming replica: the query endpoints use it, and a read with
//! `min_version` that it cannot satisfy goes to the primary. The test pauses the
//! replica's replay, so what a query returns shows which server answered it.

use std::time::Duration;

use oxcart_test_util::postgres::TestDatabase;
use sqlx::Executor;

use crate::helpers::TestApp;

/// Pauses the replica's replay while it lives; resumes it when dropped, even if the
/// test fails, so the replica keeps up for everyone else.
struct Paused(String);

async fn replay(replica: &str, action: &str) {
    let pool = sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(replica)
        .await
        .expect("the replica answers");
    pool.execute(format!("SELECT pg_wal_replay_{action}()").as_str())
        .await
        .unwrap();
    pool.close().await;
}

/// Whether the replica has replayed the projection's row for `order`.
async fn replica_shows(replica: &str, order: &str) -> bool {
    let Ok(pool) = sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(replica)
        .await
    else {
        return false;
    };
    let found: Option<i64> =
        sqlx::query_scalar("SELECT 1::BIGINT FROM orders.order_read_model WHERE order_id = $1")
            .bind(order)
            .fetch_optional(&pool)
            .await
            .ok()
            .flatten();
    pool.close().await;
    found.is_some()
}

impl Paused {
    async fn start(replica: &str) -> Self {
        replay(replica, "pause").await;
        Self(replica.to_owned())
    }
}

impl Drop for Paused {
    fn drop(&mut self) {
        let replica = self.0.clone();
        let _ = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(replay(&replica, "resume"));
        })
        .join();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a streaming replica (OXCART_TEST_REPLICA); .ci/run starts one"]
async fn query_endpoints_read_from_the_replica_and_min_version_from_the_primary() {
    let replica = std::env::var("OXCART_TEST_REPLICA").expect("OXCART_TEST_REPLICA");
    let database = TestDatabase::create().await;
    let replica_db = database.on(&replica);
    let app = TestApp::spawn_with(|c| {
        c.database.url = Some(database.url.clone());
        c.database.migration_url = Some(database.direct_url.clone());
        c.database.read_url = Some(replica_db.clone());
    })
    .await;
    let api = &app.api;
    let admin = app.admin().await;
    let mug = api.product(&admin, "Mug", 1250, "EUR", 10).await;
    let (customer, _) = api.customer().await;
    let body = oxcart_test_util::api::order_body(&[(mug, 1)]);
    let first = api.post("/api/orders", Some(&customer), &body).await;
    let first = first.ok(201)["id"].as_str().unwrap().to_owned();
    // The replica catches up with the first order. Asked of the replica itself: the app
    // falls back to the primary while the replica lacks the database altogether.
    let mut caught_up = false;
    for _ in 0..200 {
        if replica_shows(&replica_db, &first).await {
            caught_up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(caught_up, "the replica never showed the first order");

    let paused = Paused::start(&replica_db).await;
    let second = api.post("/api/orders", Some(&customer), &body).await;
    let second = second.ok(201)["id"].as_str().unwrap().to_owned();
    // The projection has written it on the primary (min_version waits for that)...
    api.get(
        &format!("/api/orders/{second}?min_version=1"),
        Some(&customer),
    )
    .await
    .ok(200);
    // ...but a plain read, served by the paused replica, does not see it yet,
    assert_eq!(
        api.get(&format!("/api/orders/{second}"), Some(&customer))
            .await
            .status,
        404
    );
    // and neither does the list.
    let list = api.get("/api/orders", Some(&customer)).await;
    let ids: Vec<&str> = list.ok(200)["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [first.as_str()]);

    drop(paused);
    let mut seen = false;
    for _ in 0..200 {
        if api
            .get(&format!("/api/orders/{second}"), Some(&customer))
            .await
            .status
            == 200
        {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(seen, "the replica resumed and shows the second order");
    app.stop().await;
}
