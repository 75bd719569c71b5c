//! The oxcart composition root: which services run in this process, and how they are
//! wired to storage and to each other. `main.rs` only parses the command line.
//!
//! # Layout
//! - [`config`]: layered configuration, a section per component.
//! - [`wiring`]: [`assemble`], which chooses the services a process runs and connects
//!   their ports; the in-process adapters between services; the calls between them.
//! - [`storage`]: opening the configured database, its migrations, the signing key.
//! - [`app`]: [`App`], which builds a process from its parts, serves it, runs its
//!   background work and drains on shutdown.
//! - [`openapi()`]: the OpenAPI document of a set of services.
//! - [`Peers`]: the SMTP relay and the catalog service, reached once at start-up.

pub mod app;
pub mod config;
mod openapi;
mod peers;
pub mod storage;
mod transport;
pub mod wiring;

pub use crate::app::App;
pub use crate::openapi::openapi;
pub use crate::peers::Peers;
pub use crate::storage::{migrate, migrator, open_database, signing_key};
pub use crate::wiring::{CALLS, Call, LocalCatalog, PRODUCT_LOOKUP, assemble};

pub const VERSION: &str = env!("CARGO_PKG_VERSION");
