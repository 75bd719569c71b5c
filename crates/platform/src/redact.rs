//! What is never shown: in logs, `Debug` output or `oxcart config check`.

/// Whether a configuration property (a librdkafka name such as `sasl.password`) holds a
/// secret, so that its value is shown as `***`. Errs towards hiding: a key's path is
/// hidden along with a key.
pub fn is_secret_property(name: &str) -> bool {
    [
        "password",
        "secret",
        "sasl.jaas.config",
        "sasl.oauthbearer.config",
        ".pem",
        "key",
    ]
    .iter()
    .any(|part| name.contains(part))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_keys_and_credentials_are_secret_and_names_are_not() {
        for name in [
            "sasl.password",
            "ssl.key.password",
            "ssl.key.pem",
            "sasl.oauthbearer.config",
        ] {
            assert!(is_secret_property(name), "{name}");
        }
        for name in ["sasl.username", "security.protocol", "ssl.ca.location"] {
            assert!(!is_secret_property(name), "{name}");
        }
    }
}
