//! The event store on one DynamoDB table.
//!
//! # Items (`pk` string, `sk` number)
//! | item | `pk` | `sk` | holds |
//! | --- | --- | --- | --- |
//! | the head | `$head` | 0 | `position`: the newest event's global position |
//! | a stream's event | `stream#<aggregate id>` | version | `position`, `event` (the envelope's JSON) |
//! | an append, in the log | `log` | its last position | `first` position, `events` (the envelopes, a JSON array) |
//!
//! # One append, one transaction
//! An append is one `TransactWriteItems`: the head moves from the position it was read at
//! to that plus the number of events (condition: it is still there), the stream's next
//! versions are put (condition: `attribute_not_exists`, so two writers can never both
//! take version *n*), the version the writer expects is checked to exist, and the log item
//! is put. All of it commits or none of it does, so there is no moment at which a stream
//! holds an event the log does not, and nothing to relay that was not committed.
//!
//! The head condition serialises appends, which is what gives the log one gap-free order
//! equal to commit order: a reader that has seen position *p* can never later find an
//! event below *p* appear. A writer that loses the race for the head (not for its stream)
//! reads it again and retries. The price is that all appends go through one item: about a
//! few hundred appends a second under contention, documented as this mode's ceiling.
//!
//! Each append's events share one log item, so a reader sees all of an append or none of
//! it (DynamoDB's queries are read-committed per item, not per transaction).

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::create_table::CreateTableError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, ConditionCheck, Put, TransactWriteItem};
use oxcart_events::envelope::{NewEvent, Position, RecordedEvent};
use oxcart_events::store::{Appended, Error, EventStore, StreamAppend, prepare_append};
use serde_json::Value;
use tokio::sync::watch;
use uuid::Uuid;

use crate::{applied, store_error};

const HEAD: &str = "$head";
const LOG: &str = "log";
/// A transaction holds at most 100 actions: the head, the expected-version check and the log
/// item leave 97 for the stream's events.
const MAX_EVENTS: usize = 97;
/// How many times an append that lost the race for the head tries again.
const HEAD_ATTEMPTS: u32 = 50;

fn stream_key(aggregate_id: Uuid) -> String {
    format!("stream#{aggregate_id}")
}

#[derive(Debug, Clone)]
pub struct DynamoEventStore {
    client: Client,
    table: String,
    head: watch::Sender<Position>,
}

