//! The schema is its owners' migrations, composed by each engine's adapter: both engines
//! number them alike and end with the same tables and columns, and a database migrated
//! under the old numbering (one sequence per engine) is adopted with its data intact.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use oxcart_db::Db;
use oxcart_sqlite::{SqliteConfig, connect};
use oxcart_test_util::postgres::TestDatabase;
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, Row as _};

/// The crates directory.
fn crates() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every owner's migration files for `engine`: the owning crate, by version and name.
fn owned(engine: &str) -> BTreeMap<i64, (String, String)> {
    let mut found = BTreeMap::new();
    for owner in std::fs::read_dir(crates()).unwrap().flatten() {
        let dir = owner.path().join("migrations").join(engine);
        let Ok(files) = std::fs::read_dir(&dir) else {
            continue;
        };
        let owner = owner.file_name().to_string_lossy().into_owned();
        for file in files.flatten() {
            let name = file.file_name().to_string_lossy().into_owned();
            let (version, _) = name.split_once('_').unwrap();
            let version: i64 = version.parse().unwrap();
            let previous = found.insert(version, (owner.clone(), name.clone()));
            assert!(
                previous.is_none(),
                "{version} is numbered twice: {previous:?}, {name}"
            );
        }
    }
    found
}

fn versions(migrator: &Migrator) -> Vec<i64> {
    migrator.iter().map(|m| m.version).collect()
}

#[test]
fn each_owner_numbers_its_migrations_alike_on_both_engines_in_its_own_thousand() {
    let (sqlite, postgres) = (owned("sqlite"), owned("postgres"));
    assert!(!sqlite.is_empty());
    assert_eq!(
        sqlite, postgres,
        "the engines' migrations differ in number or name"
    );
    let mut thousands: BTreeMap<String, BTreeSet<i64>> = BTreeMap::new();
    for (version, (owner, _)) in &sqlite {
        thousands
            .entry(owner.clone())
            .or_default()
            .insert(version / 1000);
    }
    for (owner, thousand) in &thousands {
        assert_eq!(
            thousand.len(),
            1,
            "{owner} numbers in several thousands: {thousand:?}"
        );
    }
    let distinct: BTreeSet<_> = thousands.values().flatten().collect();
    assert_eq!(
        distinct.len(),
        thousands.len(),
        "two owners share a thousand: {thousands:?}"
    );
    // Each adapter composes every owner's set: a service's migrations cannot be forgotten.
    let files: Vec<i64> = sqlite.keys().copied().collect();
    assert_eq!(versions(&oxcart_sqlite::MIGRATOR), files);
    assert_eq!(versions(&oxcart_postgres::MIGRATOR), files);
}

/// The old numbering of `engine`, kept as a fixture for these tests only.
async fn numbered_by_engine(engine: &str) -> Migrator {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/numbered-by-engine")
        .join(engine);
    Migrator::new(dir).await.unwrap()
}

/// `table.column` of every table oxcart made on SQLite.
async fn sqlite_columns(pool: &AnyPool) -> BTreeSet<String> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' \
         AND name NOT LIKE 'sqlite_%' AND name <> '_sqlx_migrations'",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let mut columns = BTreeSet::new();
    for table in tables {
        let rows = sqlx::query(&format!("SELECT name FROM pragma_table_info('{table}')"))
            .fetch_all(pool)
            .await
            .unwrap();
        for row in rows {
            columns.insert(format!("{table}.{}", row.get::<String, _>(0)));
        }
    }
    columns
}

