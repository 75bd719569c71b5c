//! The payments service's part in the saga (consumer group `payment-service`).
//!
//! ```text
//! order.created   ─▶ a pending payment (amount, currency, card token)
//! stock.reserved  ─▶ charge ─▶ payment.succeeded | payment.failed
//! stock.rejected  ─▶ the pending payment is cancelled; nothing is charged
//! order.cancelled ─▶ refund if charged (payment.refunded), else cancel the pending one
//! ```
//!
//! Events are handled in two steps. First, outside any transaction, each is decided
//! against its payment's state: what it comes to, with the provider called where the
//! event needs it (a charge, a refund), with the order id as idempotency key. Then every
//! decision is recorded, with the events' claims and the outcome events, in one
//! transaction. A crash between the two means the events are redelivered, the provider
//! answers each repeated key with its first answer, and nothing is charged twice.
//!
//! The two steps take a whole polled batch at once on SQLite: the provider calls of
//! different orders run concurrently, and the batch's records share one commit, where
//! there were three per order (the intent, the provider's books, the outcome). If the
//! batch fails to record, the runner delivers its events one at a time, through the
//! same two steps, so a poison event is parked alone.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use oxcart_db::{self as db, Db, Tx};
use oxcart_events::bus::topics;
use oxcart_events::consumer::{Handler, Unfinished};
use oxcart_events::outbox::Outbox;
use oxcart_events::store::BoxError;
use oxcart_events::types::{order, stock};
use oxcart_events::{EventStore, NewEvent, Position, RecordedEvent, StreamAppend, trace};
use oxcart_platform::cache::Cached;
use serde::Deserialize;
use sqlx::Row as _;
use tracing::{Instrument as _, Span};
use uuid::Uuid;

use crate::domain::{
    Asked, Charged, OrderCreated, RefundMade, RefundRequested, Row, Source, charge_order,
    refund_event,
};
use crate::provider::{PaymentProvider, Refund};
use crate::{PaymentStatus, payment_id};

pub const GROUP: &str = "payment-service";

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AboutOrder {
    order_id: Uuid,
}

pub struct PaymentSaga {
    db: Db,
    outbox: Arc<dyn Outbox>,
    /// The log, to read an `order.created` that has not been delivered yet.
    log: Arc<dyn EventStore>,
    provider: Arc<dyn PaymentProvider>,
    /// The payment cache, whose orders' entries each recorded step invalidates.
    pub(crate) cache: Option<Cached>,
}

/// What one event comes to, decided outside any transaction.
enum Step {
    /// Record the order's pending payment.
    Intend { order_id: Uuid, order: OrderCreated },
    /// Record the provider's answer, and tell the order. `intent` is the order's
    /// `order.created`, read from the log, when its payment was not recorded yet.
    Charge {
        order_id: Uuid,
        intent: Option<(Uuid, OrderCreated)>,
        charged: Charged,
        /// The charge's span: the provider call, and then its record, are its children.
        span: Span,
    },
    /// The order ended before it was charged.
    Cancel { order_id: Uuid },
    /// The provider has refunded (part of) the charge: the rest of it for a cancelled
    /// order, or what an admin asked for.
    Refund {
        order_id: Uuid,
        refund: RefundMade,
        /// The payment stream's version the event is appended at.
        version: u64,
        event: NewEvent,
        span: Span,
    },
}

/// An event left undecided: the one whose decision failed, with its error, or one of
/// the same order's after it.
struct Left {
    index: usize,
    error: Option<BoxError>,
}

impl PaymentSaga {
    /// `store` is both where payments appends its events and the log it reads an order's
    /// `order.created` from.
    pub fn new<S: Outbox + EventStore>(
        db: Db,
        store: Arc<S>,
        provider: Arc<dyn PaymentProvider>,
    ) -> Self {
        Self {
            db,
            outbox: store.clone(),
            log: store,
            provider,
            cache: None,
        }
    }

