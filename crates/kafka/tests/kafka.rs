//! The Kafka adapter against Apache Kafka (the three-node cluster `.ci/services` starts),
//! with the event log on PostgreSQL. Each test gets its own database and its own topic
//! prefix; they are `#[ignore]`d in a plain `cargo test`, and `.ci/run`, which starts the
//! servers, runs them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use oxcart_db::Db;
use oxcart_events::EventStore;
use oxcart_events::consumer::DeadLetters;
use oxcart_kafka::{KafkaBus, KafkaConfig, KafkaDeadLetters, Relay, RelayMetrics};
use oxcart_sql::{DbDeadLetters, SqlEventStore};
use oxcart_test_util::bus::Fixture;
use oxcart_test_util::cleanup::Cleanup;
use oxcart_test_util::kafka::Cluster;
use oxcart_test_util::postgres::TestDatabase;
use tokio_util::sync::{CancellationToken, DropGuard};

/// The cluster, with topics under a prefix of the test's own, replicated as in production;
/// they are deleted when the guard is dropped.
async fn topics() -> (KafkaConfig, Cleanup) {
    let config = KafkaConfig {
        brokers: Cluster::from_env().brokers(),
        prefix: format!("t{}.", uuid::Uuid::new_v4().simple()),
        partitions: 3,
        replication: 3,
        relay_interval: Duration::from_millis(50),
        ..KafkaConfig::default()
    };
    oxcart_kafka::ensure_topics(&config).await.unwrap();
    let doomed = config.clone();
    let cleanup = Cleanup::new(move || async move {
        let _ = oxcart_kafka::delete_topics(&doomed).await;
    });
    (config, cleanup)
}

struct Guard {
    _relays: DropGuard,
    _database: TestDatabase,
    _topics: Cleanup,
}

/// Starts `n` relays on one store, as `n` processes would.
fn relays(db: &Db, store: &Arc<dyn EventStore>, config: &KafkaConfig, n: usize) -> DropGuard {
    let shutdown = CancellationToken::new();
    for _ in 0..n {
        let relay = Relay::new(db.clone(), Arc::clone(store), config, RelayMetrics::new()).unwrap();
        tokio::spawn(relay.run(shutdown.clone()));
    }
    shutdown.drop_guard()
}

async fn kafka() -> (Fixture, Guard) {
    let (db, database) = TestDatabase::migrated().await;
    let (config, topics) = topics().await;
    let store: Arc<dyn EventStore> = Arc::new(SqlEventStore::new(db.clone()));
    let fixture = Fixture {
        store: Arc::clone(&store),
        bus: Arc::new(KafkaBus::new(config.clone())),
        dead_letters: Arc::new(
            KafkaDeadLetters::new(Arc::new(DbDeadLetters(db.clone())), &config).unwrap(),
        ),
        patience: Duration::from_secs(30),
        quiet: Duration::from_millis(1500),
    };
    let guard = Guard {
        _relays: relays(&db, &store, &config, 2),
        _database: database,
        _topics: topics,
    };
    (fixture, guard)
}

