//! What the SQLite and PostgreSQL suites build the same way from a `Db`.

use std::sync::Arc;

use oxcart_db::{self as db, Db};
use oxcart_events::EventStore;
use oxcart_events::bus::LogBus;
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

/// A group whose effect is a row per event, and which cannot apply `note.poison`.
struct Notes;

#[async_trait::async_trait]
impl oxcart_sql::Apply for Notes {
    fn group(&self) -> &'static str {
        "notes"
    }

    fn topics(&self) -> &'static [&'static str] {
        &["orders"]
    }

    fn wants(&self, _: &oxcart_events::RecordedEvent) -> bool {
        true
    }

    async fn apply(
        &self,
        tx: &mut db::Tx,
        event: &oxcart_events::RecordedEvent,
    ) -> Result<Option<oxcart_events::Position>, oxcart_events::store::BoxError> {
        if event.event.event_type == "note.poison" {
            return Err("this note cannot be taken".into());
        }
        db::query("INSERT INTO batch_notes (event_id) VALUES ($1)")
            .bind(event.event.event_id.to_string())
            .execute(&mut **tx)
            .await?;
        Ok(None)
    }
}

/// Appends ten notes (the fifth `note.poison` if `poison`), runs the `notes` group over
/// them until `done` says so (or 10 s pass), and returns the event id of each.
async fn run_notes(
    db: &Db,
    poison: bool,
    done: impl AsyncFn(&Fixture) -> bool,
) -> (Fixture, Vec<uuid::Uuid>) {
    use oxcart_events::consumer::{ConsumerMetrics, ConsumerRunner, RetryPolicy};

    let fixture = bus_fixture(db);
    let mut tx = db.begin().await.unwrap();
    db::query("CREATE TABLE IF NOT EXISTS batch_notes (event_id TEXT NOT NULL)")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let mut ids = Vec::new();
    for n in 0..10 {
        let id = uuid::Uuid::now_v7();
        let kind = if poison && n == 4 {
            "note.poison"
        } else {
            "note.added"
        };
        let event = oxcart_test_util::event_store::event(id, kind, n);
        ids.push(event.event_id);
        fixture.store.append(id, 0, vec![event]).await.unwrap();
    }
    let policy = RetryPolicy {
        max_attempts: 3,
        base_delay: std::time::Duration::from_millis(1),
        max_delay: std::time::Duration::from_millis(5),
    };
    let shutdown = tokio_util::sync::CancellationToken::new();
    let runner = ConsumerRunner::new(
        Arc::clone(&fixture.bus),
        Arc::new(oxcart_sql::InTransaction::new(db.clone(), Notes)),
        Arc::clone(&fixture.dead_letters),
        policy,
        ConsumerMetrics::new(),
    );
    let running = tokio::spawn(runner.run(shutdown.clone()));
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while !done(&fixture).await && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    shutdown.cancel();
    running.await.unwrap();
    (fixture, ids)
}

/// The event ids the `notes` group applied, sorted, once per time applied.
pub async fn applied_notes(db: &Db) -> Vec<uuid::Uuid> {
    let ids: Vec<String> = db::query_scalar("SELECT event_id FROM batch_notes")
        .fetch_all(&mut *db.read_primary().await.unwrap())
        .await
        .unwrap();
    let mut ids: Vec<uuid::Uuid> = ids.iter().map(|id| id.parse().unwrap()).collect();
    ids.sort();
    ids
}

/// Nine events and a poison one in the middle, polled as one batch by a group that
/// applies batches in one transaction: the poison event is dead-lettered alone, and each
/// of the nine takes effect exactly once (the failed batch attempt left nothing behind).
pub async fn a_poison_event_in_a_batch_is_parked_alone_and_the_rest_commit_once(db: &Db) {
    let (fixture, mut ids) = run_notes(db, true, async |fixture| {
        !fixture
            .dead_letters
            .list(Some("notes"), false)
            .await
            .unwrap()
            .is_empty()
    })
    .await;
    let letters = fixture
        .dead_letters
        .list(Some("notes"), false)
        .await
        .unwrap();
    assert_eq!(letters.len(), 1, "{letters:?}");
    let poison = ids.remove(4);
    assert_eq!(letters[0].event.event.event_id, poison);
    ids.sort();
    assert_eq!(
        applied_notes(db).await,
        ids,
        "each of the nine applied exactly once"
    );
    let claims: i64 =
        db::query_scalar("SELECT COUNT(*) FROM processed_events WHERE consumer = 'notes'")
            .fetch_one(&mut *db.read_primary().await.unwrap())
            .await
            .unwrap();
    assert_eq!(claims, 9);
}

