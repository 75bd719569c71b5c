//! Consumer groups whose every effect is rows in the database, applied a batch at a time.
//!
//! Such a group ([`Apply`]) needs no call outside the database, so a whole polled batch
//! can be applied in one transaction: the events claimed in the inbox (one statement),
//! each applied in log order, and one commit for them all. That is one commit where there
//! were as many as events (on SQLite one fsync, on PostgreSQL one round of the commit
//! protocol), and the batch's events are still each applied exactly once: the claims
//! commit with the effects or not at all. If any event fails the transaction is dropped with nothing
//! applied, and the runner delivers the batch's events one at a time (`handle`), so a
//! poison event is retried and parked alone.

use std::sync::Arc;

use async_trait::async_trait;
use oxcart_db::{self as db, Db, Tx};
use oxcart_events::consumer::Handler;
use oxcart_events::outbox::Outbox;
use oxcart_events::store::BoxError;
use oxcart_events::{Position, RecordedEvent, trace};
use tracing::Instrument as _;

/// A consumer group's effects, as statements on the caller's transaction.
#[async_trait]
pub trait Apply: Send + Sync + 'static {
    /// See [`Handler::group`].
    fn group(&self) -> &'static str;

    /// See [`Handler::topics`].
    fn topics(&self) -> &'static [&'static str];

    /// Whether the group acts on `event`; the others are passed over without a claim.
    fn wants(&self, event: &RecordedEvent) -> bool;

    /// Applies `event`, already claimed for the group, on `tx`. Returns the position of
    /// the last event it appended through the outbox, if it did.
    async fn apply(&self, tx: &mut Tx, event: &RecordedEvent)
    -> Result<Option<Position>, BoxError>;

    /// Applies `events`, all claimed for the group, on `tx`, as if one by one in log
    /// order. By default that is what it does, each event in its consumer span when
    /// `in_spans`; a group may write the batch in multi-row statements instead, a few
    /// round trips to the database whatever the batch's size.
    async fn apply_all(
        &self,
        tx: &mut Tx,
        events: &[&RecordedEvent],
        in_spans: bool,
    ) -> Result<Option<Position>, BoxError> {
        apply_each(self, tx, events, in_spans).await
    }
}

/// What [`Apply::apply_all`] does unless a group writes its batches otherwise: each event
/// by [`Apply::apply`], in log order. For a group that batches some of its events and
/// not others.
pub async fn apply_each<A: Apply + ?Sized>(
    apply: &A,
    tx: &mut Tx,
    events: &[&RecordedEvent],
    in_spans: bool,
) -> Result<Option<Position>, BoxError> {
    let mut appended = None;
    for event in events {
        let step = apply.apply(tx, event);
        let position = if in_spans {
            step.instrument(trace::process_span(apply.group(), event, 1))
                .await?
        } else {
            step.await?
        };
        appended = position.or(appended);
    }
    Ok(appended)
}

/// The [`Handler`] of an [`Apply`]: one transaction per batch (or per event, when the
/// runner delivers one at a time).
pub struct InTransaction<A> {
    db: Db,
    apply: A,
    /// Rung after a commit that appended events.
    outbox: Option<Arc<dyn Outbox>>,
}

impl<A: Apply> InTransaction<A> {
    pub fn new(db: Db, apply: A) -> Self {
        Self {
            db,
            apply,
            outbox: None,
        }
    }

    /// For a group that appends events through `outbox`: rings it after each commit.
    pub fn with_outbox(mut self, outbox: Arc<dyn Outbox>) -> Self {
        self.outbox = Some(outbox);
        self
    }

    async fn apply_all(&self, events: &[&RecordedEvent], in_spans: bool) -> Result<(), BoxError> {
        let group = self.apply.group();
        let wanted: Vec<&RecordedEvent> = events
            .iter()
            .copied()
            .filter(|event| self.apply.wants(event))
            .collect();
        if wanted.is_empty() {
            return Ok(());
        }
        let mut tx = self.db.begin().await?;
        let fresh = db::claim_fresh(&mut tx, group, wanted, |event| event.event.event_id).await?;
        // One event alone is already in the runner's span for it.
        let appended = self.apply.apply_all(&mut tx, &fresh, in_spans).await?;
        tx.commit().await?;
        if let (Some(outbox), Some(position)) = (&self.outbox, appended) {
            outbox.committed(position);
        }
        Ok(())
    }
}

#[async_trait]
impl<A: Apply> Handler for InTransaction<A> {
    fn group(&self) -> &'static str {
        self.apply.group()
    }

    fn topics(&self) -> &'static [&'static str] {
        self.apply.topics()
    }

    async fn handle(&self, event: &RecordedEvent) -> Result<(), BoxError> {
        self.apply_all(&[event], false).await
    }

    /// On both engines: appends no longer serialise on PostgreSQL (the log is read in
    /// commit order instead; see `SqlEventStore`), so a batch that appends holds nothing
    /// but its own rows. A group that appended one event at a time there, as stock did
    /// behind the old append lock, took each product's row once an event: concurrent
    /// per-event transactions queued on a best-selling product's row.
    fn batches(&self) -> bool {
        true
    }

    async fn handle_batch(&self, events: &[&RecordedEvent]) -> Result<(), BoxError> {
        self.apply_all(events, true).await
    }
}
