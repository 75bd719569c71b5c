//! The bus and dead-letter contracts. Every adapter runs every test here, through
//! [`bus_contract!`](crate::bus_contract).

use std::sync::Arc;
use std::time::Duration;

use oxcart_events::bus::{Bus, Subscription, topics};
use oxcart_events::consumer::DeadLetters;
use oxcart_events::{EventStore, NewEvent, RecordedEvent};
use uuid::Uuid;

use crate::event_store::event;

/// What one contract test gets: a store to append to, the bus that delivers its events
/// (on the embedded log its safety poll set to an hour, so only the doorbell can wake a
/// waiting poll), and a dead-letter store.
///
/// A transport between the store and the bus (the Kafka relay, a consumer group that
/// must be joined) delivers later than the embedded log does, so the contract waits for
/// what it expects up to `patience`, and takes `quiet` without a delivery to mean that
/// nothing more is coming.
pub struct Fixture {
    pub store: Arc<dyn EventStore>,
    pub bus: Arc<dyn Bus>,
    pub dead_letters: Arc<dyn DeadLetters>,
    pub patience: Duration,
    pub quiet: Duration,
}

impl Fixture {
    /// Timings for a bus that reads the store directly.
    pub const IMMEDIATE: (Duration, Duration) =
        (Duration::from_millis(500), Duration::from_millis(10));

    /// Polls until `n` events have arrived (failing after `patience`), then checks that
    /// no more follow.
    pub async fn take(
        &self,
        subscription: &mut Box<dyn Subscription>,
        n: usize,
    ) -> Vec<RecordedEvent> {
        let deadline = tokio::time::Instant::now() + self.patience;
        let mut events = Vec::new();
        while events.len() < n {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            assert!(
                !left.is_zero(),
                "only {} of {n} events arrived",
                events.len()
            );
            events.extend(subscription.poll(n - events.len(), left).await.unwrap());
        }
        self.assert_quiet(subscription).await;
        events
    }

    pub async fn assert_quiet(&self, subscription: &mut Box<dyn Subscription>) {
        let more = subscription.poll(10, self.quiet).await.unwrap();
        assert!(more.is_empty(), "unexpected events: {:?}", numbers(&more));
    }

