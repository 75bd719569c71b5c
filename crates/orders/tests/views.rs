//! The SQL read model passes the order-views contract, on SQLite and on PostgreSQL, kept
//! by the projection the server runs.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use oxcart_db::Db;
use oxcart_events::EventStore;
use oxcart_events::projection::Projection;
use oxcart_orders::read_model::{OrderProjection, OrderReadModel};
use oxcart_sql::SqlEventStore;
use oxcart_test_util::order_views::Views;
use oxcart_test_util::postgres::TestDatabase;

/// The read model on `db`, kept by running its projection over the log until it has
/// applied everything appended.
fn views(db: Db) -> Views {
    let store: Arc<dyn EventStore> = Arc::new(SqlEventStore::new(db.clone()));
    let log = Arc::clone(&store);
    let projection = Arc::new(OrderProjection::new(db.clone()));
    Views {
        views: Arc::new(OrderReadModel::new(db)),
        store,
        catch_up: Box::new(move || {
            let (log, projection) = (Arc::clone(&log), Arc::clone(&projection));
            Box::pin(async move {
                loop {
                    let at = projection.checkpoint().await.unwrap();
                    let events = log.read_all(at, 500).await.unwrap();
                    if events.is_empty() {
                        break;
                    }
                    projection.apply(at, &events).await.unwrap();
                }
            })
        }),
    }
}

async fn sqlite() -> (Views, tempfile::TempDir) {
    let (db, dir) = oxcart_test_util::sqlite::migrated().await;
    (views(db), dir)
}

async fn postgres() -> (Views, TestDatabase) {
    let (db, database) = TestDatabase::migrated().await;
    (views(db), database)
}

mod on_sqlite {
    use super::sqlite;

    oxcart_test_util::order_views_contract!(sqlite());
}

mod on_postgres {
    use super::postgres;

    oxcart_test_util::order_views_contract!(postgres(), #[ignore = "needs PostgreSQL (.ci/services)"]);
}
