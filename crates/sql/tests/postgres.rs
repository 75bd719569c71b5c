//! On PostgreSQL (a fresh database per test on the server `.ci/services` starts, through
//! PgBouncer when the suite runs behind one): the event store, bus and dead-letter
//! contracts, and what only a server with concurrent writers can show. `#[ignore]`d in a
//! plain `cargo test`, which needs nothing but Rust; `.ci/run` runs them.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use oxcart_events::EventStore;
use oxcart_sql::SqlEventStore;
use oxcart_test_util::postgres::TestDatabase;

async fn postgres() -> (Arc<dyn EventStore>, TestDatabase) {
    let (db, database) = TestDatabase::migrated().await;
    (Arc::new(SqlEventStore::new(db)), database)
}

oxcart_test_util::event_store_contract!(postgres(), #[ignore = "needs PostgreSQL (.ci/services)"]);
oxcart_test_util::event_store_transaction_contract!(postgres(), #[ignore = "needs PostgreSQL (.ci/services)"]);

#[tokio::test]
#[ignore = "needs PostgreSQL (.ci/services)"]
async fn the_log_refuses_updates_and_deletes() {
    let (db, _database) = TestDatabase::migrated().await;
    common::the_log_refuses_updates_and_deletes(&db).await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL (.ci/services)"]
async fn a_poison_event_in_a_batch_is_parked_alone_and_the_rest_commit_once() {
    let (db, _database) = TestDatabase::migrated().await;
    common::a_poison_event_in_a_batch_is_parked_alone_and_the_rest_commit_once(&db).await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL (.ci/services)"]
async fn a_batch_of_events_is_applied_whole() {
    let (db, _database) = TestDatabase::migrated().await;
    common::a_batch_of_notes_is_applied(&db).await;
}

/// A sequence hands out positions when rows are inserted, not when they commit; without
/// the append lock a reader following the log could pass a position whose transaction
/// had not committed yet, and never see it. Eight writers append while a reader follows
/// the log as a consumer does; the reader must end up with every event, in order.
#[tokio::test]
#[ignore = "needs PostgreSQL (.ci/services)"]
async fn a_follower_never_skips_a_position_under_concurrent_appends() {
    let (db, _database) = TestDatabase::migrated().await;
    let store: Arc<dyn EventStore> = Arc::new(SqlEventStore::new(db.clone()));
    let writers: Vec<_> = (0..8)
        .map(|_| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                for _ in 0..40 {
                    let id = uuid::Uuid::now_v7();
                    let event = oxcart_test_util::event_store::event(id, "order.created", 1);
                    store.append(id, 0, vec![event]).await.unwrap();
                }
            })
        })
        .collect();
    let mut seen = Vec::new();
    let mut after = 0;
    loop {
        let done = writers.iter().all(tokio::task::JoinHandle::is_finished);
        let batch = store.read_all(after, 7).await.unwrap();
        for event in &batch {
            assert!(event.position > after, "positions go backwards");
            after = event.position;
            seen.push(event.position);
        }
        if done && batch.is_empty() {
            break;
        }
    }
    for writer in writers {
        writer.await.unwrap();
    }
    let all: BTreeSet<_> = store
        .read_all(0, 10_000)
        .await
        .unwrap()
        .iter()
        .map(|e| e.position)
        .collect();
    assert_eq!(all.len(), 320);
    assert_eq!(seen.into_iter().collect::<BTreeSet<_>>(), all);
}

async fn postgres_bus() -> (oxcart_test_util::bus::Fixture, TestDatabase) {
    let (db, database) = TestDatabase::migrated().await;
    (common::bus_fixture(&db), database)
}

mod bus {
    use super::*;
    oxcart_test_util::bus_contract!(postgres_bus(), #[ignore = "needs PostgreSQL (.ci/services)"]);
}
