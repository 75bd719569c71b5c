//! On SQLite: the event store, bus and dead-letter contracts, on a real database file.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use oxcart_db::Db;
use oxcart_events::EventStore;
use oxcart_sql::SqlEventStore;
use oxcart_sqlite::{SqliteConfig, connect, migrate};
use tempfile::TempDir;

async fn database() -> (Db, TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let db = connect(&dir.path().join("oxcart.db"), &SqliteConfig::default())
        .await
        .unwrap();
    migrate(&db).await.unwrap();
    (db, dir)
}

async fn sqlite() -> (Arc<dyn EventStore>, TempDir) {
    let (db, dir) = database().await;
    (Arc::new(SqlEventStore::new(db)), dir)
}

oxcart_test_util::event_store_contract!(sqlite());
oxcart_test_util::event_store_transaction_contract!(sqlite());

#[tokio::test]
async fn the_log_refuses_updates_and_deletes() {
    let (db, _dir) = database().await;
    common::the_log_refuses_updates_and_deletes(&db).await;
}

async fn sqlite_bus() -> (oxcart_test_util::bus::Fixture, TempDir) {
    let (db, dir) = database().await;
    (common::bus_fixture(&db), dir)
}

mod bus {
    use super::*;
    oxcart_test_util::bus_contract!(sqlite_bus());
}

#[tokio::test]
async fn a_poison_event_in_a_batch_is_parked_alone_and_the_rest_commit_once() {
    let (db, _dir) = database().await;
    common::a_poison_event_in_a_batch_is_parked_alone_and_the_rest_commit_once(&db).await;
}

/// On SQLite a commit is an fsync: the ten events of a batch take one, not ten.
#[tokio::test]
async fn a_batch_is_applied_in_one_commit() {
    let (db, _dir) = database().await;
    common::a_batch_of_notes_is_applied(&db).await;
    let (commits, members) = db.group_commits().unwrap();
    // Setting up: the table, ten appends. Running: the batch, then the group's position.
    assert!(
        members <= 1 + 10 + 3,
        "{members} transactions ({commits} commits) for ten appends and one batch"
    );
}

mod checkpoints {
    use std::sync::Arc;

    use oxcart_events::bus::Checkpoints;
    use oxcart_sql::DbCheckpoints;

    async fn sqlite() -> (Arc<dyn Checkpoints>, tempfile::TempDir) {
        let (db, dir) = oxcart_test_util::sqlite::migrated().await;
        (Arc::new(DbCheckpoints(db)), dir)
    }

    oxcart_test_util::checkpoints_contract!(sqlite());
}

#[tokio::test]
async fn the_inbox_forgets_what_the_position_has_passed() {
    let (db, _dir) = database().await;
    common::the_inbox_forgets_what_the_position_has_passed(&db).await;
}

#[tokio::test]
async fn resolved_dead_letters_go_after_their_retention() {
    let (db, _dir) = database().await;
    common::resolved_dead_letters_go_after_their_retention(&db).await;
}
