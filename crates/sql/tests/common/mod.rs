//! What the SQLite and PostgreSQL suites build the same way from a `Db`.

use std::sync::Arc;

use oxcart_events::EventStore;
use oxcart_events::bus::LogBus;
use oxcart_platform::db::{self, Db};
use oxcart_sql::{DbCheckpoints, DbDeadLetters, SqlEventStore};
use oxcart_test_util::bus::Fixture;

pub fn bus_fixture(db: &Db) -> Fixture {
    let store: Arc<dyn EventStore> = Arc::new(SqlEventStore::new(db.clone()));
    let bus = LogBus::new(Arc::clone(&store), Arc::new(DbCheckpoints(db.clone())))
        .with_safety_poll(std::time::Duration::from_secs(3600));
    Fixture {
        store,
        bus: Arc::new(bus),
        dead_letters: Arc::new(DbDeadLetters(db.clone())),
        patience: Fixture::IMMEDIATE.0,
        quiet: Fixture::IMMEDIATE.1,
    }
}

/// Appends one event, then tries to change and to remove it behind the store's back:
/// the database itself must refuse.
pub async fn the_log_refuses_updates_and_deletes(db: &Db) {
    let store = SqlEventStore::new(db.clone());
    let id = uuid::Uuid::now_v7();
    store
        .append(
            id,
            0,
            vec![oxcart_test_util::event_store::event(id, "order.created", 1)],
        )
        .await
        .unwrap();
    for statement in ["UPDATE events SET event_type = 'x'", "DELETE FROM events"] {
        let mut tx = db.begin().await.unwrap();
        let error = db::query(statement).execute(&mut *tx).await.unwrap_err();
        assert!(error.to_string().contains("append-only"), "{error}");
    }
    assert_eq!(store.read_stream(id).await.unwrap().len(), 1);
}