impl DynamoEventStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
            head: watch::Sender::new(0),
        }
    }

    /// The table's name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Creates the table as `deploy/serverless/terraform` does (on-demand, with a stream of
    /// new images), for tests and local runs. An existing table is left as it is.
    pub async fn create_table(&self) -> Result<(), Error> {
        create_table(&self.client, &self.table, "N", true).await
    }

    async fn version_of(&self, aggregate_id: Uuid) -> Result<u64, Error> {
        let output = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", AttributeValue::S(stream_key(aggregate_id)))
            .consistent_read(true)
            .scan_index_forward(false)
            .limit(1)
            .send()
            .await
            .map_err(store_error)?;
        output
            .items()
            .first()
            .map_or(Ok(0), |item| number(item, "sk"))
    }

    /// One attempt at an append from head `head`: `Ok(None)` when another append took the
    /// head first.
    async fn try_append(
        &self,
        aggregate_id: Uuid,
        expected_version: u64,
        head: Position,
        events: &[NewEvent],
    ) -> Result<Option<Appended>, Error> {
        let stream = stream_key(aggregate_id);
        let recorded: Vec<RecordedEvent> = events
            .iter()
            .zip(1..)
            .map(|(event, i)| RecordedEvent {
                position: head + i,
                version: expected_version + i as u64,
                event: event.clone(),
            })
            .collect();
        let last = recorded.last().map_or(head, |e| e.position);
        let mut actions = vec![put(
            &self.table,
            [
                ("pk", AttributeValue::S(HEAD.into())),
                ("sk", n(0)),
                ("position", n(last)),
            ],
            "attribute_not_exists(pk) OR #position = :head",
            Some((":head", n(head))),
        )?];
        if expected_version > 0 {
            actions.push(
                TransactWriteItem::builder()
                    .condition_check(
                        ConditionCheck::builder()
                            .table_name(&self.table)
                            .key("pk", AttributeValue::S(stream.clone()))
                            .key("sk", n(expected_version))
                            .condition_expression("attribute_exists(pk)")
                            .build()
                            .map_err(|e| Error::Backend(e.into()))?,
                    )
                    .build(),
            );
        }
        for event in &recorded {
            actions.push(put(
                &self.table,
                [
                    ("pk", AttributeValue::S(stream.clone())),
                    ("sk", n(event.version)),
                    ("position", n(event.position)),
                    ("event", AttributeValue::S(event.to_json().to_string())),
                ],
                "attribute_not_exists(pk)",
                None,
            )?);
        }
        let envelopes = Value::Array(recorded.iter().map(RecordedEvent::to_json).collect());
        actions.push(put(
            &self.table,
            [
                ("pk", AttributeValue::S(LOG.into())),
                ("sk", n(last)),
                ("first", n(head + 1)),
                ("events", AttributeValue::S(envelopes.to_string())),
            ],
            "attribute_not_exists(pk)",
            None,
        )?);
        let result = self
            .client
            .transact_write_items()
            .set_transact_items(Some(actions))
            .send()
            .await;
        match result {
            Ok(_) => Ok(Some(Appended {
                version: expected_version + recorded.len() as u64,
                position: last,
            })),
            Err(error) => {
                let Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) =
                    error.as_service_error()
                else {
                    return Err(store_error(error));
                };
                let reasons = cancelled.cancellation_reasons();
                let failed = |i: usize| {
                    reasons
                        .get(i)
                        .and_then(|r| r.code())
                        .is_some_and(|code| code == "ConditionalCheckFailed")
                };
                // Everything after the head concerns the stream (and the log item, whose
                // key only a head holder can use).
                if (1..reasons.len()).any(failed) {
                    let actual = self.version_of(aggregate_id).await?;
                    return Err(Error::Conflict {
                        aggregate_id,
                        expected: expected_version,
                        actual,
                    });
                }
                // The head moved, or another transaction held one of these items.
                if reasons.iter().any(|r| {
                    matches!(
                        r.code(),
                        Some("ConditionalCheckFailed" | "TransactionConflict")
                    )
                }) {
                    return Ok(None);
                }
                Err(store_error(error))
            }
        }
    }
}

#[async_trait]
impl EventStore for DynamoEventStore {
    async fn append(
        &self,
        aggregate_id: Uuid,
        expected_version: u64,
        events: Vec<NewEvent>,
    ) -> Result<Appended, Error> {
        if events.len() > MAX_EVENTS {
            return Err(Error::Backend(
                format!("one append takes at most {MAX_EVENTS} events").into(),
            ));
        }
        let mut one = [StreamAppend {
            aggregate_id,
            expected_version,
            events,
        }];
        let span = prepare_append(&mut one)?;
        let [StreamAppend { events, .. }] = one;
        let _entered = span.enter();
        let mut backoff = oxcart_events::backoff::Backoff::new(
            Duration::from_millis(5),
            Duration::from_millis(200),
        );
        for _ in 0..HEAD_ATTEMPTS {
            let head = self.head().await?;
            if let Some(appended) = self
                .try_append(aggregate_id, expected_version, head, &events)
                .await?
            {
                self.head.send_replace(appended.position);
                return Ok(appended);
            }
            tokio::time::sleep(backoff.next_delay()).await;
        }
        Err(Error::Unavailable(
            "the log's head stayed contended; try again".into(),
        ))
    }

    async fn read_stream(&self, aggregate_id: Uuid) -> Result<Vec<RecordedEvent>, Error> {
        let items = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", AttributeValue::S(stream_key(aggregate_id)))
            .consistent_read(true)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(store_error)?;
        items.iter().map(|item| decode(item, "event")).collect()
    }

