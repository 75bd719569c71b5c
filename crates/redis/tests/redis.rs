//! The Redis store against the real server `.ci/services` starts (plain and TLS), beside
//! the memory stores it stands in for across processes: both keep the same limits, and
//! cache alike.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use oxcart_platform::cache::{CacheStore, MemoryCache};
use oxcart_platform::limit::{Limit, LimitStore, MemoryStore, Quota};
use oxcart_platform::tls::TrustedCas;
use oxcart_redis::{Error, Redis, RedisConfig};
use oxcart_test_util::services;

fn config(url: &str) -> RedisConfig {
    RedisConfig {
        url: Some(url.to_owned()),
        key_prefix: format!("test-{}:", uuid::Uuid::new_v4().simple()),
        ..RedisConfig::default()
    }
}

async fn redis_over_tls() -> Redis {
    let cas = TrustedCas::from_file(&services::ca()).unwrap();
    Redis::connect(&config(&services::var("OXCART_TEST_REDIS_TLS")), &cas)
        .await
        .unwrap()
}

/// What every store must do: the burst at once, then a refusal that says how long to
/// wait; each key its own allowance, each limit its own keys.
async fn keeps_limits(store: &dyn LimitStore) {
    let quota = Quota::new(5, Duration::from_secs(60), 5).unwrap();
    for _ in 0..5 {
        assert_eq!(
            store.take(Limit::SignInEmail, quota, "a").await.unwrap(),
            None
        );
    }
    let wait = store
        .take(Limit::SignInEmail, quota, "a")
        .await
        .unwrap()
        .expect("the sixth is refused");
    assert!(
        wait > Duration::from_secs(10) && wait <= Duration::from_secs(12),
        "one attempt comes back every 12 s: {wait:?}"
    );
    assert_eq!(
        store.take(Limit::SignInEmail, quota, "b").await.unwrap(),
        None
    );
    assert_eq!(
        store.take(Limit::SignInAddress, quota, "a").await.unwrap(),
        None
    );

    // A fast quota refills: after its interval, one more.
    let fast = Quota::new(20, Duration::from_secs(1), 1).unwrap();
    assert_eq!(store.take(Limit::Api, fast, "c").await.unwrap(), None);
    assert!(store.take(Limit::Api, fast, "c").await.unwrap().is_some());
    tokio::time::sleep(Duration::from_millis(60)).await;
    assert_eq!(store.take(Limit::Api, fast, "c").await.unwrap(), None);
}

#[tokio::test]
async fn the_memory_store_keeps_limits() {
    keeps_limits(&MemoryStore::default()).await;
}

#[tokio::test]
#[ignore = "needs Redis (.ci/services)"]
async fn redis_keeps_limits_over_tls() {
    keeps_limits(&redis_over_tls().await).await;
}

#[tokio::test]
#[ignore = "needs Redis (.ci/services)"]
async fn redis_keeps_limits_in_plain_text() {
    let redis = Redis::connect(
        &config(&services::var("OXCART_TEST_REDIS")),
        &TrustedCas::public(),
    )
    .await
    .unwrap();
    keeps_limits(&redis).await;
}

#[tokio::test]
#[ignore = "needs Redis (.ci/services)"]
async fn a_certificate_from_another_ca_is_refused_at_start() {
    let other = TrustedCas::from_file(&services::other_ca()).unwrap();
    let error = Redis::connect(&config(&services::var("OXCART_TEST_REDIS_TLS")), &other)
        .await
        .err()
        .expect("refused");
    assert!(matches!(error, Error::Certificate(_)), "{error}");
}

#[tokio::test]
async fn a_server_that_does_not_answer_is_an_error_per_request_not_at_start() {
    // Nothing listens on port 1: the limits let requests through (and count it).
    let redis = Redis::connect(&config("redis://127.0.0.1:1"), &TrustedCas::public())
        .await
        .expect("starts without Redis");
    let quota = Quota::new(1, Duration::from_secs(1), 1).unwrap();
    assert!(redis.take(Limit::Api, quota, "k").await.is_err());
}

/// What every cache store must do: values under the namespace's generation; an
/// invalidation moves it, and then neither what was cached before nor what a late
/// reader stores under the old generation is read again.
async fn caches_by_generation(store: &dyn CacheStore) {
    let keys = vec!["a".to_owned(), "b".to_owned()];
    let (first, values) = store.get("things", &keys).await.unwrap();
    assert_eq!(values, [None, None]);
    store
        .put("things", first, vec![("a".into(), b"1".to_vec())], TTL)
        .await
        .unwrap();
    let (generation, values) = store.get("things", &keys).await.unwrap();
    assert_eq!(generation, first);
    assert_eq!(values, [Some(b"1".to_vec()), None]);
    // Another namespace is its own.
    assert_eq!(store.get("others", &keys).await.unwrap().1, [None, None]);

    store.invalidate(&["things".to_owned()], TTL).await.unwrap();
    let (second, values) = store.get("things", &keys).await.unwrap();
    assert_ne!(second, first);
    assert_eq!(values, [None, None], "invalidated");
    // A reader that fetched before the invalidation stores under the old generation:
    // nobody reads it.
    store
        .put("things", first, vec![("b".into(), b"stale".to_vec())], TTL)
        .await
        .unwrap();
    assert_eq!(store.get("things", &keys).await.unwrap().1, [None, None]);
    store
        .put("things", second, vec![("b".into(), b"2".to_vec())], TTL)
        .await
        .unwrap();
    assert_eq!(
        store.get("things", &keys).await.unwrap().1,
        [None, Some(b"2".to_vec())]
    );
}

const TTL: Duration = Duration::from_secs(60);

#[tokio::test]
async fn the_memory_cache_caches_by_generation() {
    caches_by_generation(&MemoryCache::new(1000, TTL)).await;
}

#[tokio::test]
#[ignore = "needs Redis (.ci/services)"]
async fn redis_caches_by_generation() {
    caches_by_generation(&redis_over_tls().await).await;
}
