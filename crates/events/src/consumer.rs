//! The consumer runner every service shares: delivery, retries, dead letters, metrics.
//!
//! A service supplies a [`Handler`]; the runner feeds it its consumer group's events and
//! commits the group's position only once every event of a batch is finished with, so a
//! crash at any point means redelivery, never loss. Redelivery is harmless because each
//! handler records the event ids it has applied in the same transaction as its effects
//! (`oxcart_db::begin_claimed`), and skips an event it finds there.
//!
//! An event whose handler fails is retried with exponential backoff and jitter. After
//! [`RetryPolicy::max_attempts`] it is parked in the dead-letter store with its last
//! error and the group moves on, so one poison event never holds up the events behind
//! it; `oxcart dlq replay` runs it again once the fault is fixed.
//!
//! A failure that says the handler's storage is down for now (an [outage](is_outage):
//! the event store unavailable, the database restarting) says nothing against the event,
//! and parking it would only strand it: such attempts are retried, with the same
//! backoff, for as long as the outage lasts, and never count toward dead-lettering.
//!
//! Within a batch, events are split into lanes by the order they concern and the lanes run
//! concurrently: a slow payment for one order does not hold up the next order, while the
//! events of any one order are still handled in log order.
//!
//! A handler whose effects can be undone together (rows in one database: see
//! [`Handler::batches`]) is first given the whole batch, to apply in one transaction with
//! one commit. Only if that fails, which leaves nothing applied, are the batch's events
//! delivered one at a time as above, so that a poison event is retried and parked alone
//! and the others commit once. A handler that can tell which events failed (one order's
//! provider call, say) applies the others and answers [`Unfinished`] with the ones left,
//! and only those go one at a time.

use std::collections::{BTreeSet, HashMap};
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::FutureExt as _;
use prometheus::core::Collector;
use prometheus::{IntCounterVec, IntGaugeVec, Opts};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;
use uuid::Uuid;

use crate::backoff::Backoff;
use crate::bus::{Bus, Subscription};
use crate::envelope::RecordedEvent;
use crate::store::BoxError;
use crate::trace;

#[async_trait]
pub trait Handler: Send + Sync + 'static {
    /// The consumer group: names the group's position, its de-duplication records and
    /// its dead letters. Stable across releases.
    fn group(&self) -> &'static str;

    /// The topics the group reads.
    fn topics(&self) -> &'static [&'static str];

    /// Applies `event`, at most once in effect: an event already applied must be a no-op.
    /// An error means "try again later"; events the handler does not care about are `Ok`.
    async fn handle(&self, event: &RecordedEvent) -> Result<(), BoxError>;

    /// Whether [`Handler::handle_batch`] applies a run of events all or nothing. A
    /// handler whose effects are all rows in one database says yes. One that calls out
    /// cannot undo a call: it says yes only if its calls may be repeated (a provider's
    /// idempotency key), making them all before it records the batch in one transaction;
    /// otherwise (an SMTP relay) it keeps to one event at a time.
    fn batches(&self) -> bool {
        false
    }

    /// Applies `events`, in log order, all or nothing: after an error none of them has
    /// taken effect, unless the error is [`Unfinished`], which names the events left.
    /// The runner gives a batching handler each polled batch whole, and if it fails,
    /// delivers the batch's events (or those left) one at a time instead, so that a
    /// poison event is retried and parked alone while the rest commit.
    async fn handle_batch(&self, events: &[&RecordedEvent]) -> Result<(), BoxError> {
        for event in events {
            self.handle(event).await?;
        }
        Ok(())
    }
}

/// A batch applied but for some of its events, which the runner then delivers one at a
/// time (with retries and, in the end, the dead-letter store), in log order.
#[derive(Debug, thiserror::Error)]
#[error("{} of the batch's events failed: {error}", failed.len())]
pub struct Unfinished {
    /// The events whose attempt failed: each counts as a failed attempt.
    pub failed: Vec<Uuid>,
    /// The events not applied: the failed ones, and any that must follow them.
    pub left: Vec<Uuid>,
    #[source]
    pub error: BoxError,
}