    /// Waits for the group's lag to be `n`.
    pub async fn lag_becomes(&self, subscription: &mut Box<dyn Subscription>, n: u64) {
        let deadline = tokio::time::Instant::now() + self.patience;
        loop {
            let lag = subscription.lag().await.unwrap();
            if lag == n {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "lag stayed at {lag}, expected {n}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Generates one `#[tokio::test]` per contract test. `$make` is an async expression
/// yielding `(Fixture, guard)`; attributes after it (`#[ignore = "…"]`) go on every test.
#[macro_export]
macro_rules! bus_contract {
    ($make:expr $(, #[$meta:meta])* $(,)?) => {
        $crate::bus_contract!(@tests $make; [$(#[$meta])*];
            uncommitted_events_are_delivered_again,
            groups_keep_their_own_positions,
            topics_filter_and_aggregates_keep_their_order,
            an_append_wakes_a_waiting_poll,
            lag_counts_what_the_group_has_not_committed,
            dead_letters_park_once_per_group_and_event,
            dead_letters_resolve_and_record_failures,
        );
    };
    (@tests $make:expr; $attrs:tt; $($name:ident),* $(,)?) => {
        $( $crate::bus_contract!(@one $make; $name; $attrs); )*
    };
    (@one $make:expr; $name:ident; [$($attr:tt)*]) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        $($attr)*
        async fn $name() {
            let (fixture, _guard) = $make.await;
            $crate::bus::$name(fixture).await;
        }
    };
}

fn of(aggregate_type: &str, aggregate_id: Uuid, n: i64) -> NewEvent {
    let mut event = event(aggregate_id, &format!("{aggregate_type}.happened"), n);
    event.aggregate_type = aggregate_type.to_owned();
    event
}

async fn append(store: &dyn EventStore, aggregate_type: &str, id: Uuid, version: u64, n: i64) {
    store
        .append(id, version, vec![of(aggregate_type, id, n)])
        .await
        .unwrap();
}

fn numbers(events: &[RecordedEvent]) -> Vec<i64> {
    events
        .iter()
        .map(|e| e.event.data["n"].as_i64().unwrap())
        .collect()
}

pub async fn uncommitted_events_are_delivered_again(f: Fixture) {
    let id = Uuid::now_v7();
    for n in 0..3 {
        append(f.store.as_ref(), "order", id, n as u64, n).await;
    }
    let mut first = f.bus.subscribe("g", &[topics::ORDERS]).await.unwrap();
    // A FIFO queue (SQS) holds an aggregate's later events back while earlier ones are
    // out and not yet committed, except those received together: wait until all three
    // are there to be received.
    f.lag_becomes(&mut first, 3).await;
    let events = f.take(&mut first, 3).await;
    assert_eq!(numbers(&events), [0, 1, 2]);
    first.commit(&events[1]).await.unwrap();
    drop(first);
    // A restarted member resumes after the last commit, not after the last delivery.
    let mut second = f.bus.subscribe("g", &[topics::ORDERS]).await.unwrap();
    assert_eq!(numbers(&f.take(&mut second, 1).await), [2]);
}

pub async fn groups_keep_their_own_positions(f: Fixture) {
    let id = Uuid::now_v7();
    append(f.store.as_ref(), "order", id, 0, 7).await;
    let mut a = f.bus.subscribe("a", &[topics::ORDERS]).await.unwrap();
    let events = f.take(&mut a, 1).await;
    a.commit(events.last().unwrap()).await.unwrap();
    drop(a);
    let mut b = f.bus.subscribe("b", &[topics::ORDERS]).await.unwrap();
    assert_eq!(numbers(&f.take(&mut b, 1).await), [7]);
    let mut a = f.bus.subscribe("a", &[topics::ORDERS]).await.unwrap();
    f.assert_quiet(&mut a).await;
}

pub async fn topics_filter_and_aggregates_keep_their_order(f: Fixture) {
    let (x, y, pay, stock) = (
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
    );
    append(f.store.as_ref(), "order", x, 0, 1).await;
    append(f.store.as_ref(), "payment", pay, 0, 2).await;
    append(f.store.as_ref(), "order", y, 0, 3).await;
    append(f.store.as_ref(), "order", x, 1, 4).await;
    append(f.store.as_ref(), "reservation", stock, 0, 5).await;
    let mut orders = f.bus.subscribe("o", &[topics::ORDERS]).await.unwrap();
    let mut got = Vec::new();
    // Small polls, to cross batch boundaries, each committed as a consumer does (a FIFO
    // queue gives an aggregate's next event only once the one before is committed).
    while got.len() < 3 {
        let events = orders.poll(1, f.patience).await.unwrap();
        if let Some(last) = events.last() {
            orders.commit(last).await.unwrap();
        }
        got.extend(events);
    }
    f.assert_quiet(&mut orders).await;
    let got = numbers(&got);
    // One aggregate's events in their order; different aggregates may interleave (Kafka
    // orders per partition only).
    let mut sorted = got.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, [1, 3, 4]);
    let position = |n| got.iter().position(|g| *g == n).unwrap();
    assert!(position(1) < position(4), "{got:?}");
    let mut both = f
        .bus
        .subscribe("p", &[topics::PAYMENTS, topics::CATALOG])
        .await
        .unwrap();
    let mut got = numbers(&f.take(&mut both, 2).await);
    got.sort_unstable();
    assert_eq!(got, [2, 5]);
}

pub async fn an_append_wakes_a_waiting_poll(f: Fixture) {
    let mut subscription = f.bus.subscribe("w", &[topics::ORDERS]).await.unwrap();
    let store = Arc::clone(&f.store);
    let id = Uuid::now_v7();
    let writer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        append(store.as_ref(), "order", id, 0, 9).await;
    });
    // The poll may wait an hour; only the append can end it before the test's timeout.
    let events = tokio::time::timeout(
        Duration::from_secs(20),
        subscription.poll(10, Duration::from_secs(3600)),
    )
    .await
    .expect("the append did not wake the poll")
    .unwrap();
    assert_eq!(numbers(&events), [9]);
    writer.await.unwrap();
}

pub async fn lag_counts_what_the_group_has_not_committed(f: Fixture) {
    let id = Uuid::now_v7();
    for n in 0..4 {
        append(f.store.as_ref(), "order", id, n as u64, n).await;
    }
    let mut subscription = f.bus.subscribe("l", &[topics::ORDERS]).await.unwrap();
    f.lag_becomes(&mut subscription, 4).await;
    let events = f.take(&mut subscription, 4).await;
    // A transport may report the lag one reading late (Kafka measures it off the
    // consumer's path), so the figures are waited for.
    subscription.commit(&events[2]).await.unwrap();
    f.lag_becomes(&mut subscription, 1).await;
    subscription.commit(&events[3]).await.unwrap();
    f.lag_becomes(&mut subscription, 0).await;

    // Other topics' events are not owed: once the group has committed what it was given
    // and polls again, they do not count (the embedded log, which reads them to skip
    // them, may count one until that poll).
    let order = Uuid::now_v7();
    append(f.store.as_ref(), "order", order, 0, 5).await;
    append(f.store.as_ref(), "payment", Uuid::now_v7(), 0, 6).await;
    let events = f.take(&mut subscription, 1).await;
    assert_eq!(numbers(&events), [5]);
    subscription.commit(&events[0]).await.unwrap();
    f.assert_quiet(&mut subscription).await;
    f.lag_becomes(&mut subscription, 0).await;
    // And every time, not only right after a commit of the group's own.
    append(f.store.as_ref(), "payment", Uuid::now_v7(), 0, 7).await;
    f.assert_quiet(&mut subscription).await;
    f.lag_becomes(&mut subscription, 0).await;
}

async fn recorded(store: &dyn EventStore) -> RecordedEvent {
    let id = Uuid::now_v7();
    append(store, "order", id, 0, 1).await;
    store.read_stream(id).await.unwrap().remove(0)
}

pub async fn dead_letters_park_once_per_group_and_event(f: Fixture) {
    let event = recorded(f.store.as_ref()).await;
    let first = f.dead_letters.park("g", &event, "boom", 5).await.unwrap();
    let again = f.dead_letters.park("g", &event, "bang", 5).await.unwrap();
    assert_eq!(first, again, "a redelivered poison event keeps one letter");
    let other = f.dead_letters.park("h", &event, "boom", 5).await.unwrap();
    assert_ne!(first, other);

    let letters = f.dead_letters.list(Some("g"), false).await.unwrap();
    assert_eq!(letters.len(), 1);
    let letter = &letters[0];
    assert_eq!(letter.event, event, "the whole event is kept");
    assert_eq!(letter.error, "bang");
    assert_eq!(letter.attempts, 10);
    assert_eq!(f.dead_letters.list(None, false).await.unwrap().len(), 2);
    let mut depth = f.dead_letters.depth().await.unwrap();
    depth.sort();
    assert_eq!(depth, [("g".to_owned(), 1), ("h".to_owned(), 1)]);
}

pub async fn dead_letters_resolve_and_record_failures(f: Fixture) {
    let event = recorded(f.store.as_ref()).await;
    let id = f.dead_letters.park("g", &event, "boom", 3).await.unwrap();
    f.dead_letters
        .record_failure(id, "still broken")
        .await
        .unwrap();
    let letter = f.dead_letters.get(id).await.unwrap().unwrap();
    assert_eq!(
        (letter.attempts, letter.error.as_str()),
        (4, "still broken")
    );
    assert!(letter.resolved_at.is_none());

    f.dead_letters.resolve(id).await.unwrap();
    assert!(f.dead_letters.list(None, false).await.unwrap().is_empty());
    let all = f.dead_letters.list(None, true).await.unwrap();
    assert!(
        all[0].resolved_at.is_some(),
        "a resolved letter stays as a record"
    );
    assert!(
        f.dead_letters
            .depth()
            .await
            .unwrap()
            .iter()
            .all(|(_, n)| *n == 0)
    );
    assert!(f.dead_letters.get(Uuid::now_v7()).await.unwrap().is_none());
}
