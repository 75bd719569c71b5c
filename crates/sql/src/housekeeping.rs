//! The consumers' tables, kept from growing forever: the inbox (`processed_events`) and
//! resolved dead letters.
//!
//! A group remembers an event it applied only so that a redelivery is recognised. Once
//! nothing can deliver the event to it again, the row is dead weight:
//! - on the embedded log, a group is handed events after its position only, so the rows
//!   of events at or before its position go ([`Inbox::passed`]);
//! - with Kafka, the group's offsets are Kafka's, not the database's; a record older than
//!   the topic's retention no longer exists to be delivered, so rows of events older than
//!   that go ([`Inbox::older_than`]). Event ids are UUIDv7, which sort by time as stored,
//!   so this is a range of the inbox's primary key.

use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use oxcart_db::{self as db, Db};
use oxcart_events::chore::Chore;
use oxcart_events::store::BoxError;
use uuid::Uuid;

/// Rows one statement deletes at most, so a large backlog is pruned in short
/// transactions that leave the writer to the requests in between.
const BATCH: i64 = 2000;
/// Statements one round runs at most per group: the rest waits for the next round.
const BATCHES_PER_ROUND: usize = 50;

/// When a group's inbox row may go.
#[derive(Debug, Clone, Copy)]
enum Rule {
    /// Its event is at or before the group's position.
    Passed,
    /// Its event is older than this.
    OlderThan(Duration),
}

/// Prunes the inbox rows of `groups`.
pub struct Inbox {
    db: Db,
    groups: Vec<&'static str>,
    rule: Rule,
}

impl Inbox {
    /// On the embedded log: rows of events at or before each group's position.
    pub fn passed(db: Db, groups: Vec<&'static str>) -> Self {
        Self {
            db,
            groups,
            rule: Rule::Passed,
        }
    }

    /// With Kafka: rows of events older than `retention` (the topics' retention).
    pub fn older_than(db: Db, groups: Vec<&'static str>, retention: Duration) -> Self {
        Self {
            db,
            groups,
            rule: Rule::OlderThan(retention),
        }
    }

    async fn prune(&self, group: &str) -> Result<u64, BoxError> {
        let (sql, bound) = match self.rule {
            Rule::Passed => (
                "DELETE FROM processed_events WHERE consumer = $1 AND event_id IN (\
                   SELECT p.event_id FROM processed_events p JOIN events e ON e.event_id = p.event_id \
                   WHERE p.consumer = $1 AND e.position <= \
                     (SELECT position FROM projection_checkpoints WHERE name = $1) \
                   LIMIT $2)",
                None,
            ),
            Rule::OlderThan(retention) => (
                "DELETE FROM processed_events WHERE consumer = $1 AND event_id IN (\
                   SELECT event_id FROM processed_events WHERE consumer = $1 AND event_id < $3 \
                   LIMIT $2)",
                Some(first_id_at(Utc::now() - retention).to_string()),
            ),
        };
        let mut removed = 0;
        for _ in 0..BATCHES_PER_ROUND {
            let mut tx = self.db.begin().await?;
            let mut statement = db::query(sql).bind(group).bind(BATCH);
            if let Some(bound) = &bound {
                statement = statement.bind(bound.clone());
            }
            let deleted = statement.execute(&mut *tx).await?.rows_affected();
            tx.commit().await?;
            removed += deleted;
            if deleted < BATCH.unsigned_abs() {
                break;
            }
        }
        Ok(removed)
    }
}

/// The smallest UUIDv7 of the millisecond `at`: every event id made before `at` sorts
/// below it (as a UUID, and as the lower-case text the tables keep).
pub fn first_id_at(at: chrono::DateTime<Utc>) -> Uuid {
    let millis = u128::try_from(at.timestamp_millis()).unwrap_or(0) & ((1 << 48) - 1);
    Uuid::from_u128((millis << 80) | (0x7 << 76) | (0b10 << 62))
}

#[async_trait]
impl Chore for Inbox {
    fn name(&self) -> &'static str {
        "inbox"
    }

    async fn run(&self) -> Result<u64, BoxError> {
        let mut removed = 0;
        for group in &self.groups {
            removed += self.prune(group).await?;
        }
        Ok(removed)
    }
}

/// Deletes dead letters resolved (replayed or dismissed) longer than `retention` ago;
/// those still waiting are kept whatever their age.
pub struct ResolvedDeadLetters {
    pub db: Db,
    pub retention: Duration,
}

#[async_trait]
impl Chore for ResolvedDeadLetters {
    fn name(&self) -> &'static str {
        "dead_letters"
    }

    async fn run(&self) -> Result<u64, BoxError> {
        let before = db::timestamp(Utc::now() - self.retention);
        let mut tx = self.db.begin().await?;
        let removed = db::query(
            "DELETE FROM dead_letters WHERE resolved_at IS NOT NULL AND resolved_at < $1",
        )
        .bind(before)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_made_before_a_moment_sort_below_its_first_id() {
        let before = Uuid::now_v7();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let bound = first_id_at(Utc::now());
        let after = Uuid::now_v7();
        assert_eq!(bound.get_version_num(), 7);
        assert!(before < bound && bound <= after);
        assert!(
            before.to_string() < bound.to_string(),
            "text sorts like the id"
        );
        assert!(bound.to_string() <= after.to_string());
    }
}
