//! Where the real servers are: `.ci/services` starts them and writes their addresses to
//! `$OXCART_SERVICES_DIR/env` (default `/tmp/oxcart-services/env`) as `OXCART_TEST_*`
//! variables, which `.ci/run` exports before the suites that need them.

use std::path::PathBuf;

/// The variable `name`, or a panic that says how to get it.
pub fn var(name: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|value| !value.is_empty())
        .unwrap_or_else(|| {
            panic!(
                "{name} is not set: start the test servers with `.ci/services` and \
                 `source /tmp/oxcart-services/env` (or run .ci/run)"
            )
        })
}

/// `.ci/services`' state directory: certificates, and each server's control files.
pub fn dir() -> PathBuf {
    PathBuf::from(var("OXCART_TEST_SERVICES"))
}

/// The test CA, which signed every server's certificate.
pub fn ca() -> PathBuf {
    PathBuf::from(var("OXCART_TEST_CA"))
}

/// A CA that signed nothing here: a client that trusts only it must refuse every server.
pub fn other_ca() -> PathBuf {
    PathBuf::from(var("OXCART_TEST_OTHER_CA"))
}
