//! Holds a producer's event payloads to their contracts (`oxcart_events::evolution`):
//! the fixtures of every version it ever wrote, brought up through the steps, have the
//! shape of the payloads it writes now.

use std::collections::BTreeMap;
use std::path::Path;

use oxcart_events::evolution::Contract;
use oxcart_events::types::CONTRACTS;
use serde_json::Value;

/// A payload's shape: its keys and the JSON types of its values, arrays by their first
/// element.
pub fn shape(value: &Value) -> Value {
    match value {
        Value::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(key, value)| (key.clone(), shape(value)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.first().map(shape).into_iter().collect()),
        Value::String(_) => "string".into(),
        Value::Number(_) => "number".into(),
        Value::Bool(_) => "bool".into(),
        Value::Null => "null".into(),
    }
}

/// Checks the event types whose names start with `prefix` (`order.`), whose producer
/// keeps its fixtures in `dir`, one directory a type holding `v<N>.json` payloads:
///
/// - `examples` has the payload the producer writes now for each of those types;
/// - the type's current version has a fixture, of the example's shape;
/// - every fixture, brought up by the contract's steps, has that shape too, and
///   `decode` (the producer's own reader, where it has one) accepts it.
///
/// # Panics
/// On the first that fails, saying what to add.
pub fn check_fixtures(
    dir: &Path,
    prefix: &str,
    examples: &[(&str, Value)],
    decode: impl Fn(&str, &Value) -> Result<(), String>,
) {
    let contracts: Vec<&Contract> = CONTRACTS
        .iter()
        .filter(|c| c.event_type.starts_with(prefix))
        .collect();
    assert!(!contracts.is_empty(), "no event types start with {prefix}");
    let examples: BTreeMap<&str, &Value> = examples.iter().map(|(t, v)| (*t, v)).collect();
    for contract in contracts {
        let name = contract.event_type;
        let example = examples
            .get(name)
            .unwrap_or_else(|| panic!("no example of the {name} payload the producer writes"));
        let fixtures = fixtures(&dir.join(name));
        let current = fixtures.get(&contract.version).unwrap_or_else(|| {
            panic!(
                "{name} is at schema version {v}, but {dir}/{name}/v{v}.json is missing. If \
                 its payload changed, raise its version in oxcart_events::types::CONTRACTS, \
                 add the step from the old one, and this fixture:\n{}",
                serde_json::to_string_pretty(example).unwrap(),
                v = contract.version,
                dir = dir.display(),
            )
        });
        assert_eq!(
            shape(current),
            shape(example),
            "the {name} payload written now differs from its v{} fixture: a change to a \
             payload raises its version (oxcart_events::types::CONTRACTS) with a step from \
             the old one and a new fixture",
            contract.version
        );
        for (version, fixture) in &fixtures {
            let current = contract
                .upcast(*version, fixture.clone())
                .unwrap_or_else(|e| panic!("{name} v{version}: {e}"));
            assert_eq!(
                shape(&current),
                shape(example),
                "{name} v{version}, brought up to v{}, is not of the current shape",
                contract.version
            );
            decode(name, &current).unwrap_or_else(|e| panic!("{name} v{version}: {e}"));
        }
    }
}

/// `v<N>.json` files in `dir`, by version.
fn fixtures(dir: &Path) -> BTreeMap<u32, Value> {
    let mut found = BTreeMap::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(version) = name
            .strip_prefix('v')
            .and_then(|n| n.strip_suffix(".json"))
            .and_then(|n| n.parse().ok())
        else {
            continue;
        };
        let text = std::fs::read_to_string(entry.path()).unwrap();
        let value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{}: {e}", entry.path().display()));
        found.insert(version, value);
    }
    found
}
