//! Group commit on SQLite's writer: transactions that queue for the writer share one
//! durable commit, each is acknowledged only once that commit is on disk, and one that
//! fails takes nothing of the others' with it, unless the shared commit itself fails, in
//! which case none of them is acknowledged.
#![allow(clippy::unwrap_used)]

use oxcart_db::{self as db, Db};
use oxcart_sqlite::{SqliteConfig, connect};
use tempfile::TempDir;

async fn database() -> (Db, TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let db = connect(&dir.path().join("group.db"), &SqliteConfig::default())
        .await
        .unwrap();
    let mut tx = db.begin().await.unwrap();
    db::query("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL)")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    (db, dir)
}

async fn insert(tx: &mut db::Tx, id: i64) -> sqlx::Result<()> {
    db::query("INSERT INTO notes (id, body) VALUES ($1, 'note')")
        .bind(id)
        .execute(&mut **tx)
        .await
        .map(drop)
}

/// The ids a fresh reader sees: only what is durable.
async fn visible(db: &Db) -> Vec<i64> {
    db::query_scalar("SELECT id FROM notes ORDER BY id")
        .fetch_all(&mut *db.read_primary().await.unwrap())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_share_commits_and_each_is_durable_when_acknowledged() {
    let (db, _dir) = database().await;
    let (commits_before, _) = db.group_commits().unwrap();
    let writers = (1..=64).map(|id| {
        let db = db.clone();
        tokio::spawn(async move {
            let mut tx = db.begin().await.unwrap();
            insert(&mut tx, id).await.unwrap();
            tx.commit().await.unwrap();
            // Acknowledged: any reader sees it now.
            assert!(
                visible(&db).await.contains(&id),
                "note {id} not visible after commit"
            );
        })
    });
    for writer in futures::future::join_all(writers).await {
        writer.unwrap();
    }
    assert_eq!(visible(&db).await, (1..=64).collect::<Vec<_>>());
    let (commits, _) = db.group_commits().unwrap();
    let commits = commits - commits_before;
    assert!(
        commits < 64,
        "64 concurrent transactions took {commits} commits"
    );
}

#[tokio::test]
async fn a_member_that_fails_or_is_dropped_leaves_the_rest_of_its_group() {
    let (db, _dir) = database().await;
    let mut first = db.begin().await.unwrap();
    insert(&mut first, 1).await.unwrap();
    // These queue for the writer while `first` holds it, so all three share a commit.
    let failing = tokio::spawn({
        let db = db.clone();
        async move {
            let mut tx = db.begin().await.unwrap();
            insert(&mut tx, 2).await.unwrap();
            // A duplicate key: the statement fails, the handler returns, the tx is dropped.
            assert!(db::is_unique_violation(
                &insert(&mut tx, 1).await.unwrap_err()
            ));
        }
    });
    let last = tokio::spawn({
        let db = db.clone();
        async move {
            let mut tx = db.begin().await.unwrap();
            insert(&mut tx, 3).await.unwrap();
            tx.commit().await
        }
    });
    tokio::task::yield_now().await;
    let (commits_before, _) = db.group_commits().unwrap();
    first.commit().await.unwrap();
    failing.await.unwrap();
    last.await.unwrap().unwrap();
    assert_eq!(visible(&db).await, vec![1, 3]);
    let (commits, _) = db.group_commits().unwrap();
    assert_eq!(commits - commits_before, 1, "the three shared one commit");
}

#[tokio::test]
async fn when_the_shared_commit_fails_no_member_is_acknowledged() {
    let (db, _dir) = database().await;
    let mut first = db.begin().await.unwrap();
    insert(&mut first, 1).await.unwrap();
    let breaking = tokio::spawn({
        let db = db.clone();
        async move {
            let mut tx = db.begin().await.unwrap();
            insert(&mut tx, 2).await.unwrap();
            // What SQLite does by itself on an I/O error or a full disk: the whole
            // transaction is rolled back under the group.
            db::query("ROLLBACK").execute(&mut *tx).await.unwrap();
            tx.commit().await
        }
    });
    tokio::task::yield_now().await;
    let acknowledged = first.commit().await;
    assert!(
        acknowledged.is_err(),
        "the first member was acknowledged though its write was rolled back"
    );
    assert!(breaking.await.unwrap().is_err());
    assert_eq!(visible(&db).await, Vec::<i64>::new());
    // The writer carries on.
    let mut tx = db.begin().await.unwrap();
    insert(&mut tx, 4).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(visible(&db).await, vec![4]);
}
