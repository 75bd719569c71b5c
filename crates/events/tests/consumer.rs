//! The consumer runner's delivery guarantees: retries apply an effect once, a poison
//! event is parked without holding up the events behind it, and a replay runs it once the
//! fault is gone.
#![allow(clippy::unwrap_used)]

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use oxcart_events::bus::{LogBus, topics};
use oxcart_events::consumer::{
    ConsumerMetrics, ConsumerRunner, DeadLetters, Handler, ReplayError, RetryPolicy, Unfinished,
    replay,
};
use oxcart_events::memory::{MemoryCheckpoints, MemoryDeadLetters, MemoryEventStore};
use oxcart_events::store::BoxError;
use oxcart_events::{EventStore, RecordedEvent};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Applies each event once (de-duplicated by id, like the inbox), after failing the
/// first `fail_first` attempts of each, and always failing events marked poison while
/// `broken` is set.
#[derive(Default)]
struct Flaky {
    fail_first: u32,
    broken: AtomicBool,
    /// The handler's storage is down: every attempt fails as an outage.
    down: AtomicBool,
    attempts: Mutex<HashMap<Uuid, u32>>,
    applied: Mutex<HashSet<Uuid>>,
    effects: Mutex<Vec<i64>>,
}

#[async_trait]
impl Handler for Flaky {
    fn group(&self) -> &'static str {
        "flaky"
    }

    fn topics(&self) -> &'static [&'static str] {
        &[topics::ORDERS]
    }

    async fn handle(&self, event: &RecordedEvent) -> Result<(), BoxError> {
        let id = event.event.event_id;
        let attempt = {
            let mut attempts = self.attempts.lock().unwrap();
            let n = attempts.entry(id).or_default();
            *n += 1;
            *n
        };
        if self.down.load(Ordering::SeqCst) {
            return Err(Box::new(oxcart_events::store::Error::Unavailable(
                "connection refused".into(),
            )));
        }
        if event.event.data["poison"] == true && self.broken.load(Ordering::SeqCst) {
            return Err("the downstream service is down".into());
        }
        if attempt <= self.fail_first {
            return Err(format!("transient failure {attempt}").into());
        }
        if self.applied.lock().unwrap().insert(id) {
            let n = event.event.data["n"].as_i64().unwrap();
            self.effects.lock().unwrap().push(n);
        }
        Ok(())
    }
}

struct Rig {
    store: Arc<MemoryEventStore>,
    bus: Arc<LogBus>,
    dead_letters: Arc<MemoryDeadLetters>,
    metrics: ConsumerMetrics,
}

impl Rig {
    fn new() -> Self {
        let store = Arc::new(MemoryEventStore::new());
        let bus = LogBus::new(store.clone(), Arc::new(MemoryCheckpoints::default()));
        Self {
            store,
            bus: Arc::new(bus),
            dead_letters: Arc::new(MemoryDeadLetters::default()),
            metrics: ConsumerMetrics::new(),
        }
    }

    async fn append(&self, n: i64, poison: bool) {
        let id = Uuid::now_v7();
        let mut event = oxcart_test_util::event_store::event(id, "order.created", n);
        event.data = serde_json::json!({ "n": n, "poison": poison });
        self.store.append(id, 0, vec![event]).await.unwrap();
    }

    fn start(&self, handler: Arc<dyn Handler>, max_attempts: u32) -> CancellationToken {
        let policy = RetryPolicy {
            max_attempts,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(5),
        };
        let runner = ConsumerRunner::new(
            self.bus.clone(),
            handler,
            self.dead_letters.clone(),
            policy,
            self.metrics.clone(),
        );
        let token = CancellationToken::new();
        tokio::spawn(runner.run(token.clone()));
        token
    }
}

