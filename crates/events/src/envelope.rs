//! The event envelope.
//!
//! On the wire it is the spec's JSON shape: the aggregate id appears both generically
//! (`aggregateId`, with `aggregateType`) and under the spec's own name for the aggregate
//! (`orderId` for orders), so consumers written against the spec read it unchanged.

use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;
use uuid::Uuid;

/// A place in the global log: the first event is at 1; 0 is "before everything".
pub type Position = i64;

/// Why an event exists: which request or event caused it, and the conversation it is part of.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Metadata {
    /// Shared by every event that stems from one client request.
    pub correlation_id: String,
    /// The request or event that directly caused this one.
    pub causation_id: String,
    /// The client's `Idempotency-Key`, on the event a keyed request created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// SHA-256 of the keyed request's body, to tell a retry from a different request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_fingerprint: Option<String>,
    /// W3C trace context of the operation that appended the event, carried to consumers
    /// (as the Kafka `traceparent` header too) so their work joins the same trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

/// An event a command produced, before the store gives it a version and a position.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub event_id: Uuid,
    /// Dotted name, `order.created`.
    pub event_type: String,
    /// Version of the `data` shape, raised when it changes incompatibly.
    pub schema_version: u32,
    /// `order`, `product`, …
    pub aggregate_type: String,
    pub aggregate_id: Uuid,
    /// The user the event concerns (the order's customer).
    pub user_id: Option<Uuid>,
    pub timestamp: DateTime<Utc>,
    pub data: Value,
    pub metadata: Metadata,
}

impl NewEvent {
    /// An event that `cause` led to: same conversation (correlation id), caused by that
    /// event, about the same user. Timestamps keep microseconds, as every store does.
    pub fn caused_by(
        cause: &RecordedEvent,
        event_type: &str,
        aggregate_type: &str,
        aggregate_id: Uuid,
        data: Value,
    ) -> Self {
        Self {
            event_id: Uuid::now_v7(),
            event_type: event_type.to_owned(),
            schema_version: crate::types::version(event_type),
            aggregate_type: aggregate_type.to_owned(),
            aggregate_id,
            user_id: cause.event.user_id,
            timestamp: Utc::now().trunc_subsecs(6),
            data,
            metadata: Metadata {
                correlation_id: cause.event.metadata.correlation_id.clone(),
                causation_id: cause.event.event_id.to_string(),
                ..Metadata::default()
            },
        }
    }
}

/// An event as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedEvent {
    /// Place in the global log, increasing in commit order.
    pub position: Position,
    /// Place in its aggregate's stream, from 1 without gaps.
    pub version: u64,
    pub event: NewEvent,
}

/// An event in the spec's envelope. Events about an order also carry its id as
/// `orderId`, beside `aggregateId`.
// `to_json` adds that alias; this struct is the rest of the wire shape.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = EventEnvelope)]
pub struct Wire {
    pub event_id: Uuid,
    /// Dotted name, such as `order.created`.
    pub event_type: String,
    pub schema_version: u32,
    pub aggregate_type: String,
    pub aggregate_id: Uuid,
    /// Place in the aggregate's stream, from 1.
    pub version: u64,
    /// Place in the global log.
    #[schema(value_type = i64)]
    pub position: Position,
    pub timestamp: DateTime<Utc>,
    pub user_id: Option<Uuid>,
    #[schema(value_type = Object)]
    pub data: Value,
    #[schema(value_type = Object)]
    pub metadata: Metadata,
}

impl RecordedEvent {
    /// The envelope as JSON, in the spec's shape.
    pub fn to_json(&self) -> Value {
        let e = &self.event;
        let wire = Wire {
            event_id: e.event_id,
            event_type: e.event_type.clone(),
            schema_version: e.schema_version,
            aggregate_type: e.aggregate_type.clone(),
            aggregate_id: e.aggregate_id,
            version: self.version,
            position: self.position,
            timestamp: e.timestamp,
            user_id: e.user_id,
            data: e.data.clone(),
            metadata: e.metadata.clone(),
        };
        let mut object = match serde_json::to_value(wire) {
            Ok(Value::Object(object)) => object,
            _ => Map::new(),
        };
        let alias = format!("{}Id", e.aggregate_type);
        if !object.contains_key(&alias) {
            object.insert(alias, Value::String(e.aggregate_id.to_string()));
        }
        Value::Object(object)
    }

    /// The envelope from JSON, its payload brought to its type's current shape
    /// ([`crate::types::to_current`]).
    pub fn from_json(value: Value) -> Result<Self, serde_json::Error> {
        let wire: Wire = serde_json::from_value(value)?;
        let mut event = Self {
            position: wire.position,
            version: wire.version,
            event: NewEvent {
                event_id: wire.event_id,
                event_type: wire.event_type,
                schema_version: wire.schema_version,
                aggregate_type: wire.aggregate_type,
                aggregate_id: wire.aggregate_id,
                user_id: wire.user_id,
                timestamp: wire.timestamp,
                data: wire.data,
                metadata: wire.metadata,
            },
        };
        crate::types::to_current(&mut event.event).map_err(serde::de::Error::custom)?;
        Ok(event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_shape_carries_the_spec_names_and_round_trips() {
        let id = Uuid::now_v7();
        let recorded = RecordedEvent {
            position: 7,
            version: 1,
            event: NewEvent {
                event_id: Uuid::now_v7(),
                event_type: "order.created".into(),
                // The current shape: an older one would be upcast on the way back.
                schema_version: crate::types::version("order.created"),
                aggregate_type: "order".into(),
                aggregate_id: id,
                user_id: Some(Uuid::now_v7()),
                timestamp: Utc::now(),
                data: serde_json::json!({"totalAmount": 1200}),
                metadata: Metadata {
                    correlation_id: "c".into(),
                    causation_id: "d".into(),
                    ..Metadata::default()
                },
            },
        };
        let json = recorded.to_json();
        assert_eq!(json["orderId"], id.to_string());
        assert_eq!(json["eventType"], "order.created");
        assert_eq!(json["metadata"]["correlationId"], "c");
        assert!(json["metadata"].get("idempotencyKey").is_none());
        assert_eq!(RecordedEvent::from_json(json).unwrap(), recorded);
    }
}
