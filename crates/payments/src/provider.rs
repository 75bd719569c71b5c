//! The payment-provider port, and the simulated provider oxcart runs by default.
//!
//! Every call carries an idempotency key (a charge's is the order id): a provider that
//! sees a key again answers as it did the first time and moves no money, which is what
//! makes a redelivered event harmless even when the crash came between the charge and
//! the record of it.

use std::time::Duration;

use async_trait::async_trait;
use oxcart_events::store::BoxError;
use oxcart_platform::db::{self, Db};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Charge {
    pub idempotency_key: String,
    /// Minor units.
    pub amount: i64,
    pub currency: String,
    pub token: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChargeOutcome {
    Approved {
        reference: String,
    },
    /// The card was refused; retrying will not help. `code` is the provider's reason.
    Declined {
        code: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refund {
    pub idempotency_key: String,
    pub charge_reference: String,
    pub amount: i64,
    pub currency: String,
}

/// A failure worth retrying: the provider could not be reached or asked to come back.
#[derive(Debug, thiserror::Error)]
#[error("the payment provider is unavailable: {0}")]
pub struct Unavailable(pub String);

#[async_trait]
pub trait PaymentProvider: Send + Sync + 'static {
    async fn charge(&self, charge: &Charge) -> Result<ChargeOutcome, BoxError>;
    /// Returns the refund's reference.
    async fn refund(&self, refund: &Refund) -> Result<String, BoxError>;
}

/// The test tokens the simulated provider understands.
pub mod tokens {
    /// Approved.
    pub const SUCCESS: &str = "tok_success";
    /// Declined: `card_declined`.
    pub const DECLINED: &str = "tok_declined";
    /// Declined: `insufficient_funds`.
    pub const INSUFFICIENT_FUNDS: &str = "tok_insufficient_funds";
    /// The first attempt fails as if the provider were down; the retry is approved.
    pub const TRANSIENT: &str = "tok_transient";
    /// Approved, after the configured slow delay.
    pub const SLOW: &str = "tok_slow";
}

/// A provider that behaves like a real one for the documented test tokens, keeping its
/// books in the database so that its idempotency survives restarts.
#[derive(Debug, Clone)]
pub struct SimulatedProvider {
    db: Db,
    slow_delay: Duration,
}

impl SimulatedProvider {
    pub fn new(db: Db, slow_delay: Duration) -> Self {
        Self { db, slow_delay }
    }

    /// The answer already given for `key`, if any.
    async fn recorded(
        &self,
        key: &str,
    ) -> Result<Option<(bool, String, Option<String>)>, BoxError> {
        let row: Option<(i64, String, Option<String>)> = db::query_as(
            "SELECT approved, reference, decline_code FROM simulated_provider_operations WHERE idempotency_key = $1",
        )
        .bind(key)
        .fetch_optional(&mut *self.db.read_primary().await?)
        .await?;
        Ok(row.map(|(approved, reference, code)| (approved == 1, reference, code)))
    }

    async fn record(
        &self,
        key: &str,
        kind: &str,
        amount: i64,
        currency: &str,
        decline: Option<&str>,
    ) -> Result<(bool, String, Option<String>), BoxError> {
        let prefix = if kind == "charge" { "ch" } else { "re" };
        let reference = format!("{prefix}_{}", Uuid::now_v7().simple());
        let mut tx = self.db.begin().await?;
        // A concurrent call with the same key may have got there first: its answer wins.
        db::query(
            "INSERT INTO simulated_provider_operations (idempotency_key, kind, amount, currency, approved, \
             reference, decline_code, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (idempotency_key) DO NOTHING",
        )
        .bind(key)
        .bind(kind)
        .bind(amount)
        .bind(currency)
        .bind(i64::from(decline.is_none()))
        .bind(&reference)
        .bind(decline)
        .bind(db::timestamp(db::now()))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.recorded(key)
            .await?
            .ok_or_else(|| "the simulated provider lost an operation".into())
    }

    /// Counts an attempt for `key`; returns how many there have been.
    async fn attempt(&self, key: &str) -> Result<i64, BoxError> {
        let mut tx = self.db.begin().await?;
        let attempts = db::query_scalar(
            "INSERT INTO simulated_provider_attempts (idempotency_key, attempts) VALUES ($1, 1) \
             ON CONFLICT (idempotency_key) DO UPDATE SET attempts = simulated_provider_attempts.attempts + 1 \
             RETURNING attempts",
        )
        .bind(key)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(attempts)
    }
}

#[async_trait]
impl PaymentProvider for SimulatedProvider {
    #[tracing::instrument(
        name = "provider charge",
        skip_all,
        fields(otel.kind = "client", payment.provider = "simulated", payment.currency = %charge.currency)
    )]
    async fn charge(&self, charge: &Charge) -> Result<ChargeOutcome, BoxError> {
        let key = &charge.idempotency_key;
        let answer = match self.recorded(key).await? {
            Some(answer) => answer,
            None => {
                let token = charge.token.as_deref().unwrap_or_default();
                let decline = match token {
                    tokens::SUCCESS => None,
                    tokens::DECLINED => Some("card_declined"),
                    tokens::INSUFFICIENT_FUNDS => Some("insufficient_funds"),
                    tokens::TRANSIENT if self.attempt(key).await? == 1 => {
                        return Err(Unavailable("simulated outage (tok_transient)".into()).into());
                    }
                    tokens::TRANSIENT => None,
                    tokens::SLOW => {
                        tokio::time::sleep(self.slow_delay).await;
                        None
                    }
                    "" => Some("no_payment_method"),
                    _ => Some("invalid_payment_token"),
                };
                self.record(key, "charge", charge.amount, &charge.currency, decline)
                    .await?
            }
        };
        Ok(match answer {
            (true, reference, _) => ChargeOutcome::Approved { reference },
            (false, _, code) => ChargeOutcome::Declined {
                code: code.unwrap_or_else(|| "declined".into()),
            },
        })
    }

    async fn refund(&self, refund: &Refund) -> Result<String, BoxError> {
        let key = &refund.idempotency_key;
        let answer = match self.recorded(key).await? {
            Some(answer) => answer,
            None => {
                self.record(key, "refund", refund.amount, &refund.currency, None)
                    .await?
            }
        };
        Ok(answer.1)
    }
}
