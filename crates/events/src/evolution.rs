//! How an event's payload changes without breaking what is already stored.
//!
//! Every event carries `schemaVersion`, the version of its `data`'s shape. Each event
//! type has a [`Contract`] ([`crate::types::CONTRACTS`]): the version producers write now,
//! and an [`Upcaster`] from each older version to the next. The stores and the wire
//! decoders bring every event they read to its type's current shape with
//! [`to_current`], so consumers only ever see one shape per type:
//!
//! Any change to a payload's shape (a field added, renamed, restructured) raises the
//! type's version, adds the step from the old version (which fills in what old events
//! lack, so an upcast payload has the whole current shape), and adds a fixture of the new
//! version beside the old ones (`crates/<producer>/fixtures/events/<type>/v<N>.json`).
//! Each producer's test brings every fixture up through the steps and holds the result,
//! and the payloads it writes now, to the current fixture's shape: a payload changed
//! without a new version, fixture or step fails CI.
//!
//! A version newer than this build knows (a newer producer during a rolling deploy) is
//! passed through as it is: the change it brings is additive or the consumers that
//! need it are deployed first.

use serde_json::Value;

use crate::NewEvent;

/// One step: a payload at version `from`, in the shape of version `from + 1`.
#[derive(Debug, Clone, Copy)]
pub struct Upcaster {
    pub from: u32,
    pub step: fn(Value) -> Value,
}

/// An event type's contract.
#[derive(Debug, Clone, Copy)]
pub struct Contract {
    pub event_type: &'static str,
    /// The version producers write.
    pub version: u32,
    /// From each older version to the next, in any order.
    pub upcasters: &'static [Upcaster],
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{event_type} has no step from schema version {from} to {}", from + 1)]
pub struct MissingStep {
    pub event_type: String,
    pub from: u32,
}

impl Contract {
    /// A type at version 1, which has never changed.
    pub const fn first(event_type: &'static str) -> Self {
        Self {
            event_type,
            version: 1,
            upcasters: &[],
        }
    }

    /// `data`, stored at `version`, in the current shape.
    pub fn upcast(&self, mut version: u32, mut data: Value) -> Result<Value, MissingStep> {
        while version < self.version {
            let step = self
                .upcasters
                .iter()
                .find(|u| u.from == version)
                .ok_or_else(|| MissingStep {
                    event_type: self.event_type.to_owned(),
                    from: version,
                })?;
            data = (step.step)(data);
            version += 1;
        }
        Ok(data)
    }
}

/// Brings `event` to its type's current shape by `contracts`, and its `schema_version`
/// with it. Types without a contract, and versions newer than the contract's, are left
/// as they are.
pub fn to_current(event: &mut NewEvent, contracts: &[Contract]) -> Result<(), MissingStep> {
    let Some(contract) = contracts.iter().find(|c| c.event_type == event.event_type) else {
        return Ok(());
    };
    if event.schema_version >= contract.version {
        return Ok(());
    }
    let data = std::mem::take(&mut event.data);
    event.data = contract.upcast(event.schema_version, data)?;
    event.schema_version = contract.version;
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// `thing.made` as it might evolve: v2 adds the `colour` readers now need (old things
    /// were all grey), v3 renames `size` to `dimensions`.
    const THING: Contract = Contract {
        event_type: "thing.made",
        version: 3,
        upcasters: &[
            Upcaster {
                from: 2,
                step: |mut data| {
                    if let Some(size) = data.as_object_mut().and_then(|o| o.remove("size")) {
                        data["dimensions"] = size;
                    }
                    data
                },
            },
            Upcaster {
                from: 1,
                step: |mut data| {
                    data["colour"] = json!("grey");
                    data
                },
            },
        ],
    };

    fn event(version: u32, data: Value) -> NewEvent {
        NewEvent {
            event_id: uuid::Uuid::nil(),
            event_type: "thing.made".into(),
            schema_version: version,
            aggregate_type: "thing".into(),
            aggregate_id: uuid::Uuid::nil(),
            user_id: None,
            timestamp: chrono::DateTime::UNIX_EPOCH,
            data,
            metadata: crate::Metadata::default(),
        }
    }

    #[test]
    fn an_old_payload_is_brought_up_step_by_step() {
        let mut old = event(1, json!({ "size": 3 }));
        to_current(&mut old, &[THING]).unwrap();
        assert_eq!(old.data, json!({ "colour": "grey", "dimensions": 3 }));
        assert_eq!(old.schema_version, 3);

        let mut current = event(3, json!({ "colour": "red", "dimensions": 1 }));
        to_current(&mut current, &[THING]).unwrap();
        assert_eq!(current.data, json!({ "colour": "red", "dimensions": 1 }));
    }

    #[test]
    fn a_newer_or_unknown_payload_passes_through_and_a_missing_step_is_an_error() {
        let mut newer = event(4, json!({ "extra": true }));
        to_current(&mut newer, &[THING]).unwrap();
        assert_eq!(
            (newer.schema_version, newer.data),
            (4, json!({ "extra": true }))
        );
        let mut unknown = event(1, json!({}));
        unknown.event_type = "other.thing".into();
        to_current(&mut unknown, &[THING]).unwrap();
        assert_eq!(unknown.schema_version, 1);

        let gap = Contract {
            upcasters: &THING.upcasters[..1],
            ..THING
        };
        let error = to_current(&mut event(1, json!({})), &[gap]).unwrap_err();
        assert_eq!(
            error.to_string(),
            "thing.made has no step from schema version 1 to 2"
        );
    }
}