    /// Decides, then records, `events` (in log order). An order whose decision failed
    /// (its provider call, say) is left out from the failed event on, and the rest is
    /// recorded; in a batch the error is then [`Unfinished`], naming the events left for
    /// the runner to deliver one at a time.
    async fn run(&self, events: &[&RecordedEvent]) -> Result<(), BoxError> {
        let (steps, mut left) = self.decide(events).await;
        if events.len() == 1
            && let Some(error) = left.first_mut().and_then(|l| l.error.take())
        {
            return Err(error);
        }
        self.record(&steps).await?;
        let id = |l: &Left| events[l.index].event.event_id;
        let failed = left.iter().filter(|l| l.error.is_some()).map(id).collect();
        let left_ids = left.iter().map(id).collect();
        let Some(error) = left.into_iter().find_map(|l| l.error) else {
            return Ok(());
        };
        Err(Box::new(Unfinished {
            failed,
            left: left_ids,
            error,
        }))
    }

    /// Decides each event against its payment's state, one order's events in order and
    /// different orders' concurrently, calling the provider where an event needs it.
    /// `None` for an event that changes nothing (payments does not act on its type, or
    /// the payment's state says it was applied before), and for those left undecided:
    /// an order's events from the one whose decision failed on.
    async fn decide<'a>(
        &self,
        events: &[&'a RecordedEvent],
    ) -> (Vec<(&'a RecordedEvent, Option<Step>)>, Vec<Left>) {
        let mut orders: HashMap<Uuid, Vec<usize>> = HashMap::new();
        let mut left = Vec::new();
        for (index, event) in events.iter().enumerate() {
            match about_order(event) {
                Ok(Some(order_id)) => orders.entry(order_id).or_default().push(index),
                Ok(None) => {}
                Err(error) => left.push(Left {
                    index,
                    error: Some(error),
                }),
            }
        }
        let decided =
            futures::future::join_all(orders.into_iter().map(|(order_id, indices)| async move {
                let mut decided = Vec::with_capacity(indices.len());
                let mut payment = None;
                for (n, &i) in indices.iter().enumerate() {
                    // One event alone is already in the runner's span for it.
                    let span = if events.len() > 1 {
                        trace::process_span(GROUP, events[i], 1)
                    } else {
                        Span::current()
                    };
                    let step = async {
                        if n == 0 {
                            payment = self.payment(order_id).await?;
                        }
                        self.decide_one(events[i], order_id, &mut payment).await
                    }
                    .instrument(span)
                    .await;
                    match step {
                        Ok(Some(step)) => decided.push((i, step)),
                        Ok(None) => {}
                        Err(error) => {
                            let mut error = Some(error);
                            let left = indices[n..].iter().map(|&index| Left {
                                index,
                                error: error.take(),
                            });
                            return (decided, left.collect());
                        }
                    }
                }
                (decided, Vec::new())
            }))
            .await;
        let mut steps: Vec<(&RecordedEvent, Option<Step>)> =
            events.iter().map(|&event| (event, None)).collect();
        for (decided, undecided) in decided {
            for (i, step) in decided {
                steps[i].1 = Some(step);
            }
            left.extend(undecided);
        }
        left.sort_by_key(|l| l.index);
        (steps, left)
    }

    /// What `event` comes to for the order's `payment` (as recorded, and as the events
    /// before it in this batch leave it), which it updates to match; `None` if nothing.
    async fn decide_one(
        &self,
        event: &RecordedEvent,
        order_id: Uuid,
        payment: &mut Option<Row>,
    ) -> Result<Option<Step>, BoxError> {
        match event.event.event_type.as_str() {
            order::CREATED => {
                if payment.is_some() {
                    return Ok(None);
                }
                let order: OrderCreated = serde_json::from_value(event.event.data.clone())?;
                *payment = Some(Row::pending(&order));
                Ok(Some(Step::Intend { order_id, order }))
            }
            stock::RESERVED => {
                let intent = match payment {
                    Some(_) => None,
                    None => {
                        let (id, order) = self.order_created(order_id).await?;
                        *payment = Some(Row::pending(&order));
                        Some((id, order))
                    }
                };
                let Some(row) = payment.as_mut() else {
                    return Ok(None);
                };
                if row.status != PaymentStatus::Pending {
                    return Ok(None);
                }
                let span = tracing::info_span!("charge", order.id = %order_id);
                let charged = charge_order(self.provider.as_ref(), event, order_id, row)
                    .instrument(span.clone())
                    .await?;
                row.status = charged.status;
                row.provider_reference.clone_from(&charged.reference);
                Ok(Some(Step::Charge {
                    order_id,
                    intent,
                    charged,
                    span,
                }))
            }
            kind @ (stock::REJECTED | order::CANCELLED) => match payment {
                // A processing payment keeps its reference: should the provider report
                // it succeeded after all, its notice refunds it (see `notices`).
                Some(row)
                    if matches!(
                        row.status,
                        PaymentStatus::Pending | PaymentStatus::Processing
                    ) =>
                {
                    row.status = PaymentStatus::Cancelled;
                    Ok(Some(Step::Cancel { order_id }))
                }
                Some(row)
                    if row.status == PaymentStatus::Succeeded
                        && kind == order::CANCELLED
                        && row.amount > row.refunded =>
                {
                    // What requested refunds have not given back already.
                    let asked = Asked {
                        refund_id: order_id,
                        amount: row.amount - row.refunded,
                        source: Source::Cancellation,
                        reason: "order cancelled".to_owned(),
                    };
                    Ok(Some(self.refund(event, order_id, row, asked).await?))
                }
                _ => Ok(None),
            },
            order::REFUND_REQUESTED => {
                let request: RefundRequested = serde_json::from_value(event.event.data.clone())?;
                let Some(row) = payment.as_mut() else {
                    return Err(
                        format!("order {order_id} asks for a refund, but has no payment").into(),
                    );
                };
                if self.refunded(request.refund_id).await? {
                    return Ok(None);
                }
                if row.status != PaymentStatus::Succeeded
                    || request.amount > row.amount - row.refunded
                {
                    // The order only asks for what is left of a paid order; a payment that
                    // disagrees is for an operator (the event is dead-lettered).
                    return Err(format!(
                        "order {order_id} asks for {} back, but its payment is {} with {} of {} refunded",
                        request.amount,
                        row.status.as_str(),
                        row.refunded,
                        row.amount
                    )
                    .into());
                }
                let asked = Asked {
                    refund_id: request.refund_id,
                    amount: request.amount,
                    source: Source::Request,
                    reason: request.reason,
                };
                Ok(Some(self.refund(event, order_id, row, asked).await?))
            }
            _ => Ok(None),
        }
    }

    /// The order's `order.created`, from the log, when its delivery has not come yet. On
    /// the embedded log it always has; on Kafka it travels on the `orders` topic while
    /// `stock.reserved` travels on `catalog`, and Kafka orders only within a partition,
    /// so after a restart with a backlog the reservation can come first. Reading the
    /// cause from the log (and claiming it, so that its own delivery later changes
    /// nothing) lets the charge go ahead instead of waiting on an event that may be
    /// queued behind this one.
    async fn order_created(&self, order_id: Uuid) -> Result<(Uuid, OrderCreated), BoxError> {
        let created = order_created(self.log.as_ref(), order_id).await?;
        Ok((
            created.event.event_id,
            serde_json::from_value(created.event.data)?,
        ))
    }

    async fn payment(&self, order_id: Uuid) -> Result<Option<Row>, BoxError> {
        let row = db::query(
            "SELECT status, amount, currency, payment_token, provider_reference, refunded_amount, \
             (SELECT COUNT(*) FROM refunds WHERE refunds.order_id = payments.order_id) AS refunds \
             FROM payments WHERE order_id = $1",
        )
        .bind(order_id.to_string())
        .fetch_optional(&mut *self.db.read_primary().await?)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        Ok(Some(Row {
            status: PaymentStatus::parse(&row.try_get::<String, _>("status")?)
                .ok_or("unreadable payment status")?,
            amount: row.try_get("amount")?,
            currency: row.try_get("currency")?,
            token: row.try_get("payment_token")?,
            provider_reference: row.try_get("provider_reference")?,
            refunded: row.try_get("refunded_amount")?,
            refunds: u64::try_from(row.try_get::<i64, _>("refunds")?)?,
        }))
    }

    /// Whether refund `id` was made before (a redelivered request).
    async fn refunded(&self, id: Uuid) -> Result<bool, BoxError> {
        let found: Option<String> =
            db::query_scalar("SELECT refund_id FROM refunds WHERE refund_id = $1")
                .bind(id.to_string())
                .fetch_optional(&mut *self.db.read_primary().await?)
                .await?;
        Ok(found.is_some())
    }

    /// Asks the provider for `asked` back of the charge of `payment`, which it updates to
    /// match, under the refund's id as idempotency key.
    async fn refund(
        &self,
        cause: &RecordedEvent,
        order_id: Uuid,
        payment: &mut Row,
        asked: Asked,
    ) -> Result<Step, BoxError> {
        let span =
            tracing::info_span!("refund", order.id = %order_id, refund.id = %asked.refund_id);
        let reference = self
            .provider
            .refund(&Refund {
                idempotency_key: format!("refund:{}", asked.refund_id),
                charge_reference: payment.provider_reference.clone().unwrap_or_default(),
                amount: asked.amount,
                currency: payment.currency.clone(),
            })
            .instrument(span.clone())
            .await?;
        let refund = RefundMade {
            refund_id: asked.refund_id,
            amount: asked.amount,
            currency: payment.currency.clone(),
            source: asked.source,
            reason: asked.reason,
            reference,
        };
        let event = refund_event(cause, order_id, &refund);
        let version = 1 + payment.refunds;
        payment.refunded += refund.amount;
        payment.refunds += 1;
        if payment.refunded >= payment.amount {
            payment.status = PaymentStatus::Refunded;
        }
        Ok(Step::Refund {
            order_id,
            refund,
            version,
            event,
            span,
        })
    }

    /// Records the decided steps in one transaction, each event claimed with its effect.
    /// An event that changes nothing is not claimed: the payment's state already says
    /// so, and a redelivery decides the same.
    async fn record(&self, steps: &[(&RecordedEvent, Option<Step>)]) -> Result<(), BoxError> {
        if steps.iter().all(|(_, step)| step.is_none()) {
            return Ok(());
        }
        let mut tx = self.db.begin().await?;
        // Every step's event, and the `order.created` a charge records the intent of (its
        // own delivery, later, finds it claimed), in one statement.
        let ids: Vec<Uuid> = steps
            .iter()
            .filter_map(|(event, step)| Some((event, step.as_ref()?)))
            .flat_map(|(event, step)| {
                let intent = match step {
                    Step::Charge {
                        intent: Some((created, _)),
                        ..
                    } => Some(*created),
                    _ => None,
                };
                std::iter::once(event.event.event_id).chain(intent)
            })
            .collect();
        // Not `claim_fresh`: a charge claims the `order.created` that recorded its intent
        // too, so a step stands for one or two events.
        let claimed = db::claim_all(&mut tx, GROUP, &ids).await?;
        let applied: Vec<&Step> = steps
            .iter()
            .filter(|(event, _)| claimed.contains(&event.event.event_id))
            .filter_map(|(_, step)| step.as_ref())
            .collect();
        // The orders' cached payments, invalidated before the commit and after it: what
        // a lookup between the two fetched is stored under a generation left behind.
        let orders: Vec<String> = applied.iter().map(|s| s.order_id().to_string()).collect();
        self.invalidate(&orders).await;
        let appended = write(&mut tx, self.outbox.as_ref(), &applied).await?;
        tx.commit().await?;
        self.invalidate(&orders).await;
        if let Some(position) = appended {
            self.outbox.committed(position);
        }
        for step in applied {
            match step {
                Step::Charge {
                    order_id, charged, ..
                } => {
                    tracing::info!(order_id = %order_id, outcome = charged.status.as_str(), reason = charged.reason.as_deref(), "charge");
                }
                Step::Refund {
                    order_id, refund, ..
                } => {
                    tracing::info!(order_id = %order_id, refund_id = %refund.refund_id, amount = refund.amount, "refund");
                }
                _ => {}
            }
        }
        Ok(())
    }
}

impl PaymentSaga {
    async fn invalidate(&self, orders: &[String]) {
        invalidate(self.cache.as_ref(), orders).await;
    }
}

/// Moves the cached payments of `orders` to a new generation. A cache out of reach is
/// logged, not fatal: payments must go on, and its entries expire within their lifetime.
pub(crate) async fn invalidate(cache: Option<&Cached>, orders: &[String]) {
    if let (Some(cache), false) = (cache, orders.is_empty())
        && let Err(error) = cache.invalidate_scopes(orders).await
    {
        tracing::warn!(error = %error, "cannot invalidate the payment cache");
    }
}

impl Step {
    fn order_id(&self) -> Uuid {
        match self {
            Self::Intend { order_id, .. }
            | Self::Charge { order_id, .. }
            | Self::Cancel { order_id }
            | Self::Refund { order_id, .. } => *order_id,
        }
    }
}

/// Writes the steps in a few multi-row statements whatever their number: the pending
/// payments, the charges' outcomes, the cancellations, the refunds, then every outcome
/// event in one append. That order is the one an order's own steps can come in (its
/// intent before its charge, its charge before its refund), so a batch writes what one
/// step at a time would. Returns the position of the last event appended.
async fn write(
    tx: &mut Tx,
    outbox: &dyn Outbox,
    steps: &[&Step],
) -> Result<Option<Position>, BoxError> {
    let now = db::timestamp(db::now());
    let mut intents = Vec::new();
    let mut charges = Vec::new();
    let mut cancels = Vec::new();
    let mut refunds = Vec::new();
    let mut replies = Vec::new();
    for step in steps {
        match step {
            Step::Intend { order_id, order } => intents.push((*order_id, order)),
            Step::Charge {
                order_id,
                intent,
                charged,
                span,
            } => {
                if let Some((_, order)) = intent {
                    intents.push((*order_id, order));
                }
                charges.push((*order_id, charged));
                if let Some(event) = &charged.event {
                    replies.push(reply(span, *order_id, 0, event));
                }
            }
            Step::Cancel { order_id } => cancels.push(*order_id),
            Step::Refund {
                order_id,
                refund,
                version,
                event,
                span,
            } => {
                refunds.push((*order_id, refund));
                replies.push(reply(span, *order_id, *version, event));
            }
        }
    }
    for chunk in intents.chunks(db::ROWS_PER_STATEMENT) {
        let sql = format!(
            "INSERT INTO payments (id, order_id, user_id, amount, currency, payment_token, status, created_at, updated_at) \
             VALUES {} ON CONFLICT (order_id) DO NOTHING",
            db::values(chunk.len(), 9, 1)
        );
        let mut insert = db::query(&sql);
        for (order_id, order) in chunk {
            insert = insert
                .bind(payment_id(*order_id).to_string())
                .bind(order_id.to_string())
                .bind(order.customer_id.to_string())
                .bind(order.total_amount)
                .bind(&order.currency)
                .bind(&order.payment_token)
                .bind(PaymentStatus::Pending.as_str())
                .bind(&now)
                .bind(&now);
        }
        insert.execute(&mut **tx).await?;
    }
    for chunk in charges.chunks(db::ROWS_PER_STATEMENT) {
        let sql = format!(
            "WITH charged (order_id, status, provider_reference, failure_reason) AS (VALUES {}) \
             UPDATE payments SET status = charged.status, provider_reference = charged.provider_reference, \
             failure_reason = charged.failure_reason, updated_at = ${} \
             FROM charged WHERE payments.order_id = charged.order_id AND payments.status = 'pending'",
            db::values(chunk.len(), 4, 1),
            chunk.len() * 4 + 1
        );
        let mut update = db::query(&sql);
        for (order_id, charged) in chunk {
            update = update
                .bind(order_id.to_string())
                .bind(charged.status.as_str())
                .bind(&charged.reference)
                .bind(&charged.reason);
        }
        let updated = update.bind(&now).execute(&mut **tx).await?;
        if updated.rows_affected() != chunk.len() as u64 {
            // Only another process racing on these orders gets here; the embedded log
            // hands one order's events to one consumer in order. Loud, and left to an
            // operator.
            return Err("a payment changed while it was being charged".into());
        }
    }
    for chunk in cancels.chunks(db::ROWS_PER_STATEMENT) {
        let sql = format!(
            "UPDATE payments SET status = 'cancelled', updated_at = $1 \
             WHERE status IN ('pending', 'processing') AND order_id IN ({})",
            db::params(chunk.len(), 2)
        );
        let mut update = db::query(&sql).bind(&now);
        for order_id in chunk {
            update = update.bind(order_id.to_string());
        }
        update.execute(&mut **tx).await?;
    }
    write_refunds(tx, &refunds, &now).await?;
    if replies.is_empty() {
        return Ok(None);
    }
    let appended = outbox.append_all_in(tx, replies).await?;
    Ok(appended.iter().map(|one| one.position).max())
}

/// Records `refunds` (each once, by id), and adds them to their payments: `refunded`
/// once they come to the whole amount. An order's refunds of one batch are summed first,
/// since an `UPDATE … FROM` updates a row once however many rows match it.
pub(crate) async fn write_refunds(
    tx: &mut Tx,
    refunds: &[(Uuid, &RefundMade)],
    now: &str,
) -> Result<(), BoxError> {
    for chunk in refunds.chunks(db::ROWS_PER_STATEMENT) {
        let sql = format!(
            "INSERT INTO refunds (refund_id, order_id, amount, currency, source, reason, provider_reference, created_at) \
             VALUES {} ON CONFLICT (refund_id) DO NOTHING",
            db::values(chunk.len(), 8, 1)
        );
        let mut insert = db::query(&sql);
        for (order_id, refund) in chunk {
            insert = insert
                .bind(refund.refund_id.to_string())
                .bind(order_id.to_string())
                .bind(refund.amount)
                .bind(&refund.currency)
                .bind(refund.source.as_str())
                .bind(&refund.reason)
                .bind(&refund.reference)
                .bind(now);
        }
        insert.execute(&mut **tx).await?;
    }
    let mut by_order: indexmap::IndexMap<Uuid, (i64, &str)> = indexmap::IndexMap::new();
    for (order_id, refund) in refunds {
        let entry = by_order.entry(*order_id).or_insert((0, ""));
        entry.0 += refund.amount;
        entry.1 = &refund.reference;
    }
    let by_order: Vec<_> = by_order.into_iter().collect();
    for chunk in by_order.chunks(db::ROWS_PER_STATEMENT) {
        let sql = format!(
            "WITH refunded (order_id, amount, refund_reference) AS (VALUES {}) \
             UPDATE payments SET refunded_amount = payments.refunded_amount + refunded.amount, \
             refund_reference = refunded.refund_reference, \
             status = CASE WHEN payments.refunded_amount + refunded.amount >= payments.amount \
             THEN 'refunded' ELSE payments.status END, updated_at = ${} \
             FROM refunded WHERE payments.order_id = refunded.order_id \
             AND payments.status IN ('succeeded', 'cancelled')",
            db::values(chunk.len(), 3, 1),
            chunk.len() * 3 + 1
        );
        let mut update = db::query(&sql);
        for (order_id, (amount, reference)) in chunk {
            update = update
                .bind(order_id.to_string())
                .bind(*amount)
                .bind(*reference);
        }
        update.bind(now).execute(&mut **tx).await?;
    }
    Ok(())
}

/// The append of an outcome event to its payment's stream (at `expected_version`), the
/// event stamped with an append span under `span`, the charge's or the refund's: the
/// step's trace goes on through it to the event's consumers.
fn reply(span: &Span, order_id: Uuid, expected_version: u64, event: &NewEvent) -> StreamAppend {
    let _entered = span.enter();
    let mut events = vec![event.clone()];
    trace::stamp(&trace::append_span(&events), &mut events);
    StreamAppend {
        aggregate_id: payment_id(order_id),
        expected_version,
        events,
    }
}

/// The `order.created` of `order_id`, read from `log`.
pub(crate) async fn order_created(
    log: &dyn EventStore,
    order_id: Uuid,
) -> Result<RecordedEvent, BoxError> {
    log.read_stream(order_id)
        .await?
        .into_iter()
        .find(|e| e.event.event_type == order::CREATED)
        .ok_or_else(|| format!("order {order_id} has no order.created in the log").into())
}

/// The order an event concerns, if payments acts on its type.
fn about_order(event: &RecordedEvent) -> Result<Option<Uuid>, BoxError> {
    Ok(match event.event.event_type.as_str() {
        order::CREATED | order::CANCELLED | order::REFUND_REQUESTED => {
            Some(event.event.aggregate_id)
        }
        stock::RESERVED | stock::REJECTED => {
            Some(serde_json::from_value::<AboutOrder>(event.event.data.clone())?.order_id)
        }
        _ => None,
    })
}

#[async_trait]
impl Handler for PaymentSaga {
    fn group(&self) -> &'static str {
        GROUP
    }

    fn topics(&self) -> &'static [&'static str] {
        &[topics::ORDERS, topics::CATALOG]
    }

    async fn handle(&self, event: &RecordedEvent) -> Result<(), BoxError> {
        self.run(&[event]).await
    }

    fn batches(&self) -> bool {
        true
    }

    async fn handle_batch(&self, events: &[&RecordedEvent]) -> Result<(), BoxError> {
        self.run(events).await
    }
}
