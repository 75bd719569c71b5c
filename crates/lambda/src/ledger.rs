//! The simulated payment provider's books in the state table, so that its idempotency
//! holds across invocations and concurrent function instances, as a real provider's does.
//!
//! | item | `pk` | `sk` |
//! | --- | --- | --- |
//! | the answer given for a key | `provider#<key>` | `operation` |
//! | how often a key was tried | `provider#<key>` | `attempts` |
//!
//! An answer is put with `attribute_not_exists(pk)`: of two concurrent first calls with one
//! key, the second finds the first's answer and returns it.

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use oxcart_dynamodb::{applied, boxed};
use oxcart_events::store::BoxError;
use oxcart_payments::provider::{Answer, Ledger, Operation};

#[derive(Debug, Clone)]
pub struct DynamoLedger {
    client: Client,
    table: String,
}

impl DynamoLedger {
    /// `table` is the state table (`pk` string, `sk` string).
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn pk(key: &str) -> AttributeValue {
    s(format!("provider#{key}"))
}

#[async_trait]
impl Ledger for DynamoLedger {
    async fn recorded(&self, key: &str) -> Result<Option<Answer>, BoxError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", pk(key))
            .key("sk", s("operation"))
            .consistent_read(true)
            .send()
            .await
            .map_err(boxed)?;
        let Some(item) = output.item() else {
            return Ok(None);
        };
        let text = |name: &str| item.get(name).and_then(|v| v.as_s().ok()).cloned();
        Ok(Some(Answer {
            approved: item
                .get("approved")
                .and_then(|v| v.as_bool().ok())
                .copied()
                .ok_or("a provider answer without `approved`")?,
            reference: text("reference").ok_or("a provider answer without `reference`")?,
            decline_code: text("declineCode"),
        }))
    }

    async fn record(&self, key: &str, operation: Operation<'_>) -> Result<Answer, BoxError> {
        let mut put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", pk(key))
            .item("sk", s("operation"))
            .item("kind", s(operation.kind))
            .item("amount", AttributeValue::N(operation.amount.to_string()))
            .item("currency", s(operation.currency))
            .item("approved", AttributeValue::Bool(operation.answer.approved))
            .item("reference", s(&operation.answer.reference))
            .item("createdAt", s(chrono::Utc::now().to_rfc3339()))
            .condition_expression("attribute_not_exists(pk)");
        if let Some(code) = &operation.answer.decline_code {
            put = put.item("declineCode", s(code));
        }
        if applied(
            put.send().await,
            PutItemError::is_conditional_check_failed_exception,
        )? {
            return Ok(operation.answer);
        }
        self.recorded(key)
            .await?
            .ok_or_else(|| "the simulated provider lost an operation".into())
    }

    async fn attempt(&self, key: &str) -> Result<i64, BoxError> {
        let output = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", pk(key))
            .key("sk", s("attempts"))
            .update_expression("ADD attempts :one")
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await
            .map_err(boxed)?;
        let attempts = output
            .attributes()
            .and_then(|a| a.get("attempts"))
            .and_then(|v| v.as_n().ok())
            .ok_or("DynamoDB did not answer with the attempt count")?;
        Ok(attempts.parse()?)
    }
}
