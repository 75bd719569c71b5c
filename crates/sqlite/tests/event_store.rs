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
