//! The payment-provider port, and the simulated provider oxcart runs by default.
//!
//! Every call carries an idempotency key (a charge's is the order id): a provider that
//! sees a key again answers as it did the first time and moves no money, which is what
//! makes a redelivered event harmless even when the crash came between the charge and
//! the record of it.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use oxcart_db::{self as db, Db};
use oxcart_events::store::BoxError;
use tokio::sync::oneshot::error::TryRecvError;
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
    /// Accepted, with the outcome to come later from the provider (a webhook): the
    /// payment method settles asynchronously.
    Processing {
        reference: String,
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

/// The answer a provider gave for an idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub approved: bool,
    /// `ch_…` for a charge, `re_…` for a refund.
    pub reference: String,
    pub decline_code: Option<String>,
}

/// An operation the simulated provider books under its idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation<'a> {
    /// `charge` or `refund`.
    pub kind: &'a str,
    pub amount: i64,
    pub currency: &'a str,
    pub answer: Answer,
}

/// Where the simulated provider keeps its books: what it answered per idempotency key,
/// and how often a key was tried. A real provider keeps these on its side; the
/// simulation keeps them beside oxcart's data (SQL, or DynamoDB in the serverless mode)
/// so that its idempotency survives restarts and holds across processes.
#[async_trait]
pub trait Ledger: Send + Sync + 'static {
    /// The answer already given for `key`, if any.
    async fn recorded(&self, key: &str) -> Result<Option<Answer>, BoxError>;
    /// Books `operation` under `key` unless the key has an answer; answers with the one
    /// that stands (a concurrent call with the same key may have got there first).
    async fn record(&self, key: &str, operation: Operation<'_>) -> Result<Answer, BoxError>;
    /// Counts an attempt for `key`; answers how many there have been.
    async fn attempt(&self, key: &str) -> Result<i64, BoxError>;
}

/// The ledger in the service's SQL database.
///
/// Bookings made at the same moment share one transaction, as a provider's own service
/// would batch its writes: payments decides a polled batch's orders concurrently, and a
/// transaction each (a savepoint, an insert and a wait for the commit, on SQLite's one
/// writer) made the provider's books the slowest step of the saga. Each caller queues
/// its booking and then waits for the right to write; whoever gets it writes everything
/// queued by then in one transaction and answers every caller in it. No booking is
/// answered before its transaction is durable.
#[derive(Debug, Clone)]
pub struct SqlLedger {
    db: Db,
    queued: Arc<std::sync::Mutex<Vec<Booking>>>,
    writing: Arc<tokio::sync::Mutex<()>>,
}

#[derive(Debug)]
struct Booking {
    key: String,
    kind: String,
    amount: i64,
    currency: String,
    answer: Answer,
    reply: tokio::sync::oneshot::Sender<Result<Answer, String>>,
}

/// What the callers of a write hear if the caller writing for them was dropped mid-way
/// (its charge's future cancelled): an error, so their events are retried, and a retry
/// under the same key is harmless.
const ABANDONED: &str = "the simulated provider's booking was abandoned";

impl SqlLedger {
    pub fn new(db: Db) -> Self {
        Self {
            db,
            queued: Arc::default(),
            writing: Arc::default(),
        }
    }

    /// Books `bookings` in one transaction: what each key's answer is now (its own, or
    /// the one recorded before under the key).
    async fn book(&self, bookings: &[Booking]) -> Result<Vec<Answer>, BoxError> {
        let mut tx = self.db.begin().await?;
        let now = db::timestamp(db::now());
        let mut answers: std::collections::HashMap<String, Answer> = Default::default();
        for chunk in bookings.chunks(db::ROWS_PER_STATEMENT) {
            let sql = format!(
                "INSERT INTO simulated_provider_operations (idempotency_key, kind, amount, currency, \
                 approved, reference, decline_code, created_at) VALUES {} \
                 ON CONFLICT (idempotency_key) DO NOTHING \
                 RETURNING idempotency_key, approved, reference, decline_code",
                db::values(chunk.len(), 8, 1)
            );
            let mut insert = db::query_as::<(String, i64, String, Option<String>)>(&sql);
            for booking in chunk {
                insert = insert
                    .bind(&booking.key)
                    .bind(&booking.kind)
                    .bind(booking.amount)
                    .bind(&booking.currency)
                    .bind(i64::from(booking.answer.approved))
                    .bind(&booking.answer.reference)
                    .bind(&booking.answer.decline_code)
                    .bind(&now);
            }
            answers.extend(insert.fetch_all(&mut *tx).await?.into_iter().map(
                |(key, approved, reference, decline_code)| {
                    let answer = Answer {
                        approved: approved == 1,
                        reference,
                        decline_code,
                    };
                    (key, answer)
                },
            ));
        }
        tx.commit().await?;
        // A key booked before (a retried charge): the first answer stands.
        let mut answered = Vec::with_capacity(bookings.len());
        for booking in bookings {
            let answer = match answers.get(&booking.key) {
                Some(answer) => answer.clone(),
                None => self
                    .recorded(&booking.key)
                    .await?
                    .ok_or("the simulated provider lost an operation")?,
            };
            answered.push(answer);
        }
        Ok(answered)
    }
}

