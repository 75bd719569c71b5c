//! A fresh PostgreSQL database per test, on the server the machine runs.
//!
//! `OXCART_TEST_POSTGRES` names a role that may create databases, connected directly
//! (default `postgres://postgres@127.0.0.1:5432/postgres`). `OXCART_TEST_PGBOUNCER`, when
//! set, is a PgBouncer in front of that server (`postgres://postgres@127.0.0.1:6432`,
//! with a `*` fallback database): the application then connects through it, while
//! migrations and the test's own checks go direct.

use sqlx::any::AnyPoolOptions;
use sqlx::{AnyPool, Executor};
use uuid::Uuid;

const DEFAULT: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// The server's address without a database: `postgres://user@host:port`.
fn server(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    match rest.find('/') {
        Some(slash) => &url[..url.len() - rest.len() + slash],
        None => url,
    }
}

/// A database that exists for one test and is dropped after it.
#[derive(Debug)]
pub struct TestDatabase {
    name: String,
    admin: String,
    /// The database, directly.
    pub direct_url: String,
    /// The database as the application should reach it: through PgBouncer when the
    /// suite runs behind one, else directly.
    pub url: String,
}

impl TestDatabase {
    pub async fn create() -> Self {
        sqlx::any::install_default_drivers();
        let admin = std::env::var("OXCART_TEST_POSTGRES").unwrap_or_else(|_| DEFAULT.to_owned());
        let name = format!("oxcart_test_{}", Uuid::new_v4().simple());
        let pool = admin_pool(&admin).await;
        pool.execute(format!("CREATE DATABASE {name}").as_str())
            .await
            .unwrap_or_else(|e| panic!("cannot create a test database at {admin}: {e}"));
        pool.close().await;
        let direct_url = format!("{}/{name}", server(&admin));
        let url = match std::env::var("OXCART_TEST_PGBOUNCER") {
            Ok(bouncer) if !bouncer.is_empty() => format!("{}/{name}", server(&bouncer)),
            _ => direct_url.clone(),
        };
        Self {
            name,
            admin,
            direct_url,
            url,
        }
    }

    /// A fresh database with oxcart's schema, and the handle the application would open
    /// on it (through PgBouncer when the suite runs behind one).
    pub async fn migrated() -> (oxcart_db::Db, Self) {
        let database = Self::create().await;
        oxcart_postgres::migrate(&database.direct_url)
            .await
            .expect("the migrations apply");
        let db = oxcart_postgres::connect(&database.url, &[], &Default::default())
            .await
            .expect("connects to the test database");
        (db, database)
    }

    /// This database on another server of the same cluster (a replica):
    /// `postgres://user@host:port` and the database's name.
    pub fn on(&self, server_url: &str) -> String {
        format!("{}/{}", server(server_url), self.name)
    }

    /// A pool on the database, directly, for a test's own checks.
    pub async fn pool(&self) -> AnyPool {
        AnyPoolOptions::new()
            .max_connections(4)
            .connect(&self.direct_url)
            .await
            .expect("connects to the test database")
    }
}

async fn admin_pool(admin: &str) -> AnyPool {
    AnyPoolOptions::new()
        .max_connections(1)
        .connect(admin)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "PostgreSQL is not reachable at {admin} ({e}); start it, or point \
                 OXCART_TEST_POSTGRES at a server where this role may create databases"
            )
        })
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        drop(crate::cleanup::Cleanup::new(move || async move {
            let pool = admin_pool(&admin).await;
            let _ = pool
                .execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
                .await;
            pool.close().await;
        }));
    }
}

/// Restarts the PostgreSQL primary (`pg_ctl restart -m fast`: every session is cut) with
/// the script `.ci/services` leaves for it, and waits until it accepts connections again.
pub async fn restart_server() {
    let script = crate::services::dir().join("postgres").join("restart");
    let output = tokio::process::Command::new(&script)
        .output()
        .await
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    assert!(
        output.status.success(),
        "{} failed: {}",
        script.display(),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_part_of_a_url() {
        assert_eq!(
            server("postgres://postgres@127.0.0.1:5432/postgres"),
            "postgres://postgres@127.0.0.1:5432"
        );
        assert_eq!(server("postgres://u@h:6432"), "postgres://u@h:6432");
    }
}