/// What became of a batch given whole.
enum Whole<'a> {
    Applied,
    /// Applied but for these.
    Left(Vec<&'a RecordedEvent>),
    /// Nothing applied: one event at a time, all of them.
    NotApplied,
}

/// How hard the runner tries before parking an event: the `[consumers]` section of the
/// configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryPolicy {
    /// Attempts per event, the first included, before it is dead-lettered.
    pub max_attempts: u32,
    /// The first retry's delay; each later one doubles (with jitter), up to `max_delay`.
    #[serde(with = "humantime_serde")]
    pub base_delay: Duration,
    #[serde(with = "humantime_serde")]
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    fn backoff(&self) -> Backoff {
        Backoff::new(self.base_delay, self.max_delay)
    }
}

/// An event a consumer group gave up on, with why.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    pub id: Uuid,
    pub group: String,
    pub event: RecordedEvent,
    /// The last attempt's error, with its causes.
    pub error: String,
    pub attempts: u32,
    pub parked_at: DateTime<Utc>,
    /// When a replay succeeded; a resolved letter stays as a record.
    pub resolved_at: Option<DateTime<Utc>>,
}

/// Where poison events wait. Parking is idempotent per group and event: a redelivered
/// event that fails again updates its letter instead of adding a second.
#[async_trait]
pub trait DeadLetters: Send + Sync + 'static {
    async fn park(
        &self,
        group: &str,
        event: &RecordedEvent,
        error: &str,
        attempts: u32,
    ) -> Result<Uuid, BoxError>;

    /// Letters, oldest first; unresolved ones only unless `include_resolved`.
    async fn list(
        &self,
        group: Option<&str>,
        include_resolved: bool,
    ) -> Result<Vec<DeadLetter>, BoxError>;

    async fn get(&self, id: Uuid) -> Result<Option<DeadLetter>, BoxError>;

    /// Marks a letter resolved (its replay succeeded).
    async fn resolve(&self, id: Uuid) -> Result<(), BoxError>;

    /// Records a failed replay: one more attempt and its error.
    async fn record_failure(&self, id: Uuid, error: &str) -> Result<(), BoxError>;

    /// Unresolved letters per group.
    async fn depth(&self) -> Result<Vec<(String, u64)>, BoxError>;
}

/// How many of `groups` name each group, in order of first appearance: the unresolved
/// letters per group that `DeadLetters::depth` reports.
pub fn count_by_group<'a>(groups: impl IntoIterator<Item = &'a str>) -> Vec<(String, u64)> {
    let mut depth: Vec<(String, u64)> = Vec::new();
    for group in groups {
        match depth.iter_mut().find(|(g, _)| g == group) {
            Some((_, n)) => *n += 1,
            None => depth.push((group.to_owned(), 1)),
        }
    }
    depth
}

/// The error and all its causes on one line, for logs and dead letters.
pub fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Per-group counters and gauges, registered on the process's registry.
#[derive(Clone)]
pub struct ConsumerMetrics {
    processed: IntCounterVec,
    failed: IntCounterVec,
    dead_lettered: IntCounterVec,
    lag: IntGaugeVec,
    dead_letters: IntGaugeVec,
    /// The groups run in this process.
    groups: Arc<Mutex<BTreeSet<String>>>,
}

