//! The schema, composed from its owners' migrations.
//!
//! Each owner of tables keeps its migrations beside its code, one directory per engine
//! with the same numbers in both (`crates/orders/migrations/{sqlite,postgres}/4001_….sql`).
//! An owner's numbers are its own thousand: the event log and the consumers' bookkeeping
//! (`oxcart-sql`) 1000, users 2000, catalog 3000, orders 4000, payments 5000,
//! notifications 6000, invoices 7000, analytics 8000, webhooks 9000. The engine's adapter
//! (`oxcart-sqlite`, `oxcart-postgres`) finds every crate with such a directory when it
//! is built, and composes their sets into the one migrator it runs with [`compose`]:
//! owners apply in the order of their numbers, and a migration one owner adds later is
//! applied wherever it falls.
//!
//! Before migrations lived with their owners, each engine numbered the whole schema in
//! one sequence of its own (1 to 12 on SQLite, 1 to 10 on PostgreSQL). A database
//! migrated then has exactly the schema of [`OWNED_SINCE`]'s versions; [`adopt`] rewrites
//! its history to those, once, so that it goes on from there like a new one.

use std::ops::RangeInclusive;

use futures::future::BoxFuture;
use sqlx::AnyPool;
use sqlx::error::BoxDynError;
use sqlx::migrate::{MigrateError, Migration, MigrationSource, Migrator};

use crate::query_scalar;

/// The migrations of every owner in `owners`, as one migrator, in version order.
///
/// # Panics
/// When two owners claim one version: a mistake in the source tree, which the adapters'
/// tests find first.
pub fn compose(owners: &[Migrator]) -> Migrator {
    let mut all: Vec<Migration> = owners.iter().flat_map(|m| m.iter().cloned()).collect();
    all.sort_by_key(|m| m.version);
    if let Some(pair) = all
        .windows(2)
        .find(|pair| pair[0].version == pair[1].version)
    {
        panic!(
            "two migrations are numbered {}: `{}` and `{}`",
            pair[0].version, pair[0].description, pair[1].description
        );
    }
    // Resolving a list already in memory finishes at once.
    futures::executor::block_on(Migrator::new(Listed(all))).expect("a listed source resolves")
}

/// Migrations already in memory, as a source the migrator takes.
#[derive(Debug)]
struct Listed(Vec<Migration>);

impl MigrationSource<'static> for Listed {
    fn resolve(self) -> BoxFuture<'static, Result<Vec<Migration>, BoxDynError>> {
        Box::pin(async move { Ok(self.0) })
    }
}

/// The versions that make up the schema as it stood when migrations moved to their
/// owners: what a database migrated under the old numbering has.
pub const OWNED_SINCE: &[i64] = &[
    1001, 1002, 1003, 1004, 2001, 3001, 3002, 4001, 5001, 6001, 7001, 8001, 8002,
];

/// Rewrites the history of a database migrated under an engine's old numbering (`old`:
/// every version of it, applied) to the [`OWNED_SINCE`] versions of `migrator`, in one
/// transaction, and says whether it did. A database with no history, or one already
/// numbered by owners, is left alone. One with part of the old numbering (a migration
/// that failed, or an older oxcart that never finished) is refused: its schema is not
/// the one the new history would claim.
pub async fn adopt(
    pool: &AnyPool,
    old: RangeInclusive<i64>,
    migrator: &Migrator,
) -> Result<bool, MigrateError> {
    // No table yet: a new database.
    let Ok(applied) = query_scalar::<i64>("SELECT version FROM _sqlx_migrations WHERE success")
        .fetch_all(pool)
        .await
    else {
        return Ok(false);
    };
    let failed: Vec<i64> = query_scalar("SELECT version FROM _sqlx_migrations WHERE NOT success")
        .fetch_all(pool)
        .await?;
    let mut before: Vec<i64> = applied.into_iter().filter(|v| old.contains(v)).collect();
    if before.is_empty() {
        return Ok(false);
    }
    before.sort_unstable();
    if before != old.clone().collect::<Vec<_>>() || !failed.is_empty() {
        return Err(MigrateError::Execute(sqlx::Error::Protocol(format!(
            "this database has only part of the schema of the oxcart release before \
             migrations moved to their owners (versions {before:?} of {}..={}, failed \
             {failed:?}); run that release's `oxcart migrate` to finish it first",
            old.start(),
            old.end()
        ))));
    }
    let mut tx = pool.begin().await?;
    crate::query("DELETE FROM _sqlx_migrations WHERE version >= $1 AND version <= $2")
        .bind(*old.start())
        .bind(*old.end())
        .execute(&mut *tx)
        .await?;
    for migration in migrator.iter().filter(|m| OWNED_SINCE.contains(&m.version)) {
        crate::query(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
             VALUES ($1, $2, TRUE, $3, 0) ON CONFLICT (version) DO NOTHING",
        )
        .bind(migration.version)
        .bind(migration.description.to_string())
        .bind(migration.checksum.to_vec())
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    tracing::info!(
        from = %format!("{}..={}", old.start(), old.end()),
        "the migration history is renumbered by owner; the schema is unchanged"
    );
    Ok(true)
}
