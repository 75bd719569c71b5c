//! The SQLite event store passes the event store contract, on a real database file.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use oxcart_events::EventStore;
use oxcart_sqlite::{MIGRATOR, SqliteConfig, SqliteEventStore, connect};
use tempfile::TempDir;

async fn sqlite() -> (Arc<dyn EventStore>, TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let db = connect(&dir.path().join("oxcart.db"), &SqliteConfig::default())
        .await
        .unwrap();
    db.migrate(&MIGRATOR).await.unwrap();
    (Arc::new(SqliteEventStore::new(db)), dir)
}

oxcart_test_util::event_store_contract!(sqlite());

#[tokio::test]
async fn the_log_refuses_updates_and_deletes() {
    let (store, dir) = sqlite().await;
    let id = uuid::Uuid::now_v7();
    store
        .append(
            id,
            0,
            vec![oxcart_test_util::event_store::event(id, "order.created", 1)],
        )
        .await
        .unwrap();
    let db = connect(&dir.path().join("oxcart.db"), &SqliteConfig::default())
        .await
        .unwrap();
    for statement in ["UPDATE events SET event_type = 'x'", "DELETE FROM events"] {
        let error = sqlx::query(statement)
            .execute(db.writer())
            .await
            .unwrap_err();
        assert!(error.to_string().contains("append-only"), "{error}");
    }
}

async fn sqlite_bus() -> (oxcart_test_util::bus::Fixture, TempDir) {
    use oxcart_events::bus::LogBus;
    use oxcart_sqlite::{DbCheckpoints, DbDeadLetters};
    let dir = tempfile::tempdir().unwrap();
    let db = connect(&dir.path().join("oxcart.db"), &SqliteConfig::default())
        .await
        .unwrap();
    db.migrate(&MIGRATOR).await.unwrap();
    let store: Arc<dyn EventStore> = Arc::new(SqliteEventStore::new(db.clone()));
    let bus = LogBus::new(Arc::clone(&store), Arc::new(DbCheckpoints(db.clone())))
        .with_safety_poll(std::time::Duration::from_secs(3600));
    let fixture = oxcart_test_util::bus::Fixture {
        store,
        bus: Arc::new(bus),
        dead_letters: Arc::new(DbDeadLetters(db)),
    };
    (fixture, dir)
}

mod bus {
    use super::*;
    oxcart_test_util::bus_contract!(sqlite_bus());
}