impl ConsumerMetrics {
    pub fn new() -> Self {
        let counter = |name: &str, help: &str| {
            IntCounterVec::new(Opts::new(name, help), &["group"]).expect("valid metric definition")
        };
        Self {
            processed: counter(
                "events_processed_total",
                "Events a consumer group has finished with (applied, or found already applied)",
            ),
            failed: counter(
                "events_failed_total",
                "Handler attempts that failed and will be retried or dead-lettered",
            ),
            dead_lettered: counter(
                "events_dead_lettered_total",
                "Events a consumer group parked in the dead-letter store after its last attempt",
            ),
            lag: IntGaugeVec::new(
                Opts::new(
                    "consumer_lag",
                    "Events in the log after a consumer group's committed position",
                ),
                &["group"],
            )
            .expect("valid metric definition"),
            dead_letters: IntGaugeVec::new(
                Opts::new(
                    "dead_letters",
                    "Events waiting in the dead-letter store, per consumer group",
                ),
                &["group"],
            )
            .expect("valid metric definition"),
            groups: Arc::default(),
        }
    }

    pub fn collectors(&self) -> Vec<Box<dyn Collector>> {
        vec![
            Box::new(self.processed.clone()),
            Box::new(self.failed.clone()),
            Box::new(self.dead_lettered.clone()),
            Box::new(self.lag.clone()),
            Box::new(self.dead_letters.clone()),
        ]
    }

    /// Records the dead-letter store's depth; groups not listed have none. The groups
    /// this process runs always have a series, at 0 when empty, so that an alert on
    /// them has something to evaluate.
    pub fn set_dead_letters(&self, depth: &[(String, u64)]) {
        self.dead_letters.reset();
        for group in self.groups.lock().map(|g| g.clone()).unwrap_or_default() {
            self.dead_letters.with_label_values(&[&group]).set(0);
        }
        for (group, n) in depth {
            self.dead_letters
                .with_label_values(&[group])
                .set(i64::try_from(*n).unwrap_or(i64::MAX));
        }
    }

    /// Records a group's lag; also used for projections, which follow the log the same way.
    pub fn set_lag(&self, group: &str, lag: u64) {
        self.lag
            .with_label_values(&[group])
            .set(i64::try_from(lag).unwrap_or(i64::MAX));
    }

    /// Makes the group's series appear at zero before its first event.
    fn touch(&self, group: &str) {
        for counter in [&self.processed, &self.failed, &self.dead_lettered] {
            counter.with_label_values(&[group]);
        }
        self.lag.with_label_values(&[group]);
        self.dead_letters.with_label_values(&[group]);
        if let Ok(mut groups) = self.groups.lock() {
            groups.insert(group.to_owned());
        }
    }
}

