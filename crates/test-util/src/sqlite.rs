//! A fresh SQLite database per test, migrated, in a directory of its own.

use oxcart_db::Db;

/// The database, and the guard of its directory: the files go when the guard is dropped.
pub async fn migrated() -> (Db, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let db = oxcart_sqlite::connect(
        &dir.path().join("oxcart.db"),
        &oxcart_sqlite::SqliteConfig::default(),
    )
    .await
    .unwrap();
    oxcart_sqlite::migrate(&db).await.unwrap();
    (db, dir)
}
