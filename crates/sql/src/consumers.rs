//! The consumer side of the log, in tables: group positions and dead letters.

use async_trait::async_trait;
use chrono::Utc;
use oxcart_db::{self as db, Db};
use oxcart_events::RecordedEvent;
use oxcart_events::bus::Checkpoints;
use oxcart_events::consumer::{DeadLetter, DeadLetters};
use oxcart_events::store::BoxError;
use sqlx::Row;
use sqlx::any::AnyRow;
use uuid::Uuid;

/// Consumer-group positions in `projection_checkpoints`.
#[derive(Debug, Clone)]
pub struct DbCheckpoints(pub Db);

#[async_trait]
impl Checkpoints for DbCheckpoints {
    async fn load(&self, name: &str) -> Result<i64, BoxError> {
        let mut conn = self.0.read_primary().await?;
        Ok(db::checkpoint(&mut conn, name).await?)
    }

    async fn save(&self, name: &str, position: i64) -> Result<(), BoxError> {
        let mut tx = self.0.begin().await?;
        db::save_checkpoint(&mut tx, name, position).await?;
        Ok(tx.commit().await?)
    }
}

/// Dead letters in the `dead_letters` table.
#[derive(Debug, Clone)]
pub struct DbDeadLetters(pub Db);

const COLUMNS: &str = "id, consumer, event, error, attempts, parked_at, resolved_at";

fn decode(row: &AnyRow) -> Result<DeadLetter, BoxError> {
    let event: String = row.try_get("event")?;
    let resolved: Option<String> = row.try_get("resolved_at")?;
    Ok(DeadLetter {
        id: row.try_get::<String, _>("id")?.parse()?,
        group: row.try_get("consumer")?,
        event: RecordedEvent::from_json(serde_json::from_str(&event)?)?,
        error: row.try_get("error")?,
        attempts: u32::try_from(row.try_get::<i64, _>("attempts")?)?,
        parked_at: db::parse_timestamp(&row.try_get::<String, _>("parked_at")?)?,
        resolved_at: resolved.as_deref().map(db::parse_timestamp).transpose()?,
    })
}

#[async_trait]
impl DeadLetters for DbDeadLetters {
    async fn park(
        &self,
        group: &str,
        event: &RecordedEvent,
        error: &str,
        attempts: u32,
    ) -> Result<Uuid, BoxError> {
        let mut tx = self.0.begin().await?;
        let id: String = db::query_scalar(
            "INSERT INTO dead_letters (id, consumer, event_id, event, error, attempts, parked_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (consumer, event_id) DO UPDATE SET error = excluded.error, \
             attempts = dead_letters.attempts + excluded.attempts, resolved_at = NULL \
             RETURNING id",
        )
        .bind(Uuid::now_v7().to_string())
        .bind(group)
        .bind(event.event.event_id.to_string())
        .bind(event.to_json().to_string())
        .bind(error)
        .bind(i64::from(attempts))
        .bind(db::timestamp(Utc::now()))
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(id.parse()?)
    }

    async fn list(
        &self,
        group: Option<&str>,
        include_resolved: bool,
    ) -> Result<Vec<DeadLetter>, BoxError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM dead_letters WHERE ($1 IS NULL OR consumer = $1) \
             AND ($2 = 1 OR resolved_at IS NULL) ORDER BY parked_at, id"
        );
        let rows = db::query(&sql)
            .bind(group)
            .bind(i64::from(include_resolved))
            .fetch_all(&mut *self.0.read_primary().await?)
            .await?;
        rows.iter().map(decode).collect()
    }

    async fn get(&self, id: Uuid) -> Result<Option<DeadLetter>, BoxError> {
        let sql = format!("SELECT {COLUMNS} FROM dead_letters WHERE id = $1");
        let row = db::query(&sql)
            .bind(id.to_string())
            .fetch_optional(&mut *self.0.read_primary().await?)
            .await?;
        row.as_ref().map(decode).transpose()
    }

    async fn resolve(&self, id: Uuid) -> Result<(), BoxError> {
        let mut tx = self.0.begin().await?;
        db::query("UPDATE dead_letters SET resolved_at = $1 WHERE id = $2")
            .bind(db::timestamp(Utc::now()))
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        Ok(tx.commit().await?)
    }

    async fn record_failure(&self, id: Uuid, error: &str) -> Result<(), BoxError> {
        let mut tx = self.0.begin().await?;
        db::query("UPDATE dead_letters SET attempts = attempts + 1, error = $1 WHERE id = $2")
            .bind(error)
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        Ok(tx.commit().await?)
    }

    async fn depth(&self) -> Result<Vec<(String, u64)>, BoxError> {
        let rows = db::query(
            "SELECT consumer, COUNT(*) AS n FROM dead_letters WHERE resolved_at IS NULL GROUP BY consumer",
        )
        .fetch_all(&mut *self.0.read_primary().await?)
        .await?;
        rows.iter()
            .map(|row| {
                Ok((
                    row.try_get("consumer")?,
                    u64::try_from(row.try_get::<i64, _>("n")?)?,
                ))
            })
            .collect()
    }
}