impl Default for ConsumerMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Tells whether an error is an outage: the handler's storage is down for now.
pub type OutageTest = fn(&(dyn std::error::Error + 'static)) -> bool;

/// Whether `error`, or anything in its chain, is the event store saying it is
/// unavailable, or what `more` takes for an outage (the composition root knows its
/// databases' errors).
pub fn is_outage(error: &(dyn std::error::Error + 'static), more: OutageTest) -> bool {
    let mut at = Some(error);
    while let Some(error) = at {
        if matches!(
            error.downcast_ref::<crate::store::Error>(),
            Some(crate::store::Error::Unavailable(_))
        ) || more(error)
        {
            return true;
        }
        at = error.source();
    }
    false
}

/// Runs one handler's consumer group until shutdown.
pub struct ConsumerRunner {
    bus: Arc<dyn Bus>,
    handler: Arc<dyn Handler>,
    dead_letters: Arc<dyn DeadLetters>,
    policy: RetryPolicy,
    metrics: ConsumerMetrics,
    outages: OutageTest,
    batch_size: usize,
    lanes: usize,
}

/// One failed attempt.
struct Failure {
    message: String,
    /// The handler's storage was down: no fault of the event's.
    outage: bool,
}

/// What became of one event.
enum Outcome {
    Handled,
    Parked,
    /// Shutdown came first; the event stays uncommitted and will be delivered again.
    Interrupted,
}

impl ConsumerRunner {
    pub fn new(
        bus: Arc<dyn Bus>,
        handler: Arc<dyn Handler>,
        dead_letters: Arc<dyn DeadLetters>,
        policy: RetryPolicy,
        metrics: ConsumerMetrics,
    ) -> Self {
        Self {
            bus,
            handler,
            dead_letters,
            policy,
            metrics,
            outages: |_| false,
            batch_size: 256,
            lanes: 16,
        }
    }

    /// Takes the errors `test` recognises for outages too (see [`is_outage`]).
    pub fn with_outages(mut self, test: OutageTest) -> Self {
        self.outages = test;
        self
    }

    pub fn group(&self) -> &'static str {
        self.handler.group()
    }

    pub async fn run(self, shutdown: CancellationToken) {
        let group = self.handler.group();
        self.metrics.touch(group);
        let Some(mut subscription) = self.subscribe(&shutdown).await else {
            return;
        };
        let mut backoff = self.policy.backoff();
        let mut lag_due = tokio::time::Instant::now();
        while !shutdown.is_cancelled() {
            let polled = tokio::select! {
                () = shutdown.cancelled() => break,
                polled = subscription.poll(self.batch_size, Duration::from_secs(5)) => polled,
            };
            let batch = match polled {
                Ok(batch) => batch,
                Err(error) => {
                    let delay = backoff.next_delay();
                    tracing::warn!(group, error = %describe(&error), retry_in_ms = delay.as_millis() as u64, "cannot read the log");
                    sleep(&shutdown, delay).await;
                    continue;
                }
            };
            backoff.reset();
            if let Some(last) = batch.last() {
                let left = match self.apply_whole(&batch).await {
                    Whole::Applied => Vec::new(),
                    Whole::Left(left) => left,
                    Whole::NotApplied => batch.iter().collect(),
                };
                if !self.process(&left, &shutdown).await {
                    break;
                }
                if !self.commit(subscription.as_mut(), last, &shutdown).await {
                    break;
                }
            }
            // Lag can cost a broker several round trips: measured when the group is idle,
            // and at most once a second while it is busy.
            if batch.is_empty() || tokio::time::Instant::now() >= lag_due {
                if let Ok(lag) = subscription.lag().await {
                    self.metrics.set_lag(group, lag);
                }
                lag_due = tokio::time::Instant::now() + Duration::from_secs(1);
            }
        }
        tracing::debug!(group, "consumer stopped");
    }

    async fn subscribe(&self, shutdown: &CancellationToken) -> Option<Box<dyn Subscription>> {
        let group = self.handler.group();
        let mut backoff = self.policy.backoff();
        loop {
            match self.bus.subscribe(group, self.handler.topics()).await {
                Ok(subscription) => return Some(subscription),
                Err(error) => {
                    let delay = backoff.next_delay();
                    tracing::warn!(group, error = %describe(&error), retry_in_ms = delay.as_millis() as u64, "cannot subscribe");
                    if !sleep(shutdown, delay).await {
                        return None;
                    }
                }
            }
        }
    }

    /// Applies the batch in one go if the handler batches; what is left to go one event
    /// at a time: all of it if the handler does not batch or the attempt failed (and so
    /// changed nothing), or the events it names as [`Unfinished`].
    async fn apply_whole<'a>(&self, batch: &'a [RecordedEvent]) -> Whole<'a> {
        if !self.handler.batches() || batch.len() < 2 {
            return Whole::NotApplied;
        }
        let group = self.handler.group();
        let events: Vec<&RecordedEvent> = batch.iter().collect();
        let span = tracing::info_span!(
            "process batch",
            messaging.consumer.group.name = group,
            messaging.batch.message_count = events.len()
        );
        let outcome = AssertUnwindSafe(self.handler.handle_batch(&events))
            .catch_unwind()
            .instrument(span)
            .await;
        match outcome {
            Ok(Ok(())) => {
                self.metrics
                    .processed
                    .with_label_values(&[group])
                    .inc_by(events.len() as u64);
                Whole::Applied
            }
            Ok(Err(error)) => match error.downcast::<Unfinished>() {
                Ok(unfinished) => {
                    let left: Vec<&RecordedEvent> = events
                        .into_iter()
                        .filter(|e| unfinished.left.contains(&e.event.event_id))
                        .collect();
                    self.metrics
                        .processed
                        .with_label_values(&[group])
                        .inc_by((batch.len() - left.len()) as u64);
                    self.metrics
                        .failed
                        .with_label_values(&[group])
                        .inc_by(unfinished.failed.len() as u64);
                    tracing::warn!(group, failed = ?unfinished.failed, left = left.len(), error = %describe(&*unfinished), "part of a batch failed; delivering what is left one at a time");
                    Whole::Left(left)
                }
                Err(error) => {
                    tracing::info!(group, events = events.len(), error = %describe(error.as_ref()), "batch failed; delivering its events one at a time");
                    Whole::NotApplied
                }
            },
            Err(_) => {
                tracing::warn!(
                    group,
                    events = events.len(),
                    "batch panicked; delivering its events one at a time"
                );
                Whole::NotApplied
            }
        }
    }

    /// Handles a batch, one lane per aggregate; false if shutdown interrupted it.
    async fn process(&self, batch: &[&RecordedEvent], shutdown: &CancellationToken) -> bool {
        let mut lanes: HashMap<usize, Vec<&RecordedEvent>> = HashMap::new();
        for &event in batch {
            let lane = (lane_key(event).as_u128() % self.lanes as u128) as usize;
            lanes.entry(lane).or_default().push(event);
        }
        let runs = lanes.into_values().map(|events| async move {
            for event in events {
                if let Outcome::Interrupted = self.deliver(event, shutdown).await {
                    return false;
                }
            }
            true
        });
        futures::future::join_all(runs)
            .await
            .into_iter()
            .all(|ok| ok)
    }

    async fn deliver(&self, event: &RecordedEvent, shutdown: &CancellationToken) -> Outcome {
        let group = self.handler.group();
        let mut backoff = self.policy.backoff();
        // Every attempt, and the ones that count against the event (not outages).
        let (mut attempt, mut strikes) = (0, 0);
        let error = loop {
            attempt += 1;
            let failure =
                match attempt_once(self.handler.as_ref(), event, attempt, self.outages).await {
                    Ok(()) => {
                        self.metrics.processed.with_label_values(&[group]).inc();
                        return Outcome::Handled;
                    }
                    Err(failure) => failure,
                };
            self.metrics.failed.with_label_values(&[group]).inc();
            if !failure.outage {
                strikes += 1;
            }
            if strikes >= self.policy.max_attempts {
                break failure.message;
            }
            let delay = backoff.next_delay();
            tracing::warn!(
                group,
                event_id = %event.event.event_id,
                event_type = %event.event.event_type,
                attempt,
                outage = failure.outage,
                error = %failure.message,
                retry_in_ms = delay.as_millis() as u64,
                "handler failed; will retry"
            );
            if !sleep(shutdown, delay).await {
                return Outcome::Interrupted;
            }
        };
        tracing::error!(
            group,
            event_id = %event.event.event_id,
            event_type = %event.event.event_type,
            attempts = attempt,
            error = %error,
            "handler failed for the last time; dead-lettering the event"
        );
        // The group may only move past the event once the letter is safely stored.
        let mut backoff = self.policy.backoff();
        loop {
            match self.dead_letters.park(group, event, &error, strikes).await {
                Ok(_) => {
                    self.metrics.dead_lettered.with_label_values(&[group]).inc();
                    return Outcome::Parked;
                }
                Err(park_error) => {
                    let delay = backoff.next_delay();
                    tracing::error!(group, error = %describe(park_error.as_ref()), "cannot park a dead letter");
                    if !sleep(shutdown, delay).await {
                        return Outcome::Interrupted;
                    }
                }
            }
        }
    }

    async fn commit(
        &self,
        subscription: &mut dyn Subscription,
        through: &RecordedEvent,
        shutdown: &CancellationToken,
    ) -> bool {
        let mut backoff = self.policy.backoff();
        loop {
            match subscription.commit(through).await {
                Ok(()) => return true,
                Err(error) => {
                    let delay = backoff.next_delay();
                    tracing::warn!(group = self.handler.group(), error = %describe(&error), "cannot commit the position");
                    if !sleep(shutdown, delay).await {
                        return false;
                    }
                }
            }
        }
    }
}

