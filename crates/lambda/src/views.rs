//! The order read model in DynamoDB: one item per order in the orders table, written only
//! by its projection, read by `get-order`.
//!
//! # Items (`orderId` string)
//! `customerId`, `createdAt` (for the `by-customer` index that lists a customer's orders
//! newest first), `status`, `version`, and `order`: the order's JSON, as the API shows it.
//!
//! The projection is a consumer like any other (group `order-projection` on the `orders`
//! topic): for an order event it folds the order's stream, which the event store reads
//! consistently, and puts the result unless the table already holds that version or a
//! later one. That makes it idempotent and indifferent to redelivery and to order: a late
//! duplicate of an old event can never move an order back.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::create_table::CreateTableError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::AttributeValue;
use oxcart_dynamodb::{applied, boxed};
use oxcart_events::bus::topics;
use oxcart_events::consumer::Handler;
use oxcart_events::store::BoxError;
use oxcart_events::{EventStore, RecordedEvent};
use oxcart_orders::Error;
use oxcart_orders::domain::{AGGREGATE, Order};
use oxcart_orders::read_model::{After, Filter, OrderViews};
use uuid::Uuid;

/// The projection's consumer group.
pub const GROUP: &str = "order-projection";
/// The index of a customer's orders by creation time.
pub const BY_CUSTOMER: &str = "by-customer";

#[derive(Debug, Clone)]
pub struct DynamoOrderViews {
    client: Client,
    table: String,
}

impl DynamoOrderViews {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    /// Puts `order` unless the table holds its version or a later one; answers whether it did.
    pub async fn put(&self, order: &Order) -> Result<bool, BoxError> {
        let json = serde_json::to_string(order)?;
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("orderId", s(order.id.to_string()))
            .item("customerId", s(order.customer_id.to_string()))
            .item("createdAt", s(sortable(order)))
            .item("status", s(order.status.as_str()))
            .item("version", AttributeValue::N(order.version.to_string()))
            .item("order", s(json))
            .condition_expression("attribute_not_exists(orderId) OR version < :version")
            .expression_attribute_values(":version", AttributeValue::N(order.version.to_string()))
            .send()
            .await;
        applied(result, PutItemError::is_conditional_check_failed_exception)
    }

    async fn get_with(&self, id: Uuid, consistent: bool) -> Result<Option<Order>, Error> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("orderId", s(id.to_string()))
            .consistent_read(consistent)
            .send()
            .await
            .map_err(unavailable)?;
        output.item().map(decode).transpose()
    }
}

#[async_trait]
impl OrderViews for DynamoOrderViews {
    async fn get(&self, id: Uuid) -> Result<Option<Order>, Error> {
        self.get_with(id, false).await
    }

    async fn get_latest(&self, id: Uuid) -> Result<Option<Order>, Error> {
        self.get_with(id, true).await
    }

    /// A customer's orders come from the `by-customer` index, newest first; an admin's list
    /// of everyone's orders is a scan, sorted here (this mode's API does not route it).
    async fn list(
        &self,
        filter: &Filter,
        after: Option<&After>,
        limit: u32,
    ) -> Result<Vec<Order>, Error> {
        let mut orders = Vec::new();
        let mut start = None;
        loop {
            let (items, next) = match filter.customer_id {
                Some(customer) => {
                    let output = self
                        .client
                        .query()
                        .table_name(&self.table)
                        .index_name(BY_CUSTOMER)
                        .key_condition_expression("customerId = :customer")
                        .expression_attribute_values(":customer", s(customer.to_string()))
                        .scan_index_forward(false)
                        .set_exclusive_start_key(start)
                        .send()
                        .await
                        .map_err(unavailable)?;
                    (output.items.unwrap_or_default(), output.last_evaluated_key)
                }
                None => {
                    let output = self
                        .client
                        .scan()
                        .table_name(&self.table)
                        .set_exclusive_start_key(start)
                        .send()
                        .await
                        .map_err(unavailable)?;
                    (output.items.unwrap_or_default(), output.last_evaluated_key)
                }
            };
            for item in &items {
                orders.push(decode(item)?);
            }
            start = next;
            if start.is_none() {
                break;
            }
        }
        orders.retain(|o| filter.status.is_none_or(|status| o.status == status));
        orders.sort_by_key(|o| std::cmp::Reverse((o.created_at, o.id)));
        if let Some(after) = after {
            orders.retain(|o| {
                let created = sortable(o);
                created < after.created_at || (created == after.created_at && o.id < after.id)
            });
        }
        orders.truncate(limit as usize);
        Ok(orders)
    }
}

/// Feeds [`DynamoOrderViews`] from the `orders` topic.
pub struct OrderViewProjection {
    store: Arc<dyn EventStore>,
    views: DynamoOrderViews,
}

impl OrderViewProjection {
    pub fn new(store: Arc<dyn EventStore>, views: DynamoOrderViews) -> Self {
        Self { store, views }
    }
}

#[async_trait]
impl Handler for OrderViewProjection {
    fn group(&self) -> &'static str {
        GROUP
    }

    fn topics(&self) -> &'static [&'static str] {
        &[topics::ORDERS]
    }

    async fn handle(&self, event: &RecordedEvent) -> Result<(), BoxError> {
        if event.event.aggregate_type != AGGREGATE {
            return Ok(());
        }
        let history = self.store.read_stream(event.event.aggregate_id).await?;
        let Some(order) = Order::from_history(&history)? else {
            return Err(format!("order {} has no events", event.event.aggregate_id).into());
        };
        if self.views.put(&order).await? {
            tracing::debug!(order_id = %order.id, version = order.version, "order view updated");
        }
        Ok(())
    }
}

/// The creation time as the index sorts it (RFC 3339, microseconds, UTC).
fn sortable(order: &Order) -> String {
    order
        .created_at
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn unavailable<E: std::error::Error + Send + Sync + 'static>(
    error: aws_sdk_dynamodb::error::SdkError<E, aws_sdk_dynamodb::config::http::HttpResponse>,
) -> Error {
    Error::Views(boxed(error))
}

fn decode(item: &HashMap<String, AttributeValue>) -> Result<Order, Error> {
    match item.get("order") {
        Some(AttributeValue::S(json)) => {
            serde_json::from_str(json).map_err(|e| Error::Corrupt(format!("the order view ({e})")))
        }
        _ => Err(Error::Corrupt("an order view without its order".into())),
    }
}

/// Creates the orders table as `deploy/serverless/terraform` does (on-demand, with the
/// `by-customer` index), for tests and local runs; an existing one is left alone.
pub async fn create_orders_table(client: &Client, table: &str) -> Result<(), BoxError> {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType,
        Projection, ProjectionType, ScalarAttributeType,
    };
    let string = |name: &str| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build()
    };
    let key = |name: &str, kind: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(kind)
            .build()
    };
    let result = client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(string("orderId")?)
        .attribute_definitions(string("customerId")?)
        .attribute_definitions(string("createdAt")?)
        .key_schema(key("orderId", KeyType::Hash)?)
        .global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name(BY_CUSTOMER)
                .key_schema(key("customerId", KeyType::Hash)?)
                .key_schema(key("createdAt", KeyType::Range)?)
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::All)
                        .build(),
                )
                .build()?,
        )
        .send()
        .await;
    applied(result, CreateTableError::is_resource_in_use_exception)?;
    Ok(())
}