async fn until(mut done: impl FnMut() -> bool) {
    tokio::time::timeout(Duration::from_secs(20), async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("timed out");
}

#[tokio::test]
async fn a_handler_failing_its_first_attempts_applies_its_effect_once() {
    let rig = Rig::new();
    let handler = Arc::new(Flaky {
        fail_first: 2,
        ..Flaky::default()
    });
    let stop = rig.start(handler.clone(), 5);
    for n in 0..10 {
        rig.append(n, false).await;
    }
    until(|| handler.effects.lock().unwrap().len() == 10).await;
    stop.cancel();
    let mut effects = handler.effects.lock().unwrap().clone();
    effects.sort_unstable();
    assert_eq!(effects, (0..10).collect::<Vec<_>>());
    assert!(handler.attempts.lock().unwrap().values().all(|&n| n == 3));
    assert!(rig.dead_letters.list(None, true).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_poison_event_is_parked_without_blocking_the_rest_and_replays_once_fixed() {
    let rig = Rig::new();
    let handler = Arc::new(Flaky::default());
    handler.broken.store(true, Ordering::SeqCst);
    let stop = rig.start(handler.clone(), 3);
    rig.append(1, false).await;
    rig.append(2, true).await;
    rig.append(3, false).await;
    until(|| handler.effects.lock().unwrap().len() == 2).await;
    let dead_letters: &dyn DeadLetters = rig.dead_letters.as_ref();
    let mut letters = Vec::new();
    for _ in 0..400 {
        letters = dead_letters.list(Some("flaky"), false).await.unwrap();
        if !letters.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop.cancel();
    // Different orders take different lanes, so 1 and 3 may finish in either order.
    let effects = || {
        let mut effects = handler.effects.lock().unwrap().clone();
        effects.sort_unstable();
        effects
    };
    assert_eq!(effects(), [1, 3]);
    assert_eq!(letters.len(), 1);
    let letter = &letters[0];
    assert_eq!(letter.attempts, 3);
    assert!(
        letter.error.contains("downstream service is down"),
        "{}",
        letter.error
    );

    let handlers: Vec<Arc<dyn Handler>> = vec![handler.clone()];
    // Still broken: the replay fails, is counted, and the letter stays.
    let error = replay(&handlers, dead_letters, letter.id)
        .await
        .unwrap_err();
    assert!(matches!(error, ReplayError::Failed(_)), "{error}");
    assert_eq!(
        dead_letters.get(letter.id).await.unwrap().unwrap().attempts,
        4
    );

    handler.broken.store(false, Ordering::SeqCst);
    replay(&handlers, dead_letters, letter.id).await.unwrap();
    assert_eq!(effects(), [1, 2, 3]);
    assert!(dead_letters.list(None, false).await.unwrap().is_empty());
    let again = replay(&handlers, dead_letters, letter.id)
        .await
        .unwrap_err();
    assert!(matches!(again, ReplayError::AlreadyResolved(_)));
    assert_eq!(handler.effects.lock().unwrap().len(), 3);
}

/// An outage (the store unavailable) is no fault of the event's: however many attempts
/// it takes, nothing is parked, and every effect lands once the store is back.
#[tokio::test]
async fn an_outage_is_waited_out_and_never_dead_letters() {
    let rig = Rig::new();
    let handler = Arc::new(Flaky::default());
    handler.down.store(true, Ordering::SeqCst);
    let stop = rig.start(handler.clone(), 2);
    for n in 0..3 {
        rig.append(n, false).await;
    }
    // (The events behind one that is stuck wait for it: whichever were delivered.)
    until(|| {
        let attempts = handler.attempts.lock().unwrap();
        !attempts.is_empty() && attempts.values().all(|&n| n >= 10)
    })
    .await;
    assert!(rig.dead_letters.list(None, true).await.unwrap().is_empty());
    handler.down.store(false, Ordering::SeqCst);
    until(|| handler.effects.lock().unwrap().len() == 3).await;
    stop.cancel();
    assert!(rig.dead_letters.list(None, true).await.unwrap().is_empty());
    let mut effects = handler.effects.lock().unwrap().clone();
    effects.sort_unstable();
    assert_eq!(effects, [0, 1, 2]);
}

#[tokio::test]
async fn a_restarted_consumer_resumes_after_its_last_commit() {
    let rig = Rig::new();
    let first = Arc::new(Flaky::default());
    let stop = rig.start(first.clone(), 3);
    for n in 0..5 {
        rig.append(n, false).await;
    }
    until(|| first.effects.lock().unwrap().len() == 5).await;
    stop.cancel();
    tokio::time::sleep(Duration::from_millis(50)).await;
    // A new process: nothing it has committed is delivered again.
    let second = Arc::new(Flaky::default());
    let stop = rig.start(second.clone(), 3);
    rig.append(5, false).await;
    until(|| !second.effects.lock().unwrap().is_empty()).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    stop.cancel();
    assert_eq!(*second.effects.lock().unwrap(), [5]);
}

/// Applies a batch but for its poison events, which it names as [`Unfinished`]; one at a
/// time, a poison event always fails.
#[derive(Default)]
struct PartlyBatching {
    effects: Mutex<Vec<i64>>,
    /// Events applied one at a time (`handle`), by number.
    one_at_a_time: Mutex<Vec<i64>>,
}

#[async_trait]
impl Handler for PartlyBatching {
    fn group(&self) -> &'static str {
        "partly"
    }

    fn topics(&self) -> &'static [&'static str] {
        &[topics::ORDERS]
    }

    async fn handle(&self, event: &RecordedEvent) -> Result<(), BoxError> {
        if event.event.data["poison"] == true {
            return Err("the provider refused".into());
        }
        let n = event.event.data["n"].as_i64().unwrap();
        self.one_at_a_time.lock().unwrap().push(n);
        self.effects.lock().unwrap().push(n);
        Ok(())
    }

    fn batches(&self) -> bool {
        true
    }

    async fn handle_batch(&self, events: &[&RecordedEvent]) -> Result<(), BoxError> {
        let (poison, good): (Vec<&RecordedEvent>, Vec<&RecordedEvent>) =
            events.iter().partition(|e| e.event.data["poison"] == true);
        for event in good {
            let n = event.event.data["n"].as_i64().unwrap();
            self.effects.lock().unwrap().push(n);
        }
        if poison.is_empty() {
            return Ok(());
        }
        let ids: Vec<Uuid> = poison.iter().map(|e| e.event.event_id).collect();
        Err(Box::new(Unfinished {
            failed: ids.clone(),
            left: ids,
            error: "the provider refused".into(),
        }))
    }
}

/// The value of one of the runner's per-group counters.
fn counter(metrics: &ConsumerMetrics, name: &str, group: &str) -> u64 {
    metrics
        .collectors()
        .iter()
        .flat_map(|c| c.collect())
        .filter(|family| family.name() == name)
        .flat_map(|family| family.get_metric().to_vec())
        .find(|m| m.get_label().iter().any(|l| l.value() == group))
        .map_or(0, |m| m.get_counter().get_value() as u64)
}

#[tokio::test]
async fn a_batch_left_unfinished_delivers_only_what_is_left_one_at_a_time() {
    let rig = Rig::new();
    for n in 0..6 {
        rig.append(n, n == 3).await;
    }
    let handler = Arc::new(PartlyBatching::default());
    let stop = rig.start(handler.clone(), 3);
    let mut letters = Vec::new();
    for _ in 0..400 {
        letters = rig.dead_letters.list(Some("partly"), false).await.unwrap();
        if !letters.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop.cancel();
    // The batch applied the others once; only the poison event went one at a time,
    // and it alone was parked, after its own attempts.
    let mut effects = handler.effects.lock().unwrap().clone();
    effects.sort_unstable();
    assert_eq!(effects, [0, 1, 2, 4, 5]);
    assert!(handler.one_at_a_time.lock().unwrap().is_empty());
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].event.event.data["n"], 3);
    assert_eq!(letters[0].attempts, 3);
    // The batch's failure counts as one failed attempt at it, then its three.
    assert_eq!(counter(&rig.metrics, "events_failed_total", "partly"), 4);
    assert_eq!(counter(&rig.metrics, "events_processed_total", "partly"), 5);
    assert_eq!(
        counter(&rig.metrics, "events_dead_lettered_total", "partly"),
        1
    );
}
