//! librdkafka properties passed through from configuration.
//!
//! A managed cluster asks for settings oxcart has no name for: `security.protocol`,
//! `sasl.mechanisms`, `sasl.username`, `ssl.ca.location`, `client.rack`, … Any of them may
//! be given, as librdkafka spells it, in the `[kafka.properties]` table of the
//! configuration file or as an `OXCART_LIBRDKAFKA_<NAME>` variable, and reaches every
//! client oxcart makes.
//!
//! The variable's name becomes the property's as Confluent's images do it: lower-cased,
//! `_` for `.`, `__` for `_` and `___` for `-` (`OXCART_LIBRDKAFKA_SASL_MECHANISMS` is
//! `sasl.mechanisms`).
//!
//! What oxcart's delivery guarantees rest on is not open to configuration:
//! [`MANAGED`] lists those properties, and naming one is an error.

use std::collections::BTreeMap;
use std::fmt;

use oxcart_platform::redact::is_secret_property;
use serde::{Deserialize, Serialize};

/// Properties oxcart sets itself on each client because its delivery contract needs
/// them (offsets committed only after processing, the idempotent `acks=all` producer).
pub const MANAGED: &[&str] = &[
    "bootstrap.servers",
    "metadata.broker.list",
    "group.id",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "auto.offset.reset",
    "enable.idempotence",
    "acks",
    "request.required.acks",
    "transactional.id",
];

/// The prefix of the variables that set a property.
pub const ENV_PREFIX: &str = "OXCART_LIBRDKAFKA_";

/// librdkafka properties by name. Values of properties that hold secrets are never shown.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Properties(BTreeMap<String, String>);

#[derive(Debug, thiserror::Error)]
pub enum PropertyError {
    #[error(
        "kafka property `{0}` is set by oxcart itself (its delivery guarantees depend on it) \
         and cannot be configured"
    )]
    Managed(String),
    #[error("kafka property `{0}` is not a librdkafka property name")]
    Name(String),
}

impl Properties {
    /// Properties from `(name, value)` pairs, checked.
    pub fn new(pairs: impl IntoIterator<Item = (String, String)>) -> Result<Self, PropertyError> {
        let mut properties = BTreeMap::new();
        for (name, value) in pairs {
            check(&name)?;
            properties.insert(name, value);
        }
        Ok(Self(properties))
    }

    /// The properties set by `OXCART_LIBRDKAFKA_*` variables among `vars`.
    pub fn from_vars(
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, PropertyError> {
        Self::new(vars.into_iter().filter_map(|(name, value)| {
            let rest = name.strip_prefix(ENV_PREFIX)?;
            Some((property_name(rest), value))
        }))
    }

    /// These properties, then `other`'s over them.
    pub fn merged(mut self, other: Properties) -> Self {
        self.0.extend(other.0);
        self
    }

    /// Every property, after checking the names again (a file can be deserialized
    /// straight into this type).
    pub fn validate(&self) -> Result<(), PropertyError> {
        self.0.keys().try_for_each(|name| check(name))
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn check(name: &str) -> Result<(), PropertyError> {
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'));
    if !valid {
        return Err(PropertyError::Name(name.to_owned()));
    }
    if MANAGED.contains(&name) {
        return Err(PropertyError::Managed(name.to_owned()));
    }
    Ok(())
}

/// `SASL_MECHANISMS` → `sasl.mechanisms`; `__` → `_`, `___` → `-`.
fn property_name(variable: &str) -> String {
    let lower = variable.to_ascii_lowercase();
    let mut name = String::with_capacity(lower.len());
    let mut rest = lower.as_str();
    while let Some(at) = rest.find('_') {
        name.push_str(&rest[..at]);
        let run = rest[at..].chars().take_while(|c| *c == '_').count();
        name.push_str(match run {
            1 => ".",
            2 => "_",
            _ => "-",
        });
        rest = &rest[at + run.min(3)..];
    }
    name.push_str(rest);
    name
}

impl fmt::Debug for Properties {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(k, v)| {
                let shown = if is_secret_property(k) {
                    "***"
                } else {
                    v.as_str()
                };
                (k, shown)
            }))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn variables_name_properties_as_confluent_images_do() {
        let properties = Properties::from_vars(vars(&[
            ("OXCART_LIBRDKAFKA_SECURITY_PROTOCOL", "SASL_SSL"),
            ("OXCART_LIBRDKAFKA_SASL_MECHANISMS", "SCRAM-SHA-512"),
            (
                "OXCART_LIBRDKAFKA_SSL_ENDPOINT_IDENTIFICATION_ALGORITHM",
                "https",
            ),
            ("OXCART_LIBRDKAFKA_SSL_ENGINE__ID", "x"),
            ("OXCART_LIBRDKAFKA_CLIENT___DNS___LOOKUP", "y"),
            ("OXCART_KAFKA_BROKERS", "not a property"),
            ("PATH", "/bin"),
        ]))
        .unwrap();
        let names: Vec<&str> = properties.iter().map(|(k, _)| k).collect();
        assert_eq!(
            names,
            [
                "client-dns-lookup",
                "sasl.mechanisms",
                "security.protocol",
                "ssl.endpoint.identification.algorithm",
                "ssl.engine_id",
            ]
        );
        assert_eq!(properties.get("security.protocol"), Some("SASL_SSL"));
    }

    #[test]
    fn what_the_delivery_contract_rests_on_is_refused() {
        let error =
            Properties::from_vars(vars(&[("OXCART_LIBRDKAFKA_ENABLE_AUTO_COMMIT", "true")]))
                .unwrap_err();
        assert_eq!(
            error.to_string(),
            "kafka property `enable.auto.commit` is set by oxcart itself (its delivery \
             guarantees depend on it) and cannot be configured"
        );
        let error = Properties::new(vars(&[("Security Protocol", "x")])).unwrap_err();
        assert!(error.to_string().contains("`Security Protocol`"), "{error}");
    }

    #[test]
    fn secrets_are_not_shown() {
        let properties = Properties::new(vars(&[
            ("sasl.username", "shop"),
            ("sasl.password", "hunter2"),
            ("ssl.key.password", "hunter3"),
        ]))
        .unwrap();
        let shown = format!("{properties:?}");
        assert!(shown.contains("shop"), "{shown}");
        assert!(!shown.contains("hunter"), "{shown}");
    }
}
