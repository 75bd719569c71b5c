//! The orders service as a composition root takes it: built from its ports and its
//! `[orders]` section, handing out its routes, its saga step and the projection that
//! keeps its read model.

use std::sync::Arc;

use oxcart_db::Db;
use oxcart_events::EventStore;
use oxcart_events::consumer::Handler;
use oxcart_events::projection::ProjectionRunner;
use oxcart_platform::metrics::Metrics;
use oxcart_platform::service::{About, Parts};
use utoipa_axum::router::OpenApiRouter;

use crate::OrdersConfig;
use crate::housekeeping::UnpaidOrders;
use crate::http::{self, OrderMetrics};
use crate::read_model::{OrderProjection, OrderReadModel, OrderViews};
use crate::saga::OrderSaga;
use crate::service::{Orders, ProductCatalog};

pub const ABOUT: About = About {
    name: "orders",
    description: "Orders: placed, cancelled, shipped, delivered, and read back.",
    openapi: || http::routes().into_openapi(),
};

/// What orders stand on.
pub struct Ports {
    /// The log: the one source of truth, appended to by every command.
    pub store: Arc<dyn EventStore>,
    /// Where an order's prices come from.
    pub catalog: Arc<dyn ProductCatalog>,
    /// Where reads come from.
    pub read_side: ReadSide,
}

/// The read model, and what keeps it.
pub enum ReadSide {
    /// The SQL read model in this database, kept by a projection the service runs; reads
    /// that wait for a version wake as the projection moves.
    Sql(Db),
    /// Views kept elsewhere (DynamoDB's, fed by a handler of the serverless worker).
    Views(Arc<dyn OrderViews>),
}

/// The orders service, built: cheap handles to each of its parts.
pub struct OrdersService {
    orders: Orders,
    metrics: OrderMetrics,
    projection: Option<ProjectionRunner>,
    /// Cancels orders left unpaid, where the read model is SQL (it finds them there).
    unpaid: Option<UnpaidOrders>,
}

/// Orders on `ports`; `metrics` receives `orders_created_total`.
pub fn build(ports: Ports, config: &OrdersConfig, metrics: &Metrics) -> OrdersService {
    let order_metrics = OrderMetrics::new(metrics.exemplars().clone());
    metrics.register(order_metrics.collector());
    let (views, projection, read_model): (Arc<dyn OrderViews>, _, _) = match ports.read_side {
        ReadSide::Sql(db) => (
            Arc::new(OrderReadModel::new(db.clone())),
            Some(ProjectionRunner::new(
                ports.store.clone(),
                Arc::new(OrderProjection::new(db.clone())),
            )),
            Some(OrderReadModel::new(db)),
        ),
        ReadSide::Views(views) => (views, None, None),
    };
    let mut orders = Orders::new(ports.store, ports.catalog, views, config.read_wait)
        .with_idempotency_ttl(config.idempotency_ttl);
    if let Some(projection) = &projection {
        orders = orders.with_progress(projection.progress());
    }
    let unpaid = read_model
        .filter(|_| !config.payment_timeout.is_zero())
        .map(|read_model| UnpaidOrders {
            orders: orders.clone(),
            read_model,
            timeout: config.payment_timeout,
        });
    OrdersService {
        orders,
        metrics: order_metrics,
        projection,
        unpaid,
    }
}

impl OrdersService {
    /// The handle other services read orders through (notifications, invoices).
    pub fn orders(&self) -> &Orders {
        &self.orders
    }

    /// Everything, as a process running the orders service serves it: every route, the
    /// saga step, the read model's projection, and the unpaid-order chore.
    pub fn parts(self) -> Parts {
        let mut parts = Parts::routes(http::router(self.orders.clone(), self.metrics))
            .with_handler(Arc::new(OrderSaga::new(self.orders)));
        if let Some(projection) = self.projection {
            parts = parts.with_projection(projection);
        }
        if let Some(unpaid) = self.unpaid {
            parts = parts.with_chore(Arc::new(unpaid));
        }
        parts
    }

    /// `POST /api/orders` alone (the serverless `create-order` function).
    pub fn create_routes(&self) -> OpenApiRouter {
        http::create_router(self.orders.clone(), self.metrics.clone())
    }

    /// `GET /api/orders/{id}` alone (the serverless `get-order` function).
    pub fn get_routes(&self) -> OpenApiRouter {
        http::get_router(self.orders.clone())
    }

    /// The saga step alone: moves orders on as stock and payments answer.
    pub fn saga(&self) -> Arc<dyn Handler> {
        Arc::new(OrderSaga::new(self.orders.clone()))
    }
}
