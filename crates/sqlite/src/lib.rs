//! The SQLite adapter: the all-in-one default.
//!
//! [`connect`] opens the database file in WAL mode with one writer connection and a pool
//! of read-only readers, and [`MIGRATOR`] holds the whole SQLite schema, composed from
//! its owners' migrations (`oxcart_db::schema`). The stores
//! themselves (the event store in `oxcart-sql`, the services' tables in their crates) are
//! written once, in SQL that PostgreSQL speaks too; only what differs between the engines
//! lives here.

use std::path::{Path, PathBuf};

use std::ops::RangeInclusive;
use std::sync::LazyLock;

use oxcart_db::schema;
use oxcart_db::{self as db, Db};
use serde::{Deserialize, Serialize};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::Migrator;
use sqlx::{ConnectOptions, Connection, Executor};

/// The whole SQLite schema: every owner's migrations (`oxcart_db::schema`), found by
/// `build.rs` in each crate with a `migrations/sqlite` directory.
pub static MIGRATOR: LazyLock<Migrator> =
    LazyLock::new(|| schema::compose(&include!(concat!(env!("OUT_DIR"), "/owners.rs"))));

/// The numbering this engine's migrations had before they moved to their owners.
const NUMBERED_BY_ENGINE: RangeInclusive<i64> = 1..=12;

/// Applies the pending migrations, after renumbering the history of a database migrated
/// before migrations moved to their owners.
pub async fn migrate(db: &Db) -> Result<(), sqlx::migrate::MigrateError> {
    db.adopt_history(NUMBERED_BY_ENGINE, &MIGRATOR).await?;
    db.migrate(&MIGRATOR).await
}

/// How hard SQLite works to keep a commit through a power cut.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Synchronous {
    /// fsync on every commit: an acknowledged write survives power loss.
    #[default]
    Full,
    /// fsync at checkpoints only: survives a crash of the process, not of the machine.
    Normal,
}

/// The `[database.sqlite]` section of the configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SqliteConfig {
    pub synchronous: Synchronous,
    /// Size of the read-only connection pool.
    pub reader_connections: u32,
}

impl Default for SqliteConfig {
    fn default() -> Self {
        Self {
            synchronous: Synchronous::Full,
            reader_connections: db::default_reader_connections(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("`{0}` is not a SQLite URL (expected sqlite:<path>)")]
    NotSqlite(String),
    #[error("in-memory SQLite databases are not supported; give a file path")]
    InMemory,
    #[error("cannot create the data directory {path}")]
    CreateDir {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot open the SQLite database at {path}")]
    Open { path: String, source: sqlx::Error },
}

/// The database file a `sqlite:` URL names: `sqlite:data/x.db`, `sqlite://data/x.db` or
/// `sqlite:///abs/x.db`. Query parameters are ignored; oxcart sets its own.
pub fn path_from_url(url: &str) -> Result<PathBuf, Error> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .ok_or_else(|| Error::NotSqlite(url.to_owned()))?;
    let path = rest.split('?').next().unwrap_or_default();
    if path.is_empty() || path == ":memory:" {
        return Err(Error::InMemory);
    }
    Ok(PathBuf::from(path))
}

fn url(path: &Path, mode: &str) -> String {
    let mut encoded = String::new();
    for c in path.to_string_lossy().chars() {
        match c {
            '%' | '?' | '#' | ' ' => encoded.push_str(&format!("%{:02X}", c as u32)),
            c => encoded.push(c),
        }
    }
    format!("sqlite://{encoded}?mode={mode}")
}

/// Opens (creating if needed) the database at `path`.
pub async fn connect(path: &Path, config: &SqliteConfig) -> Result<Db, Error> {
    sqlx::any::install_default_drivers();
    let path = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    let shown = path.display().to_string();
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|source| Error::CreateDir {
            path: parent.display().to_string(),
            source,
        })?;
    }
    let open = |source| Error::Open {
        path: shown.clone(),
        source,
    };

    let writer_url = url(&path, "rwc");
    let writer_options: AnyConnectOptions = writer_url.parse().map_err(open)?;
    // WAL is a property of the file and needs an exclusive lock to set, so it is set once
    // here, before the pools open: readers then never block the writer, nor it them.
    let mut conn = writer_options.connect().await.map_err(open)?;
    conn.execute("PRAGMA journal_mode = WAL")
        .await
        .map_err(open)?;
    conn.close().await.map_err(open)?;

    let synchronous = match config.synchronous {
        Synchronous::Full => "PRAGMA synchronous = FULL",
        Synchronous::Normal => "PRAGMA synchronous = NORMAL",
    };
    let writer = AnyPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(db::ACQUIRE_TIMEOUT)
        .after_connect(move |conn, _| {
            Box::pin(async move { conn.execute(synchronous).await.map(drop) })
        })
        .connect_with(writer_options)
        .await
        .map_err(open)?;
    let reader = AnyPoolOptions::new()
        .max_connections(config.reader_connections.max(1))
        .acquire_timeout(db::ACQUIRE_TIMEOUT)
        .connect(&url(&path, "ro"))
        .await
        .map_err(open)?;
    Ok(Db::sqlite(writer, reader))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_name_a_file() {
        assert_eq!(
            path_from_url("sqlite:data/x.db").unwrap(),
            PathBuf::from("data/x.db")
        );
        assert_eq!(
            path_from_url("sqlite://data/x.db?mode=rwc").unwrap(),
            PathBuf::from("data/x.db")
        );
        assert_eq!(
            path_from_url("sqlite:///var/lib/x.db").unwrap(),
            PathBuf::from("/var/lib/x.db")
        );
        assert!(matches!(
            path_from_url("sqlite::memory:"),
            Err(Error::InMemory)
        ));
        assert!(matches!(
            path_from_url("postgres://localhost/x"),
            Err(Error::NotSqlite(_))
        ));
    }

    #[test]
    fn awkward_paths_are_escaped() {
        assert_eq!(
            url(Path::new("/tmp/a b?#%.db"), "ro"),
            "sqlite:///tmp/a%20b%3F%23%25.db?mode=ro"
        );
    }
}
