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

/// A pooled connection whose session the server ended while it sat idle (a restart, an
/// administrator's `pg_terminate_backend`) is found dead and replaced before a read gets
/// it, though the pool no longer pings connections returned a moment ago.
#[tokio::test]
#[ignore = "needs PostgreSQL (.ci/services)"]
async fn a_connection_cut_while_idle_is_replaced_before_a_read_gets_it() {
    let (db, database) = TestDatabase::migrated().await;
    let read = || async {
        let mut conn = db.read().await?;
        oxcart_db::query_scalar::<i64>("SELECT COUNT(*) FROM events")
            .fetch_one(&mut *conn)
            .await
    };
    assert_eq!(read().await.unwrap(), 0);
    let admin = database.pool().await;
    let cut: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .fetch_all(&admin)
    .await
    .unwrap();
    assert!(!cut.is_empty(), "the pool's session was on the server");
    tokio::time::sleep(oxcart_postgres::PING_IF_IDLE_FOR + std::time::Duration::from_millis(200))
        .await;
    assert_eq!(read().await.unwrap(), 0, "the read got a live connection");
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

/// A sequence hands out positions when rows are inserted, not when they commit, and
/// appends commit concurrently; read in position order, a reader following the log could
/// pass a position whose transaction had not committed yet, and never see it. Eight
/// writers append while a reader follows the log as a consumer does, from the last
/// position it read; the reader must end up with every event, once.
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
    // Until it has read as many as were appended: a transaction id the server cannot
    // place yet (one that has just ended in another test's database) may hold the log
    // back for a moment, never for good.
    let mut seen = Vec::new();
    let mut after = 0;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while seen.len() < 320 && tokio::time::Instant::now() < deadline {
        let batch = store.read_all(after, 7).await.unwrap();
        for event in &batch {
            after = event.position;
            seen.push(event.position);
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
    assert_eq!(seen.len(), 320, "an event was read twice");
    assert_eq!(seen.into_iter().collect::<BTreeSet<_>>(), all);
}

/// The two ways a position can commit late, one after the other, with a reader following
/// the log between each step:
/// - a transaction that began writing first (the older) appends, and a younger one
///   appends and commits before it: the younger one's event waits for the older one;
/// - a transaction that began writing first appends last, after a younger one has
///   inserted and committed events with lower positions: it still comes first, and the
///   reader, whose cursor is now past those lower positions, gets it anyway.
///
/// Neither append waits for the other: both commit while the other is open.
#[tokio::test]
#[ignore = "needs PostgreSQL (.ci/services)"]
async fn the_log_is_read_in_commit_order_without_serialising_appends() {
    use oxcart_events::outbox::Outbox;
    use oxcart_test_util::event_store::event;

    let (db, _database) = TestDatabase::migrated().await;
    let store = Arc::new(SqlEventStore::new(db.clone()));
    let mut follower = Follower::default();
    let append = |id| store.append(id, 0, vec![event(id, "order.created", 1)]);

    // The older transaction appends first and stays open.
    let (older, younger) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
    let mut tx = db.begin().await.unwrap();
    let held = store
        .append_in(&mut tx, older, 0, vec![event(older, "order.created", 1)])
        .await
        .unwrap();
    // The younger one appends and commits at once: no lock makes it wait.
    let done = tokio::time::timeout(std::time::Duration::from_secs(5), append(younger))
        .await
        .expect("an append does not wait for another transaction's commit")
        .unwrap();
    assert!(done.position > held.position);
    assert_eq!(
        follower.follow(store.as_ref()).await,
        Vec::<uuid::Uuid>::new(),
        "the younger event waits for the older transaction"
    );
    tx.commit().await.unwrap();
    assert_eq!(follower.next(store.as_ref(), 2).await, [older, younger]);

    // Now the older transaction writes something else first (taking its id), and
    // appends only after the younger one has committed lower positions.
    let (late, early) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
    let mut tx = db.begin().await.unwrap();
    oxcart_db::query(
        "INSERT INTO projection_checkpoints (name, position) VALUES ('other work', 0)",
    )
    .execute(&mut *tx)
    .await
    .unwrap();
    let early_at = append(early).await.unwrap().position;
    assert_eq!(
        follower.follow(store.as_ref()).await,
        Vec::<uuid::Uuid>::new(),
        "the younger transaction's event waits for the older one"
    );
    let late_at = store
        .append_in(&mut tx, late, 0, vec![event(late, "order.created", 1)])
        .await
        .unwrap()
        .position;
    tx.commit().await.unwrap();
    assert!(late_at > early_at);
    assert_eq!(
        follower.next(store.as_ref(), 2).await,
        [late, early],
        "the older transaction's event comes first, though its position is higher"
    );
    assert_eq!(
        store.head().await.unwrap(),
        early_at,
        "the head is the last in log order"
    );
}

/// Follows the log as a consumer does: from the last position read.
#[derive(Default)]
struct Follower {
    after: i64,
}

impl Follower {
    /// What there is to read now.
    async fn follow(&mut self, store: &dyn EventStore) -> Vec<uuid::Uuid> {
        let events = store.read_all(self.after, 100).await.unwrap();
        if let Some(last) = events.last() {
            self.after = last.position;
        }
        events.iter().map(|e| e.event.aggregate_id).collect()
    }

    /// The next `n` events, waiting for them: a transaction id the server cannot place
    /// yet (one that has just ended in another test's database) may hold the log back
    /// for a moment.
    async fn next(&mut self, store: &dyn EventStore, n: usize) -> Vec<uuid::Uuid> {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
        let mut read = Vec::new();
        while read.len() < n && tokio::time::Instant::now() < deadline {
            let more = self.follow(store).await;
            if more.is_empty() {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            read.extend(more);
        }
        read
    }
}

async fn postgres_bus() -> (oxcart_test_util::bus::Fixture, TestDatabase) {
    let (db, database) = TestDatabase::migrated().await;
    (common::bus_fixture(&db), database)
}

mod bus {
    use super::*;
    oxcart_test_util::bus_contract!(postgres_bus(), #[ignore = "needs PostgreSQL (.ci/services)"]);
}

mod checkpoints {
    use std::sync::Arc;

    use oxcart_events::bus::Checkpoints;
    use oxcart_sql::DbCheckpoints;
    use oxcart_test_util::postgres::TestDatabase;

    async fn postgres() -> (Arc<dyn Checkpoints>, TestDatabase) {
        let (db, database) = TestDatabase::migrated().await;
        (Arc::new(DbCheckpoints(db)), database)
    }

    oxcart_test_util::checkpoints_contract!(postgres(), #[ignore = "needs PostgreSQL (.ci/services)"]);
}

/// A read cancelled while its `BEGIN READ ONLY` is in flight (a request past its timeout,
/// an aborted task) leaves no pooled connection inside that transaction: the writes that
/// follow on the same connection (the pool has one) succeed. sqlx queues no rollback for
/// a `BEGIN` it has not seen finish, so before `Db` began transactions in a task of their
/// own, a write here could fail with "cannot execute INSERT in a read-only transaction".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL (.ci/services)"]
async fn a_read_cancelled_mid_begin_leaves_no_transaction_behind() {
    let (_, database) = TestDatabase::migrated().await;
    let one = oxcart_postgres::PgConfig {
        max_connections: 1,
        ..oxcart_postgres::PgConfig::default()
    };
    let db = oxcart_postgres::connect(&database.url, &[], &one)
        .await
        .unwrap();
    for n in 0..200_i64 {
        let reader = db.clone();
        let read = tokio::spawn(async move {
            let conn = reader.read_primary().await;
            drop(conn);
        });
        // Cancel it at a different moment each time: before, during or after its BEGIN.
        tokio::time::sleep(std::time::Duration::from_micros(((n * 37) % 400) as u64)).await;
        read.abort();
        let _ = read.await;
        let mut tx = db.begin().await.unwrap();
        oxcart_db::query("INSERT INTO projection_checkpoints (name, position) VALUES ($1, $2)")
            .bind(format!("cancelled-{n}"))
            .bind(n)
            .execute(&mut *tx)
            .await
            .unwrap_or_else(|e| panic!("write {n} after a cancelled read: {e}"));
        tx.commit().await.unwrap();
    }
}

#[tokio::test]
#[ignore = "needs PostgreSQL (.ci/services)"]
async fn the_inbox_forgets_what_the_position_has_passed() {
    let (db, _database) = TestDatabase::migrated().await;
    common::the_inbox_forgets_what_the_position_has_passed(&db).await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL (.ci/services)"]
async fn resolved_dead_letters_go_after_their_retention() {
    let (db, _database) = TestDatabase::migrated().await;
    common::resolved_dead_letters_go_after_their_retention(&db).await;
}