/// `schema.table.column` of every table oxcart made on PostgreSQL.
async fn postgres_columns(pool: &AnyPool) -> BTreeSet<String> {
    let rows = sqlx::query(
        "SELECT table_schema::text, table_name::text, column_name::text FROM information_schema.columns \
         WHERE table_schema NOT IN ('pg_catalog', 'information_schema') \
         AND table_name <> '_sqlx_migrations'",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    rows.iter()
        .map(|r| {
            format!(
                "{}.{}.{}",
                r.get::<String, _>(0),
                r.get::<String, _>(1),
                r.get::<String, _>(2)
            )
        })
        .collect()
}

async fn applied(pool: &AnyPool) -> Vec<i64> {
    sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
        .fetch_all(pool)
        .await
        .unwrap()
}

async fn sqlite_file(dir: &Path, name: &str) -> (Db, AnyPool) {
    sqlx::any::install_default_drivers();
    let path = dir.join(name);
    let db = connect(&path, &SqliteConfig::default()).await.unwrap();
    let pool = AnyPool::connect(&format!("sqlite:{}", path.display()))
        .await
        .unwrap();
    (db, pool)
}

#[tokio::test]
async fn a_sqlite_database_numbered_by_engine_is_adopted_with_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let (old, old_pool) = sqlite_file(dir.path(), "old.db").await;
    old.migrate(&numbered_by_engine("sqlite").await)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO users (id, email, name, role, password_hash, created_at) \
         VALUES ('u1', 'ada@example.com', 'Ada', 'customer', 'x', '2026-01-01T00:00:00Z')",
    )
    .execute(&old_pool)
    .await
    .unwrap();

    oxcart_sqlite::migrate(&old).await.unwrap();
    assert_eq!(applied(&old_pool).await, versions(&oxcart_sqlite::MIGRATOR));
    let email: String = sqlx::query_scalar("SELECT email FROM users WHERE id = 'u1'")
        .fetch_one(&old_pool)
        .await
        .unwrap();
    assert_eq!(email, "ada@example.com");
    // Once: a second start finds nothing to adopt and nothing to apply.
    oxcart_sqlite::migrate(&old).await.unwrap();
    assert!(
        old.unapplied_migrations(&oxcart_sqlite::MIGRATOR)
            .await
            .unwrap()
            .is_empty()
    );

    // The same schema as a database made new.
    let (new, new_pool) = sqlite_file(dir.path(), "new.db").await;
    oxcart_sqlite::migrate(&new).await.unwrap();
    assert_eq!(
        sqlite_columns(&old_pool).await,
        sqlite_columns(&new_pool).await
    );
}

#[tokio::test]
async fn a_database_with_part_of_the_old_numbering_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (db, pool) = sqlite_file(dir.path(), "half.db").await;
    db.migrate(&numbered_by_engine("sqlite").await)
        .await
        .unwrap();
    sqlx::query("DELETE FROM _sqlx_migrations WHERE version = 12")
        .execute(&pool)
        .await
        .unwrap();
    let error = oxcart_sqlite::migrate(&db).await.unwrap_err().to_string();
    assert!(error.contains("only part of the schema"), "{error}");
    assert!(
        applied(&pool).await.iter().all(|v| *v <= 12),
        "history changed"
    );
}

/// What one engine needs and the other does not: on PostgreSQL appends commit
/// concurrently, so each event records its transaction for readers to follow the log in
/// commit order (`1004_commit_order.sql`); SQLite's one writer commits in position order.
const POSTGRES_ONLY: &[&str] = &["events.tx"];

/// Every service's tables, with the same columns, on both engines: on PostgreSQL in the
/// service's schema, on SQLite in the one file.
#[tokio::test]
#[ignore = "needs PostgreSQL (.ci/services)"]
async fn both_engines_end_with_the_same_tables_and_columns() {
    let (_db, database) = TestDatabase::migrated().await;
    let postgres = postgres_columns(&database.pool().await).await;
    let dir = tempfile::tempdir().unwrap();
    let (sqlite, pool) = sqlite_file(dir.path(), "oxcart.db").await;
    oxcart_sqlite::migrate(&sqlite).await.unwrap();
    let sqlite = sqlite_columns(&pool).await;

    let unqualified: BTreeSet<String> = postgres
        .iter()
        .map(|c| c.split_once('.').unwrap().1.to_owned())
        .filter(|c| !POSTGRES_ONLY.contains(&c.as_str()))
        .collect();
    assert_eq!(unqualified, sqlite);
    // And each service keeps its tables in its own schema.
    let schemas: BTreeSet<&str> = postgres
        .iter()
        .map(|c| c.split('.').next().unwrap())
        .collect();
    for schema in [
        "eventlog",
        "users",
        "catalog",
        "orders",
        "payments",
        "analytics",
        "webhooks",
    ] {
        assert!(schemas.contains(schema), "no {schema} schema: {schemas:?}");
    }
}

#[tokio::test]
#[ignore = "needs PostgreSQL (.ci/services)"]
async fn a_postgres_database_numbered_by_engine_is_adopted_with_its_data() {
    let old = TestDatabase::create().await;
    let pool = old.pool().await;
    numbered_by_engine("postgres")
        .await
        .run(&pool)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO users.users (id, email, name, role, password_hash, created_at) \
         VALUES ('u1', 'ada@example.com', 'Ada', 'customer', 'x', '2026-01-01T00:00:00Z')",
    )
    .execute(&pool)
    .await
    .unwrap();

    oxcart_postgres::migrate(&old.direct_url).await.unwrap();
    assert_eq!(applied(&pool).await, versions(&oxcart_postgres::MIGRATOR));
    let email: String = sqlx::query_scalar("SELECT email FROM users.users WHERE id = 'u1'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(email, "ada@example.com");
    oxcart_postgres::migrate(&old.direct_url).await.unwrap();

    let (_db, new) = TestDatabase::migrated().await;
    assert_eq!(
        postgres_columns(&pool).await,
        postgres_columns(&new.pool().await).await
    );
}
