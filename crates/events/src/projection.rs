//! Projections: read models kept up to date from the global log.
//!
//! A projection stores its checkpoint (the position of the last event it applied) in the
//! same transaction as the rows that event produced, so after a crash it resumes exactly
//! where its committed state ends: nothing skipped, nothing applied twice. The runner
//! reads the log from that checkpoint in batches and, once caught up, sleeps until the
//! store rings (with a slow poll as a safety net for writers in other processes).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::envelope::{Position, RecordedEvent};
use crate::store::{BoxError, EventStore};

#[async_trait]
pub trait Projection: Send + Sync + 'static {
    /// Names the checkpoint; stable across releases.
    fn name(&self) -> &'static str;

    /// The position of the last event applied (0 before the first).
    async fn checkpoint(&self) -> Result<Position, BoxError>;

    /// Applies `events` and moves the checkpoint to the last of them, atomically, provided
    /// the stored checkpoint is still `after` (the position they were read after).
    /// Returns the checkpoint as it now stands: if another process moved it (a rebuild, a
    /// second instance), nothing is applied and the caller re-reads from there.
    async fn apply(&self, after: Position, events: &[RecordedEvent]) -> Result<Position, BoxError>;
}

pub struct ProjectionRunner {
    store: Arc<dyn EventStore>,
    projection: Arc<dyn Projection>,
    batch_size: usize,
    poll_interval: Duration,
    progress: watch::Sender<Position>,
}

impl ProjectionRunner {
    pub fn new(store: Arc<dyn EventStore>, projection: Arc<dyn Projection>) -> Self {
        Self {
            store,
            projection,
            batch_size: 256,
            poll_interval: Duration::from_secs(1),
            progress: watch::Sender::new(0),
        }
    }

    pub fn name(&self) -> &'static str {
        self.projection.name()
    }

    /// Follows the projection's checkpoint: lets a reader wait for its own write.
    pub fn progress(&self) -> watch::Receiver<Position> {
        self.progress.subscribe()
    }

    /// Applies everything up to the store's current head, then returns the checkpoint.
    pub async fn catch_up(&self) -> Result<Position, BoxError> {
        let mut position = self.projection.checkpoint().await?;
        loop {
            let events = self.store.read_all(position, self.batch_size).await?;
            if events.is_empty() {
                break;
            }
            position = self.projection.apply(position, &events).await?;
            self.progress.send_replace(position);
        }
        Ok(position)
    }

    /// Runs until `shutdown`. Failures are retried with backoff: a projection must not
    /// skip an event, so a failing one holds the read model back (and says so in the log)
    /// rather than losing it.
    pub async fn run(self, shutdown: CancellationToken) {
        let name = self.projection.name();
        let mut doorbell = self.store.subscribe();
        let mut backoff = Backoff::default();
        let mut position = None;
        while !shutdown.is_cancelled() {
            doorbell.borrow_and_update();
            let step = async {
                let at = match position {
                    Some(at) => at,
                    None => self.projection.checkpoint().await?,
                };
                position = Some(at);
                let events = self.store.read_all(at, self.batch_size).await?;
                if !events.is_empty() {
                    let now = self.projection.apply(at, &events).await?;
                    position = Some(now);
                    self.progress.send_replace(now);
                    return Ok::<bool, BoxError>(true);
                }
                self.progress.send_replace(at);
                Ok(false)
            };
            match step.await {
                Ok(true) => backoff.reset(),
                Ok(false) => {
                    backoff.reset();
                    tokio::select! {
                        () = shutdown.cancelled() => {}
                        _ = doorbell.changed() => {}
                        () = tokio::time::sleep(self.poll_interval) => {}
                    }
                }
                Err(error) => {
                    // The checkpoint may have moved or not; re-read it before going on.
                    position = None;
                    let delay = backoff.next_delay();
                    tracing::error!(projection = name, %error, retry_in_ms = delay.as_millis() as u64, "projection failed");
                    tokio::select! {
                        () = shutdown.cancelled() => {}
                        () = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
        tracing::debug!(projection = name, "projection stopped");
    }
}