mod bus {
    use super::*;
    oxcart_test_util::bus_contract!(kafka(), #[ignore = "needs Apache Kafka (.ci/services)"]);
}

/// Several relays on one store publish each event once, in the log's order per order:
/// only the one holding the lock publishes in a round.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Apache Kafka (.ci/services)"]
async fn three_relays_publish_every_event_once_in_order() {
    let (db, _database) = TestDatabase::migrated().await;
    let (config, _topics) = topics().await;
    let store: Arc<dyn EventStore> = Arc::new(SqlEventStore::new(db.clone()));
    let _relays = relays(&db, &store, &config, 3);
    let orders: Vec<uuid::Uuid> = (0..20).map(|_| uuid::Uuid::now_v7()).collect();
    for version in 0..5 {
        for id in &orders {
            let event = oxcart_test_util::event_store::event(*id, "order.happened", version);
            store
                .append(*id, version as u64, vec![event])
                .await
                .unwrap();
        }
    }
    let bus = KafkaBus::new(config.clone());
    let mut subscription = oxcart_events::bus::Bus::subscribe(&bus, "check", &["orders"])
        .await
        .unwrap();
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while got.len() < 100 && tokio::time::Instant::now() < deadline {
        got.extend(
            subscription
                .poll(100, Duration::from_secs(1))
                .await
                .unwrap(),
        );
    }
    // And nothing twice: wait a little for stragglers.
    got.extend(
        subscription
            .poll(100, Duration::from_secs(2))
            .await
            .unwrap(),
    );
    assert_eq!(got.len(), 100, "every event once");
    for id in &orders {
        let versions: Vec<u64> = got
            .iter()
            .filter(|e| e.event.aggregate_id == *id)
            .map(|e| e.version)
            .collect();
        assert_eq!(versions, [1, 2, 3, 4, 5]);
    }
}

/// A parked event is kept for `oxcart dlq` and published to `<topic>.dlq`, with the
/// group and the error in its headers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Apache Kafka (.ci/services)"]
async fn dead_letters_reach_the_dead_letter_topic() {
    use rdkafka::Message;
    use rdkafka::consumer::{Consumer, StreamConsumer};
    use rdkafka::message::Headers;

    let (db, _database) = TestDatabase::migrated().await;
    let (config, _topics) = topics().await;
    let store = SqlEventStore::new(db.clone());
    let id = uuid::Uuid::now_v7();
    let event = oxcart_test_util::event_store::event(id, "order.created", 1);
    store.append(id, 0, vec![event]).await.unwrap();
    let recorded = store.read_stream(id).await.unwrap().remove(0);
    let letters = KafkaDeadLetters::new(Arc::new(DbDeadLetters(db.clone())), &config).unwrap();
    let letter = letters
        .park("email-service", &recorded, "smtp down", 5)
        .await
        .unwrap();
    assert_eq!(letters.list(None, false).await.unwrap()[0].id, letter);

    let consumer: StreamConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &config.brokers)
        .set("group.id", config.name("dlq-reader"))
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer
        .subscribe(&[&config.dead_letter_topic("orders")])
        .unwrap();
    let message = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
        .await
        .expect("the dead letter reaches its topic")
        .unwrap();
    let headers = message.headers().unwrap();
    let header = |name: &str| {
        headers
            .iter()
            .find(|h| h.key == name)
            .and_then(|h| h.value)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    };
    assert_eq!(header("consumer-group").as_deref(), Some("email-service"));
    assert_eq!(header("error").as_deref(), Some("smtp down"));
    assert_eq!(header("dead-letter-id"), Some(letter.to_string()));
    let payload: serde_json::Value = serde_json::from_slice(message.payload().unwrap()).unwrap();
    assert_eq!(payload["eventId"], recorded.event.event_id.to_string());
}

/// The relay's checkpoint, once it reaches `head` (or after 30 s, whatever it is then).
async fn published_through(db: &Db, head: i64) -> i64 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let position = oxcart_db::checkpoint(
            &mut db.read_primary().await.unwrap(),
            oxcart_kafka::RELAY_CHECKPOINT,
        )
        .await
        .unwrap();
        if position >= head || tokio::time::Instant::now() >= deadline {
            return position;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A relay that stops gives its lease up for another to take at once; one that dies
/// holding it is replaced once the lease lapses. Either way the log is published through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Apache Kafka (.ci/services)"]
async fn another_relay_takes_over_from_one_that_stops_or_dies() {
    let (db, _database) = TestDatabase::migrated().await;
    let (config, _topics) = topics().await;
    let store: Arc<dyn EventStore> = Arc::new(SqlEventStore::new(db.clone()));
    let relay =
        || Relay::new(db.clone(), Arc::clone(&store), &config, RelayMetrics::new()).unwrap();
    let append = |n: i64| {
        let store = Arc::clone(&store);
        async move {
            let id = uuid::Uuid::now_v7();
            let event = oxcart_test_util::event_store::event(id, "order.happened", n);
            store.append(id, 0, vec![event]).await.unwrap().position
        }
    };
    let lease_holder = || async {
        let row: (String, i64) = oxcart_db::query_as("SELECT holder, expires_at FROM relay_leases")
            .fetch_one(&mut *db.read_primary().await.unwrap())
            .await
            .unwrap();
        row
    };

    // The first relay dies mid-flight: its task is gone, its lease stays until it lapses.
    let first = tokio::spawn(relay().run(CancellationToken::new()));
    let head = append(1).await;
    assert_eq!(published_through(&db, head).await, head);
    first.abort();
    let _ = first.await;
    let (holder, _) = lease_holder().await;
    let second = CancellationToken::new();
    let stopped = tokio::spawn(relay().run(second.clone()));
    let head = append(2).await;
    assert_eq!(
        published_through(&db, head).await,
        head,
        "taken over after the lease lapsed"
    );
    let (taken_by, _) = lease_holder().await;
    assert_ne!(taken_by, holder);

    // The second stops cleanly: it gives the lease up on its way out.
    second.cancel();
    stopped.await.unwrap();
    assert_eq!(lease_holder().await, (taken_by, 0));
    let third = CancellationToken::new();
    tokio::spawn(relay().run(third.clone()));
    let head = append(3).await;
    assert_eq!(published_through(&db, head).await, head);
    third.cancel();
}