    async fn read_all(&self, after: Position, limit: usize) -> Result<Vec<RecordedEvent>, Error> {
        let mut events = Vec::new();
        let mut start = None;
        while events.len() < limit {
            // Log items are keyed by their last position: every append with an event
            // after `after` has its key there, the first possibly starting at or before it.
            let output = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND sk > :after")
                .expression_attribute_values(":pk", AttributeValue::S(LOG.into()))
                .expression_attribute_values(":after", n(after))
                .consistent_read(true)
                .limit(i32::try_from(limit).unwrap_or(i32::MAX).max(1))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(store_error)?;
            for item in output.items() {
                let Some(AttributeValue::S(text)) = item.get("events") else {
                    return Err(corrupt(item, "a log item without its events"));
                };
                let list: Vec<Value> =
                    serde_json::from_str(text).map_err(|e| corrupt(item, &e.to_string()))?;
                for value in list {
                    let event = RecordedEvent::from_json(value)
                        .map_err(|e| corrupt(item, &e.to_string()))?;
                    if event.position > after {
                        events.push(event);
                    }
                }
            }
            start = output.last_evaluated_key().cloned();
            if start.is_none() {
                break;
            }
        }
        events.truncate(limit);
        Ok(events)
    }

    async fn head(&self) -> Result<Position, Error> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(HEAD.into()))
            .key("sk", n(0))
            .consistent_read(true)
            .send()
            .await
            .map_err(store_error)?;
        output.item().map_or(Ok(0), |item| number(item, "position"))
    }

    fn subscribe(&self) -> watch::Receiver<Position> {
        self.head.subscribe()
    }
}

/// Creates a table keyed by `pk` (string) and `sk` (`sort_type`), on-demand, for tests
/// and local runs; an existing one is left alone.
pub(crate) async fn create_table(
    client: &Client,
    table: &str,
    sort_type: &str,
    stream: bool,
) -> Result<(), Error> {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
        StreamSpecification, StreamViewType,
    };
    let attribute = |name: &str, kind: ScalarAttributeType| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(kind)
            .build()
            .map_err(|e| Error::Backend(e.into()))
    };
    let key = |name: &str, kind: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(kind)
            .build()
            .map_err(|e| Error::Backend(e.into()))
    };
    let mut request = client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attribute("pk", ScalarAttributeType::S)?)
        .attribute_definitions(attribute("sk", ScalarAttributeType::from(sort_type))?)
        .key_schema(key("pk", KeyType::Hash)?)
        .key_schema(key("sk", KeyType::Range)?);
    if stream {
        request = request.stream_specification(
            StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(StreamViewType::NewImage)
                .build()
                .map_err(|e| Error::Backend(e.into()))?,
        );
    }
    applied(
        request.send().await,
        CreateTableError::is_resource_in_use_exception,
    )
    .map_err(Error::Backend)?;
    Ok(())
}

/// A `Put` action with a condition (and one value for it).
fn put<const N: usize>(
    table: &str,
    attributes: [(&str, AttributeValue); N],
    condition: &str,
    value: Option<(&str, AttributeValue)>,
) -> Result<TransactWriteItem, Error> {
    let mut builder = Put::builder()
        .table_name(table)
        .set_item(Some(
            attributes
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
        ))
        .condition_expression(condition);
    if condition.contains("#position") {
        builder = builder.expression_attribute_names("#position", "position");
    }
    if let Some((name, value)) = value {
        builder = builder.expression_attribute_values(name, value);
    }
    Ok(TransactWriteItem::builder()
        .put(builder.build().map_err(|e| Error::Backend(e.into()))?)
        .build())
}

pub(crate) fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

pub(crate) fn number<T: std::str::FromStr>(
    item: &HashMap<String, AttributeValue>,
    name: &str,
) -> Result<T, Error> {
    match item.get(name) {
        Some(AttributeValue::N(text)) => text
            .parse()
            .map_err(|_| corrupt(item, &format!("{name} is not a number"))),
        _ => Err(corrupt(item, &format!("no number {name}"))),
    }
}

fn decode(item: &HashMap<String, AttributeValue>, name: &str) -> Result<RecordedEvent, Error> {
    let Some(AttributeValue::S(text)) = item.get(name) else {
        return Err(corrupt(item, &format!("no {name}")));
    };
    serde_json::from_str(text)
        .map_err(|e| corrupt(item, &e.to_string()))
        .and_then(|value| {
            RecordedEvent::from_json(value).map_err(|e| corrupt(item, &e.to_string()))
        })
}

fn corrupt(item: &HashMap<String, AttributeValue>, why: &str) -> Error {
    let position = match item.get("position").or_else(|| item.get("sk")) {
        Some(AttributeValue::N(text)) => text.parse().unwrap_or(0),
        _ => 0,
    };
    Error::Corrupt {
        position,
        source: why.to_owned().into(),
    }
}