/// Ten events polled as one batch, all applied; returns their ids, sorted.
pub async fn a_batch_of_notes_is_applied(db: &Db) -> Vec<uuid::Uuid> {
    let (_, mut ids) = run_notes(db, false, async |_| applied_notes(db).await.len() == 10).await;
    ids.sort();
    assert_eq!(applied_notes(db).await, ids);
    ids
}

/// The inbox rows a group may forget are exactly those of events at or before its
/// position: eight events, the group applied all, its position at the fifth; after a
/// round, the rows of the sixth to eighth remain, and another group's rows are untouched.
pub async fn the_inbox_forgets_what_the_position_has_passed(db: &Db) {
    use oxcart_events::chore::Chore;
    let store = SqlEventStore::new(db.clone());
    let mut ids = Vec::new();
    let mut positions = Vec::new();
    for _ in 0..8 {
        let id = uuid::Uuid::now_v7();
        let appended = store
            .append(
                id,
                0,
                vec![oxcart_test_util::event_store::event(id, "order.created", 1)],
            )
            .await
            .unwrap();
        let stream = store.read_stream(id).await.unwrap();
        ids.push(stream[0].event.event_id);
        positions.push(appended.position);
    }
    let mut tx = db.begin().await.unwrap();
    db::claim_all(&mut tx, "notes", &ids).await.unwrap();
    db::claim_all(&mut tx, "others", &ids).await.unwrap();
    db::save_checkpoint(&mut tx, "notes", positions[4])
        .await
        .unwrap();
    tx.commit().await.unwrap();

    let inbox = oxcart_sql::housekeeping::Inbox::passed(db.clone(), vec!["notes"]);
    assert_eq!(inbox.run().await.unwrap(), 5);
    for (n, id) in ids.iter().enumerate() {
        assert_eq!(
            db::claimed(db, "notes", *id).await.unwrap(),
            n >= 5,
            "event {n} of the group"
        );
        assert!(db::claimed(db, "others", *id).await.unwrap());
    }
    assert_eq!(
        inbox.run().await.unwrap(),
        0,
        "a second round finds nothing"
    );

    // A group without a position (its offsets are Kafka's) forgets by age alone.
    let by_age = oxcart_sql::housekeeping::Inbox::older_than(
        db.clone(),
        vec!["others"],
        std::time::Duration::from_secs(3600),
    );
    assert_eq!(by_age.run().await.unwrap(), 0, "nothing is an hour old");
    let by_age = oxcart_sql::housekeeping::Inbox::older_than(
        db.clone(),
        vec!["others"],
        std::time::Duration::ZERO,
    );
    assert_eq!(by_age.run().await.unwrap(), 8);
}

/// Dead letters resolved longer ago than the retention go; those resolved since, and
/// those still waiting however old, stay.
pub async fn resolved_dead_letters_go_after_their_retention(db: &Db) {
    use oxcart_events::chore::Chore;
    use oxcart_events::consumer::DeadLetters;
    let letters = DbDeadLetters(db.clone());
    let store = SqlEventStore::new(db.clone());
    let mut parked = Vec::new();
    for _ in 0..3 {
        let id = uuid::Uuid::now_v7();
        let new = oxcart_test_util::event_store::event(id, "order.created", 1);
        store.append(id, 0, vec![new]).await.unwrap();
        let event = store.read_stream(id).await.unwrap().remove(0);
        parked.push(letters.park("notes", &event, "boom", 5).await.unwrap());
    }
    parked.sort();
    let long_ago = db::timestamp(chrono::Utc::now() - chrono::Duration::days(40));
    let lately = db::timestamp(chrono::Utc::now() - chrono::Duration::days(1));
    let mut tx = db.begin().await.unwrap();
    for (id, resolved, parked_at) in [
        (parked[0], Some(&long_ago), &long_ago),
        (parked[1], Some(&lately), &long_ago),
        (parked[2], None, &long_ago),
    ] {
        db::query("UPDATE dead_letters SET resolved_at = $1, parked_at = $2 WHERE id = $3")
            .bind(resolved.cloned())
            .bind(parked_at.clone())
            .bind(id.to_string())
            .execute(&mut *tx)
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
    let chore = oxcart_sql::housekeeping::ResolvedDeadLetters {
        db: db.clone(),
        retention: std::time::Duration::from_secs(30 * 24 * 3600),
    };
    assert_eq!(chore.run().await.unwrap(), 1);
    let left: Vec<String> = db::query_scalar("SELECT id FROM dead_letters ORDER BY id")
        .fetch_all(&mut *db.read_primary().await.unwrap())
        .await
        .unwrap();
    assert_eq!(left, [parked[1].to_string(), parked[2].to_string()]);
}
