//! The event store contract. Every adapter runs every test here, through
//! [`event_store_contract!`](crate::event_store_contract).

use std::sync::Arc;
use std::time::Duration;

use chrono::{SubsecRound, Utc};
use oxcart_events::{Error, EventStore, Metadata, NewEvent, StreamAppend};
use serde_json::json;
use uuid::Uuid;

/// Generates one `#[tokio::test]` per contract test. `$make` is an async expression
/// yielding `(Arc<dyn EventStore>, guard)`; the guard (a temporary directory, say) lives
/// The stores whose [`EventStore::append_many`] is one transaction (SQL, in-memory) run
/// this as well as [`event_store_contract!`](crate::event_store_contract).
#[macro_export]
macro_rules! event_store_transaction_contract {
    ($make:expr $(, #[$meta:meta])* $(,)?) => {
        $crate::event_store_contract!(@tests $make; [$(#[$meta])*];
            appends_to_several_streams_are_all_or_nothing,
            a_stream_named_twice_and_a_long_append_land_in_order,
        );
    };
}

/// Generates one `#[tokio::test]` per contract test. `$make` is an async expression
/// yielding `(Arc<dyn EventStore>, guard)`; the guard (a temporary directory, say) lives
/// as long as the test. Attributes after it (`#[ignore = "…"]`) go on every test.
#[macro_export]
macro_rules! event_store_contract {
    ($make:expr $(, #[$meta:meta])* $(,)?) => {
        $crate::event_store_contract!(@tests $make; [$(#[$meta])*];
            new_streams_are_versioned_from_one,
            stale_expected_version_is_a_conflict_and_writes_nothing,
            concurrent_appends_at_one_version_let_exactly_one_win,
            read_all_follows_commit_order_and_pages,
            head_and_subscribe_follow_appends,
            events_round_trip_every_field,
            events_for_another_stream_are_refused,
        );
    };
    (@tests $make:expr; $attrs:tt; $($name:ident),* $(,)?) => {
        $( $crate::event_store_contract!(@one $make; $name; $attrs); )*
    };
    (@one $make:expr; $name:ident; [$($attr:tt)*]) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        $($attr)*
        async fn $name() {
            let (store, _guard) = $make.await;
            $crate::event_store::$name(store).await;
        }
    };
}

pub fn event(aggregate_id: Uuid, event_type: &str, n: i64) -> NewEvent {
    NewEvent {
        event_id: Uuid::now_v7(),
        event_type: event_type.to_owned(),
        schema_version: 1,
        aggregate_type: "order".to_owned(),
        aggregate_id,
        user_id: Some(Uuid::now_v7()),
        timestamp: Utc::now().trunc_subsecs(6),
        data: json!({ "n": n, "nested": { "text": "héllo", "list": [1, 2, 3] } }),
        metadata: Metadata {
            correlation_id: format!("corr-{n}"),
            causation_id: format!("cause-{n}"),
            ..Metadata::default()
        },
    }
}

pub async fn new_streams_are_versioned_from_one(store: Arc<dyn EventStore>) {
    let id = Uuid::now_v7();
    let appended = store
        .append(
            id,
            0,
            vec![
                event(id, "order.created", 1),
                event(id, "order.paid", 2),
                event(id, "order.shipped", 3),
            ],
        )
        .await
        .unwrap();
    assert_eq!(appended.version, 3);
    let stream = store.read_stream(id).await.unwrap();
    assert_eq!(
        stream.iter().map(|e| e.version).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert_eq!(
        stream
            .iter()
            .map(|e| e.event.event_type.as_str())
            .collect::<Vec<_>>(),
        ["order.created", "order.paid", "order.shipped"]
    );
    assert_eq!(stream[2].position, appended.position);
    assert!(stream.windows(2).all(|w| w[0].position < w[1].position));
    let next = store
        .append(id, 3, vec![event(id, "order.delivered", 4)])
        .await
        .unwrap();
    assert_eq!(next.version, 4);
    assert!(store.read_stream(Uuid::now_v7()).await.unwrap().is_empty());
}

pub async fn stale_expected_version_is_a_conflict_and_writes_nothing(store: Arc<dyn EventStore>) {
    let id = Uuid::now_v7();
    store
        .append(id, 0, vec![event(id, "order.created", 1)])
        .await
        .unwrap();
    for expected in [0, 2, 9] {
        match store
            .append(
                id,
                expected,
                vec![event(id, "order.cancelled", 2), event(id, "order.x", 3)],
            )
            .await
        {
            Err(Error::Conflict {
                aggregate_id,
                expected: e,
                actual,
            }) => {
                assert_eq!((aggregate_id, e, actual), (id, expected, 1));
            }
            other => panic!("expected a conflict at {expected}, got {other:?}"),
        }
    }
    assert_eq!(store.read_stream(id).await.unwrap().len(), 1);
}

pub async fn concurrent_appends_at_one_version_let_exactly_one_win(store: Arc<dyn EventStore>) {
    let id = Uuid::now_v7();
    store
        .append(id, 0, vec![event(id, "order.created", 1)])
        .await
        .unwrap();
    let attempts = (0..8).map(|n| {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            store
                .append(id, 1, vec![event(id, "order.cancelled", n)])
                .await
        })
    });
    let results = futures::future::join_all(attempts).await;
    let wins = results.iter().filter(|r| matches!(r, Ok(Ok(_)))).count();
    let conflicts = results
        .iter()
        .filter(|r| matches!(r, Ok(Err(Error::Conflict { .. }))))
        .count();
    assert_eq!((wins, conflicts), (1, 7));
    let versions: Vec<u64> = store
        .read_stream(id)
        .await
        .unwrap()
        .iter()
        .map(|e| e.version)
        .collect();
    assert_eq!(versions, [1, 2]);
}

pub async fn read_all_follows_commit_order_and_pages(store: Arc<dyn EventStore>) {
    let start = store.head().await.unwrap();
    let ids: Vec<Uuid> = (0..3).map(|_| Uuid::now_v7()).collect();
    let mut appended = Vec::new();
    for round in 0..3u64 {
        for id in &ids {
            let a = store
                .append(*id, round, vec![event(*id, "order.step", round as i64)])
                .await
                .unwrap();
            appended.push(a.position);
        }
    }
    // PostgreSQL's log may hold back a moment for a transaction of another database
    // that has just ended (`SqlEventStore`'s horizon): what is read is in order, and
    // everything comes within a moment.
    let mut all = Vec::new();
    for _ in 0..100 {
        all = store.read_all(start, 100).await.unwrap();
        let positions: Vec<_> = all.iter().map(|e| e.position).collect();
        assert_eq!(positions, appended[..positions.len()], "a prefix, in order");
        if all.len() == appended.len() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(all.iter().map(|e| e.position).collect::<Vec<_>>(), appended);
    let mut paged = Vec::new();
    let mut after = start;
    loop {
        let page = store.read_all(after, 2).await.unwrap();
        assert!(page.len() <= 2);
        let Some(last) = page.last() else { break };
        after = last.position;
        paged.extend(page.into_iter().map(|e| e.position));
    }
    assert_eq!(paged, appended);
    assert!(
        store
            .read_all(*appended.last().unwrap(), 10)
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn head_and_subscribe_follow_appends(store: Arc<dyn EventStore>) {
    let mut doorbell = store.subscribe();
    doorbell.borrow_and_update();
    let id = Uuid::now_v7();
    let appended = store
        .append(id, 0, vec![event(id, "order.created", 1)])
        .await
        .unwrap();
    assert_eq!(store.head().await.unwrap(), appended.position);
    tokio::time::timeout(Duration::from_secs(5), doorbell.changed())
        .await
        .expect("subscriber woken")
        .unwrap();
}

pub async fn events_round_trip_every_field(store: Arc<dyn EventStore>) {
    let id = Uuid::now_v7();
    let mut with_everything = event(id, "order.created", 1);
    with_everything.metadata.idempotency_key = Some("key-1".into());
    with_everything.metadata.request_fingerprint = Some("abc".into());
    with_everything.schema_version = 3;
    let mut bare = event(id, "order.cancelled", 2);
    bare.user_id = None;
    bare.data = json!(null);
    // Written at its type's current version, as producers write: nothing to upcast.
    bare.schema_version = oxcart_events::types::version(&bare.event_type);
    store
        .append(id, 0, vec![with_everything.clone(), bare.clone()])
        .await
        .unwrap();
    let stream = store.read_stream(id).await.unwrap();
    assert_eq!(stream[0].event, with_everything);
    assert_eq!(stream[1].event, bare);
}

pub async fn events_for_another_stream_are_refused(store: Arc<dyn EventStore>) {
    let id = Uuid::now_v7();
    let result = store
        .append(id, 0, vec![event(Uuid::now_v7(), "order.created", 1)])
        .await;
    assert!(matches!(result, Err(Error::WrongStream(_))), "{result:?}");
    assert!(store.read_stream(id).await.unwrap().is_empty());
}

/// Several streams' appends in one go land together, and a conflict on any of them lands
/// none of them.
pub async fn appends_to_several_streams_are_all_or_nothing(store: Arc<dyn EventStore>) {
    let (a, b, c) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    store
        .append(b, 0, vec![event(b, "order.created", 1)])
        .await
        .unwrap();
    let append = |aggregate_id, expected_version, events| StreamAppend {
        aggregate_id,
        expected_version,
        events,
    };
    let appended = store
        .append_many(vec![
            append(
                a,
                0,
                vec![event(a, "order.created", 1), event(a, "order.paid", 2)],
            ),
            append(b, 1, vec![event(b, "order.paid", 2)]),
        ])
        .await
        .unwrap();
    assert_eq!(
        appended.iter().map(|one| one.version).collect::<Vec<_>>(),
        [2, 2]
    );
    assert!(appended[0].position < appended[1].position);
    assert_eq!(
        store.read_stream(a).await.unwrap()[1].position,
        appended[0].position
    );
    assert_eq!(
        store.read_stream(b).await.unwrap()[1].position,
        appended[1].position
    );

    // The second stream has moved on: the first stream's events do not land either.
    match store
        .append_many(vec![
            append(c, 0, vec![event(c, "order.created", 1)]),
            append(b, 1, vec![event(b, "order.shipped", 3)]),
        ])
        .await
    {
        Err(Error::Conflict {
            aggregate_id,
            expected,
            actual,
        }) => assert_eq!((aggregate_id, expected, actual), (b, 1, 2)),
        other => panic!("expected a conflict on the second stream, got {other:?}"),
    }
    assert!(store.read_stream(c).await.unwrap().is_empty());
    assert_eq!(store.read_stream(b).await.unwrap().len(), 2);
}

/// One call may name a stream twice (the second continuing the first) and may carry
/// more events than a store writes in one statement; every event lands, in order.
pub async fn a_stream_named_twice_and_a_long_append_land_in_order(store: Arc<dyn EventStore>) {
    let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
    let append = |aggregate_id, expected_version, events| StreamAppend {
        aggregate_id,
        expected_version,
        events,
    };
    let long: Vec<NewEvent> = (1..=300).map(|v| event(b, "order.noted", v)).collect();
    let appended = store
        .append_many(vec![
            append(a, 0, vec![event(a, "order.created", 1)]),
            append(b, 0, long),
            append(a, 1, vec![event(a, "order.paid", 2)]),
        ])
        .await
        .unwrap();
    assert_eq!(
        appended.iter().map(|one| one.version).collect::<Vec<_>>(),
        [1, 300, 2]
    );
    assert!(appended[0].position < appended[1].position);
    assert!(appended[1].position < appended[2].position);
    let b_stream = store.read_stream(b).await.unwrap();
    assert_eq!(b_stream.len(), 300);
    assert!(b_stream.windows(2).all(|w| w[0].position < w[1].position));
    assert_eq!(b_stream[299].position, appended[1].position);
    assert_eq!(store.read_stream(a).await.unwrap().len(), 2);
}
