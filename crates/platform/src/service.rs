//! The shape every service crate hands a composition root.
//!
//! Each service crate (`oxcart-orders`, `oxcart-payments`, …) exports a `build` function
//! that takes what the service depends on (its ports and its config section) and returns
//! [`Parts`]. A composition root (`bin/oxcart`, `crates/lambda`) only chooses which
//! services run and connects their ports; it never reaches into a service to wire its
//! handlers or pick its defaults.

use std::sync::Arc;

pub use oxcart_events::chore::Chore;
use oxcart_events::consumer::Handler;
use oxcart_events::projection::ProjectionRunner;
use utoipa::openapi::OpenApi;
use utoipa_axum::router::OpenApiRouter;

/// What one service adds to a process: its routes with their OpenAPI, the consumer
/// handlers that feed it, the projections that keep its read models, and the chores that
/// keep its tables from growing forever.
#[derive(Default)]
pub struct Parts {
    pub routes: OpenApiRouter,
    pub handlers: Vec<Arc<dyn Handler>>,
    pub projections: Vec<ProjectionRunner>,
    pub chores: Vec<Arc<dyn Chore>>,
}

impl Parts {
    pub fn routes(routes: OpenApiRouter) -> Self {
        Self {
            routes,
            ..Self::default()
        }
    }

    pub fn with_handler(mut self, handler: Arc<dyn Handler>) -> Self {
        self.handlers.push(handler);
        self
    }

    pub fn with_projection(mut self, projection: ProjectionRunner) -> Self {
        self.projections.push(projection);
        self
    }

    pub fn with_chore(mut self, chore: Arc<dyn Chore>) -> Self {
        self.chores.push(chore);
        self
    }

    /// Both services' parts, as one process runs them.
    pub fn merge(mut self, other: Parts) -> Self {
        self.routes = self.routes.merge(other.routes);
        self.handlers.extend(other.handlers);
        self.projections.extend(other.projections);
        self.chores.extend(other.chores);
        self
    }
}

/// A service as its API document and the command line name it, known without building
/// it (`oxcart openapi` prints the document with no database).
#[derive(Debug, Clone, Copy)]
pub struct About {
    /// `--services` takes it; the OpenAPI tag of its operations.
    pub name: &'static str,
    /// The tag's description.
    pub description: &'static str,
    /// The service's part of the OpenAPI document.
    pub openapi: fn() -> OpenApi,
}

impl About {
    /// For a service with no HTTP operations of its own.
    pub fn no_operations() -> OpenApi {
        OpenApiRouter::<()>::new().into_openapi()
    }
}
