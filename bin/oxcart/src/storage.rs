//! Opening the configured database, applying its migrations, and the token signing key.

use std::sync::Arc;

use anyhow::Context as _;
use oxcart_db::{Backend, Db};
use oxcart_platform::auth::SigningKey;
use secrecy::ExposeSecret;
use sqlx::migrate::Migrator;

use crate::config::Config;

/// Opens the configured database: a SQLite file, or PostgreSQL and its replicas.
pub async fn open_database(config: &Config) -> anyhow::Result<Db> {
    let url = config.database_url();
    if oxcart_postgres::is_postgres_url(&url) {
        return Ok(oxcart_postgres::connect(
            &url,
            &config.database_read_urls(),
            &config.database.postgres,
        )
        .await?);
    }
    let path = oxcart_sqlite::path_from_url(&url).with_context(|| {
        format!(
            "unsupported DATABASE_URL `{}`: expected sqlite:<path> or postgres://…",
            oxcart_postgres::redact(&url)
        )
    })?;
    Ok(oxcart_sqlite::connect(&path, &config.database.sqlite).await?)
}

/// The schema this build keeps on `db`'s engine.
pub fn migrator(db: &Db) -> &'static Migrator {
    match db.backend() {
        Backend::Sqlite => &oxcart_sqlite::MIGRATOR,
        Backend::Postgres => &oxcart_postgres::MIGRATOR,
    }
}

/// Applies the pending migrations: on SQLite through `db`, on PostgreSQL over a direct
/// connection to `database_migration_url`.
pub async fn migrate(config: &Config, db: &Db) -> anyhow::Result<()> {
    match db.backend() {
        Backend::Sqlite => oxcart_sqlite::migrate(db).await?,
        // Only when something is pending: the migrator's session-level lock and named
        // statements must not go through a transaction-pooling PgBouncer, and a process
        // pointed at one with nothing to apply then never touches them.
        Backend::Postgres
            if db
                .unapplied_migrations(&oxcart_postgres::MIGRATOR)
                .await
                .is_ok_and(|pending| pending.is_empty()) => {}
        Backend::Postgres => oxcart_postgres::migrate(&config.database_migration_url()).await?,
    }
    Ok(())
}

/// The token signing key: from configuration, or kept in the data directory.
pub fn signing_key(config: &Config) -> anyhow::Result<Arc<SigningKey>> {
    let key = match &config.auth.jwt_private_key {
        Some(pem) => SigningKey::from_pem(pem.expose_secret()).context("auth.jwt_private_key")?,
        None => SigningKey::load_or_generate(&config.signing_key_path())?,
    };
    Ok(Arc::new(key))
}
