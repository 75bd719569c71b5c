//! Runs a process's [`Chore`]s, each every `interval`, counting what each did.
//!
//! Rounds start after one interval (not at start-up, when a rolling deployment starts
//! every replica at once), and a chore that fails is logged, counted and tried again at
//! the next round: none of them is urgent, and none is lost by waiting.

use std::sync::Arc;
use std::time::Duration;

use prometheus::{IntCounterVec, Opts};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::service::Chore;

/// The `[housekeeping]` section of the configuration: how often, and how long what is
/// pruned is kept. (What a service settles, such as an order left unpaid, is timed by the
/// service's own section.)
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HousekeepingConfig {
    /// How often each chore runs. 0 turns housekeeping off.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// How long a dead letter is kept once resolved (replayed or dismissed).
    #[serde(with = "humantime_serde")]
    pub dead_letter_retention: Duration,
    /// With Kafka, how long a consumer group remembers an event it applied: Kafka's own
    /// retention, past which no record can be delivered again. (On the embedded log a
    /// group forgets an event as soon as its position has passed it.)
    #[serde(with = "humantime_serde")]
    pub inbox_retention: Duration,
}

impl Default for HousekeepingConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(60),
            dead_letter_retention: Duration::from_secs(30 * 24 * 3600),
            inbox_retention: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// The chores of one process.
pub struct Housekeeping {
    chores: Vec<Arc<dyn Chore>>,
    interval: Duration,
    done: IntCounterVec,
    failures: IntCounterVec,
}

impl Housekeeping {
    /// Registers `housekeeping_done_total` and `housekeeping_failures_total` in `metrics`.
    pub fn new(chores: Vec<Arc<dyn Chore>>, interval: Duration, metrics: &Metrics) -> Self {
        let done = IntCounterVec::new(
            Opts::new(
                "housekeeping_done_total",
                "Rows pruned, or orders settled, by each housekeeping task",
            ),
            &["task"],
        )
        .expect("valid metric definition");
        let failures = IntCounterVec::new(
            Opts::new(
                "housekeeping_failures_total",
                "Housekeeping rounds that failed, by task (tried again next round)",
            ),
            &["task"],
        )
        .expect("valid metric definition");
        for chore in &chores {
            done.with_label_values(&[chore.name()]);
            failures.with_label_values(&[chore.name()]);
        }
        metrics.register(Box::new(done.clone()));
        metrics.register(Box::new(failures.clone()));
        Self {
            chores,
            interval,
            done,
            failures,
        }
    }

    /// One round of every chore.
    pub async fn round(&self) {
        for chore in &self.chores {
            match chore.run().await {
                Ok(0) => {}
                Ok(done) => {
                    self.done.with_label_values(&[chore.name()]).inc_by(done);
                    tracing::info!(task = chore.name(), done, "housekeeping");
                }
                Err(error) => {
                    self.failures.with_label_values(&[chore.name()]).inc();
                    tracing::warn!(task = chore.name(), error = %error, "housekeeping failed; trying again next round");
                }
            }
        }
    }

    /// Rounds every interval until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        if self.interval.is_zero() || self.chores.is_empty() {
            return;
        }
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(self.interval) => self.round().await,
            }
        }
    }
}
