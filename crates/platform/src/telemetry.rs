//! Logging set-up: human-readable on a terminal, one JSON object per line otherwise.
//!
//! Every line logged while handling a request carries the request span's fields
//! (`request_id`, `route`, `method`), because handlers run inside that span.

use std::io::IsTerminal;

use serde::{Deserialize, Serialize};
use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Pretty on a terminal, JSON otherwise.
    #[default]
    Auto,
    Pretty,
    Json,
}

impl LogFormat {
    pub fn is_json(self) -> bool {
        match self {
            Self::Auto => !std::io::stderr().is_terminal(),
            Self::Pretty => false,
            Self::Json => true,
        }
    }
}

/// The default filter; `OXCART_LOG` or `RUST_LOG` override it with the usual directives.
const DEFAULT_FILTER: &str = "info,sqlx=warn";

/// Installs the global subscriber. Logs go to stderr, so that a command's own output on
/// stdout (`oxcart openapi > spec.json`) stays clean.
pub fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_env("OXCART_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second initialisation (tests starting several apps) keeps the first subscriber.
    let _ = if format.is_json() {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(true)
            .try_init()
    } else {
        builder.compact().try_init()
    };
}