/// Which lane an event takes: the order it concerns (the saga's events name it as
/// `orderId`), else its aggregate. So a stock reservation and a cancellation of the same
/// order are never handled side by side.
fn lane_key(event: &RecordedEvent) -> Uuid {
    event
        .event
        .data
        .get("orderId")
        .and_then(|id| id.as_str())
        .and_then(|id| id.parse().ok())
        .unwrap_or(event.event.aggregate_id)
}

/// One call of the handler, in a consumer span that continues the event's trace; a panic
/// counts as a failed attempt, not a dead consumer.
async fn attempt_once(
    handler: &dyn Handler,
    event: &RecordedEvent,
    attempt: u32,
    outages: OutageTest,
) -> Result<(), Failure> {
    let span = trace::process_span(handler.group(), event, attempt);
    let outcome = AssertUnwindSafe(handler.handle(event))
        .catch_unwind()
        .instrument(span.clone())
        .await;
    let result = match outcome {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(Failure {
            message: describe(error.as_ref()),
            outage: is_outage(error.as_ref(), outages),
        }),
        Err(panic) => Err(Failure {
            message: format!(
                "handler panicked: {}",
                panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default()
            ),
            outage: false,
        }),
    };
    if let Err(failure) = &result {
        trace::failed(&span, &failure.message);
    }
    result
}