#[async_trait]
impl Ledger for SqlLedger {
    async fn recorded(&self, key: &str) -> Result<Option<Answer>, BoxError> {
        let row: Option<(i64, String, Option<String>)> = db::query_as(
            "SELECT approved, reference, decline_code FROM simulated_provider_operations WHERE idempotency_key = $1",
        )
        .bind(key)
        .fetch_optional(&mut *self.db.read_primary().await?)
        .await?;
        Ok(row.map(|(approved, reference, decline_code)| Answer {
            approved: approved == 1,
            reference,
            decline_code,
        }))
    }

    async fn record(&self, key: &str, operation: Operation<'_>) -> Result<Answer, BoxError> {
        let (reply, mut answer) = tokio::sync::oneshot::channel();
        self.queued
            .lock()
            .map_err(|_| "the simulated provider's queue is poisoned")?
            .push(Booking {
                key: key.to_owned(),
                kind: operation.kind.to_owned(),
                amount: operation.amount,
                currency: operation.currency.to_owned(),
                answer: operation.answer,
                reply,
            });
        let _writing = self.writing.lock().await;
        // Written, while this call waited, by whoever wrote before it.
        match answer.try_recv() {
            Ok(answered) => return answered.map_err(Into::into),
            Err(TryRecvError::Closed) => return Err(ABANDONED.into()),
            Err(TryRecvError::Empty) => {}
        }
        let bookings = std::mem::take(
            &mut *self
                .queued
                .lock()
                .map_err(|_| "the simulated provider's queue is poisoned")?,
        );
        match self.book(&bookings).await {
            Ok(answers) => {
                for (booking, answered) in bookings.into_iter().zip(answers) {
                    let _ = booking.reply.send(Ok(answered));
                }
            }
            Err(error) => {
                for booking in bookings {
                    let _ = booking.reply.send(Err(error.to_string()));
                }
            }
        }
        // Its own booking was among those just written.
        match answer.await {
            Ok(answered) => answered.map_err(Into::into),
            Err(_) => Err(ABANDONED.into()),
        }
    }

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

/// A provider that behaves like a real one for the documented test tokens, keeping its
/// books in a [`Ledger`].
#[derive(Clone)]
pub struct SimulatedProvider {
    ledger: Arc<dyn Ledger>,
    slow_delay: Duration,
}

impl SimulatedProvider {
    pub fn new(ledger: Arc<dyn Ledger>, slow_delay: Duration) -> Self {
        Self { ledger, slow_delay }
    }

    /// Books a new answer for `key`: approved unless `decline` names the reason.
    async fn book(
        &self,
        key: &str,
        kind: &str,
        (amount, currency): (i64, &str),
        decline: Option<&str>,
    ) -> Result<Answer, BoxError> {
        let prefix = if kind == "charge" { "ch" } else { "re" };
        let answer = Answer {
            approved: decline.is_none(),
            reference: format!("{prefix}_{}", Uuid::now_v7().simple()),
            decline_code: decline.map(str::to_owned),
        };
        let operation = Operation {
            kind,
            amount,
            currency,
            answer,
        };
        self.ledger.record(key, operation).await
    }

    /// What the test token makes of a first charge: `None` to approve, else the reason.
    async fn decide(&self, key: &str, token: &str) -> Result<Option<&'static str>, BoxError> {
        Ok(match token {
            tokens::SUCCESS => None,
            tokens::DECLINED => Some("card_declined"),
            tokens::INSUFFICIENT_FUNDS => Some("insufficient_funds"),
            tokens::TRANSIENT if self.ledger.attempt(key).await? == 1 => {
                return Err(Unavailable("simulated outage (tok_transient)".into()).into());
            }
            tokens::TRANSIENT => None,
            tokens::SLOW => {
                tokio::time::sleep(self.slow_delay).await;
                None
            }
            "" => Some("no_payment_method"),
            _ => Some("invalid_payment_token"),
        })
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
        let amount = (charge.amount, charge.currency.as_str());
        let answer = match self.ledger.recorded(key).await? {
            Some(answer) => answer,
            None => {
                let token = charge.token.as_deref().unwrap_or_default();
                let decline = self.decide(key, token).await?;
                self.book(key, "charge", amount, decline).await?
            }
        };
        Ok(if answer.approved {
            ChargeOutcome::Approved {
                reference: answer.reference,
            }
        } else {
            ChargeOutcome::Declined {
                code: answer.decline_code.unwrap_or_else(|| "declined".into()),
            }
        })
    }

    async fn refund(&self, refund: &Refund) -> Result<String, BoxError> {
        let key = &refund.idempotency_key;
        let amount = (refund.amount, refund.currency.as_str());
        let answer = match self.ledger.recorded(key).await? {
            Some(answer) => answer,
            None => self.book(key, "refund", amount, None).await?,
        };
        Ok(answer.reference)
    }
}
