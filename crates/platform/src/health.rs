//! `/health/live` and `/health/ready`.
//!
//! Liveness says only that the process answers: a failing database must not get the
//! process restarted. Readiness runs every registered check (database reachable,
//! migrations applied, later the broker) and answers 503 while any fails, so traffic is
//! withheld until the instance can serve it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use http::HeaderValue;
use oxcart_db::Db;
use serde_json::json;
use sqlx::migrate::Migrator;

use crate::http::Json;
use crate::problem::{ApiError, ProblemKind};

#[async_trait::async_trait]
pub trait Check: Send + Sync {
    fn name(&self) -> &'static str;
    async fn check(&self) -> Result<(), String>;
}

const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Clone, Default)]
pub struct Health {
    checks: Vec<Arc<dyn Check>>,
}

impl Health {
    pub fn with(mut self, check: impl Check + 'static) -> Self {
        self.checks.push(Arc::new(check));
        self
    }

    /// Runs every check concurrently; the map holds "ok" or the failure per check.
    pub async fn report(&self) -> (bool, BTreeMap<&'static str, String>) {
        let results = futures::future::join_all(self.checks.iter().map(|check| async move {
            let outcome = match tokio::time::timeout(CHECK_TIMEOUT, check.check()).await {
                Ok(outcome) => outcome,
                Err(_) => Err(format!("no answer within {}s", CHECK_TIMEOUT.as_secs())),
            };
            (check.name(), outcome)
        }))
        .await;
        let ready = results.iter().all(|(_, outcome)| outcome.is_ok());
        let report = results
            .into_iter()
            .map(|(name, outcome)| (name, outcome.err().unwrap_or_else(|| "ok".to_owned())))
            .collect();
        (ready, report)
    }

    pub fn router(self) -> Router {
        Router::new()
            .route(
                "/health/live",
                get(|| async { Json(json!({ "status": "live" })) }),
            )
            .route("/health/ready", get(ready))
            .with_state(self)
    }
}

async fn ready(State(health): State<Health>) -> Result<Json<serde_json::Value>, ApiError> {
    let (ready, checks) = health.report().await;
    if ready {
        Ok(Json(json!({ "status": "ready", "checks": checks })))
    } else {
        Err(ApiError::new(ProblemKind::Unavailable)
            .with_detail("not ready to serve traffic")
            .with_extension("checks", json!(checks))
            .with_header(http::header::RETRY_AFTER, HeaderValue::from_static("5")))
    }
}

/// Readiness: the database answers.
pub struct DatabaseReachable(pub Db);

#[async_trait::async_trait]
impl Check for DatabaseReachable {
    fn name(&self) -> &'static str {
        "database"
    }

    async fn check(&self) -> Result<(), String> {
        oxcart_db::query("SELECT 1")
            .execute(&mut *self.0.read().await.map_err(|e| e.to_string())?)
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    }
}

/// Readiness: every migration this build knows of has been applied.
pub struct DatabaseMigrated(pub Db, pub &'static Migrator);

#[async_trait::async_trait]
impl Check for DatabaseMigrated {
    fn name(&self) -> &'static str {
        "migrations"
    }

    async fn check(&self) -> Result<(), String> {
        match self.0.unapplied_migrations(self.1).await {
            Ok(missing) if missing.is_empty() => Ok(()),
            Ok(missing) => Err(format!(
                "{} migrations not applied; run `oxcart migrate`",
                missing.len()
            )),
            Err(error) => Err(format!(
                "migrations not applied ({error}); run `oxcart migrate`"
            )),
        }
    }
}