/// Sleeps unless shutdown comes first; false if it did.
async fn sleep(shutdown: &CancellationToken, delay: Duration) -> bool {
    tokio::select! {
        () = shutdown.cancelled() => false,
        () = tokio::time::sleep(delay) => true,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("there is no dead letter {0}")]
    NotFound(Uuid),
    #[error("dead letter {id} belongs to consumer group {group}, which this process does not run")]
    UnknownGroup { id: Uuid, group: String },
    #[error("dead letter {0} was already replayed successfully")]
    AlreadyResolved(Uuid),
    #[error("the handler failed again: {0}")]
    Failed(String),
    #[error("the dead-letter store failed")]
    Store(#[source] BoxError),
}

/// Runs a dead letter's event through its group's handler once more; on success the
/// letter is resolved. Safe to repeat: handlers skip events they have already applied.
pub async fn replay(
    handlers: &[Arc<dyn Handler>],
    dead_letters: &dyn DeadLetters,
    id: Uuid,
) -> Result<DeadLetter, ReplayError> {
    let letter = dead_letters
        .get(id)
        .await
        .map_err(ReplayError::Store)?
        .ok_or(ReplayError::NotFound(id))?;
    if letter.resolved_at.is_some() {
        return Err(ReplayError::AlreadyResolved(id));
    }
    let handler = handlers
        .iter()
        .find(|h| h.group() == letter.group)
        .ok_or_else(|| ReplayError::UnknownGroup {
            id,
            group: letter.group.clone(),
        })?;
    match attempt_once(handler.as_ref(), &letter.event, letter.attempts + 1, |_| {
        false
    })
    .await
    {
        Ok(()) => {
            dead_letters.resolve(id).await.map_err(ReplayError::Store)?;
            Ok(letter)
        }
        Err(failure) => {
            dead_letters
                .record_failure(id, &failure.message)
                .await
                .map_err(ReplayError::Store)?;
            Err(ReplayError::Failed(failure.message))
        }
    }
}
