//! Checkpoints and dead letters in the state table (`pk` string, `sk` string).
//!
//! | item | `pk` | `sk` |
//! | --- | --- | --- |
//! | a checkpoint | `checkpoint` | its name (`sqs-relay`) |
//! | a dead letter | `dead-letter` | its id |
//!
//! A dead letter's id is derived from its group and event, so parking the same event twice
//! (a redelivery that failed again) updates one item: parking is idempotent without a read.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};
use oxcart_events::bus::Checkpoints;
use oxcart_events::consumer::{DeadLetter, DeadLetters, count_by_group};
use oxcart_events::envelope::{Position, RecordedEvent};
use oxcart_events::store::{BoxError, Error};
use uuid::Uuid;

use crate::event_store::{create_table, n, number};
use crate::{applied, boxed};

const CHECKPOINT: &str = "checkpoint";
const DEAD_LETTER: &str = "dead-letter";
/// Namespace of dead-letter ids (v5 of `group:event id`).
const LETTERS: Uuid = Uuid::from_u128(0x6f78_6361_7274_2d64_6561_642d_6c65_7474);

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

/// Creates the state table as Terraform does, for tests and local runs.
pub async fn create_state_table(client: &Client, table: &str) -> Result<(), Error> {
    create_table(client, table, "S", false).await
}

/// Named positions in the log, one item each.
#[derive(Debug, Clone)]
pub struct DynamoCheckpoints {
    client: Client,
    table: String,
}

impl DynamoCheckpoints {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }
}

#[async_trait]
impl Checkpoints for DynamoCheckpoints {
    async fn load(&self, name: &str) -> Result<Position, BoxError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(CHECKPOINT))
            .key("sk", s(name))
            .consistent_read(true)
            .send()
            .await
            .map_err(boxed)?;
        Ok(match output.item() {
            Some(item) => number(item, "position")?,
            None => 0,
        })
    }

    async fn save(&self, name: &str, position: Position) -> Result<(), BoxError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(CHECKPOINT))
            .item("sk", s(name))
            .item("position", n(position))
            .send()
            .await
            .map_err(boxed)?;
        Ok(())
    }
}

/// Events a consumer gave up on, one item each.
#[derive(Debug, Clone)]
pub struct DynamoDeadLetters {
    client: Client,
    table: String,
}

impl DynamoDeadLetters {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    /// Sets `update` on an existing letter; a missing one is left missing.
    async fn update_existing(
        &self,
        id: Uuid,
        update: &str,
        values: Vec<(&str, AttributeValue)>,
    ) -> Result<(), BoxError> {
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(DEAD_LETTER))
            .key("sk", s(id.to_string()))
            .update_expression(update)
            .condition_expression("attribute_exists(pk)");
        if update.contains("#error") {
            request = request.expression_attribute_names("#error", "error");
        }
        for (name, value) in values {
            request = request.expression_attribute_values(name, value);
        }
        applied(
            request.send().await,
            UpdateItemError::is_conditional_check_failed_exception,
        )?;
        Ok(())
    }
}

#[async_trait]
impl DeadLetters for DynamoDeadLetters {
    async fn park(
        &self,
        group: &str,
        event: &RecordedEvent,
        error: &str,
        attempts: u32,
    ) -> Result<Uuid, BoxError> {
        let id = Uuid::new_v5(
            &LETTERS,
            format!("{group}:{}", event.event.event_id).as_bytes(),
        );
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(DEAD_LETTER))
            .key("sk", s(id.to_string()))
            .update_expression(
                "SET #group = :group, #event = :event, #error = :error, \
                 parkedAt = if_not_exists(parkedAt, :now), \
                 attempts = if_not_exists(attempts, :zero) + :attempts \
                 REMOVE resolvedAt",
            )
            .expression_attribute_names("#group", "group")
            .expression_attribute_names("#event", "event")
            .expression_attribute_names("#error", "error")
            .expression_attribute_values(":group", s(group))
            .expression_attribute_values(":event", s(event.to_json().to_string()))
            .expression_attribute_values(":error", s(error))
            .expression_attribute_values(":now", s(Utc::now().to_rfc3339()))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":attempts", n(attempts))
            .send()
            .await
            .map_err(boxed)?;
        Ok(id)
    }

    async fn list(
        &self,
        group: Option<&str>,
        include_resolved: bool,
    ) -> Result<Vec<DeadLetter>, BoxError> {
        let items = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s(DEAD_LETTER))
            .consistent_read(true)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(boxed)?;
        let mut letters = Vec::new();
        for item in &items {
            let letter = letter(item)?;
            if group.is_none_or(|g| g == letter.group)
                && (include_resolved || letter.resolved_at.is_none())
            {
                letters.push(letter);
            }
        }
        letters.sort_by_key(|l| (l.parked_at, l.id));
        Ok(letters)
    }

    async fn get(&self, id: Uuid) -> Result<Option<DeadLetter>, BoxError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(DEAD_LETTER))
            .key("sk", s(id.to_string()))
            .consistent_read(true)
            .send()
            .await
            .map_err(boxed)?;
        output.item().map(letter).transpose()
    }

    async fn resolve(&self, id: Uuid) -> Result<(), BoxError> {
        self.update_existing(
            id,
            "SET resolvedAt = :now",
            vec![(":now", s(Utc::now().to_rfc3339()))],
        )
        .await
    }

    async fn record_failure(&self, id: Uuid, error: &str) -> Result<(), BoxError> {
        self.update_existing(
            id,
            "SET attempts = attempts + :one, #error = :error",
            vec![(":one", n(1)), (":error", s(error))],
        )
        .await
    }

    async fn depth(&self) -> Result<Vec<(String, u64)>, BoxError> {
        let letters = self.list(None, false).await?;
        Ok(count_by_group(letters.iter().map(|l| l.group.as_str())))
    }
}

fn letter(item: &HashMap<String, AttributeValue>) -> Result<DeadLetter, BoxError> {
    let text = |name: &str| -> Result<String, BoxError> {
        match item.get(name) {
            Some(AttributeValue::S(value)) => Ok(value.clone()),
            _ => Err(format!("a dead letter without {name}").into()),
        }
    };
    let time = |value: String| -> Result<DateTime<Utc>, BoxError> {
        Ok(DateTime::parse_from_rfc3339(&value)?.with_timezone(&Utc))
    };
    Ok(DeadLetter {
        id: text("sk")?.parse()?,
        group: text("group")?,
        event: RecordedEvent::from_json(serde_json::from_str(&text("event")?)?)?,
        error: text("error")?,
        attempts: number(item, "attempts")?,
        parked_at: time(text("parkedAt")?)?,
        resolved_at: item
            .get("resolvedAt")
            .map(|_| text("resolvedAt").and_then(time))
            .transpose()?,
    })
}
