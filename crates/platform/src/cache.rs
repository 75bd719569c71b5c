//! Caches with an owner and an invalidation, never time alone.
//!
//! A cache holds values under keys in a *namespace*, and each namespace has a
//! *generation*. A reader gets the generation with the values ([`CacheStore::get`]) and
//! stores what it had to fetch under that generation ([`CacheStore::put`]); the owner of
//! the data, when it changes it, moves the namespace to the next generation
//! ([`CacheStore::invalidate`]) before it answers. From then on every reader asks under
//! the new generation, so nothing cached before the change is read again, and a reader
//! that fetched the old value while the change was being made stores it under a
//! generation nobody asks for any more: the race that leaves a stale entry behind when
//! invalidation deletes keys cannot happen. Entries also expire (`ttl`), which bounds
//! memory, not staleness.
//!
//! The store is this process's memory ([`MemoryCache`], moka) when the owner runs in the
//! same process, or Redis (`oxcart_redis::Redis`) when processes share it. [`Cached`] is
//! what a service holds: a store, a namespace, a lifetime, and the hit and miss counters.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use prometheus::{IntCounterVec, Opts};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::BoxError;
use crate::metrics::Metrics;

/// The orders' cache of the catalog's product snapshots, which the catalog invalidates
/// when it changes a product.
pub const PRODUCT_SNAPSHOTS: &str = "product-snapshots";

/// The spec's `payment_cache`: an order's payments as `GET /api/payments` answers, a
/// scope an order, which the payments saga invalidates when it records a step.
pub const PAYMENTS: &str = "payments";

/// Where cached values live.
#[async_trait]
pub trait CacheStore: Send + Sync {
    /// The namespace's generation, and the value of each key under it.
    async fn get(
        &self,
        namespace: &str,
        keys: &[String],
    ) -> Result<(u64, Vec<Option<Vec<u8>>>), BoxError>;
    /// Stores `entries` under `generation`, for `ttl`.
    async fn put(
        &self,
        namespace: &str,
        generation: u64,
        entries: Vec<(String, Vec<u8>)>,
        ttl: Duration,
    ) -> Result<(), BoxError>;
    /// Moves each namespace to a new generation: what is cached in it is gone. `ttl` is
    /// the entries' lifetime, which a store may keep a generation for no longer than
    /// twice (past it, nothing of an older generation is left).
    async fn invalidate(&self, namespaces: &[String], ttl: Duration) -> Result<(), BoxError>;
}

/// A cache in this process's memory: entries in a moka cache (bounded, expiring), and
/// each namespace's generation in another.
///
/// Every generation handed out is a new number from one counter, so a namespace whose
/// generation was evicted comes back under a number no entry was ever stored under:
/// nothing old can be read through it.
pub struct MemoryCache {
    entries: moka::sync::Cache<String, Arc<Vec<u8>>>,
    generations: moka::sync::Cache<String, u64>,
    counter: AtomicU64,
}

impl MemoryCache {
    /// At most `capacity` entries, each for at most `ttl`.
    pub fn new(capacity: u64, ttl: Duration) -> Self {
        Self {
            entries: moka::sync::Cache::builder()
                .max_capacity(capacity)
                .time_to_live(ttl)
                .build(),
            generations: moka::sync::Cache::builder()
                .max_capacity(capacity)
                .time_to_idle(ttl.saturating_mul(2))
                .build(),
            counter: AtomicU64::new(0),
        }
    }

    fn next(&self) -> u64 {
        self.counter.fetch_add(1, Ordering::Relaxed) + 1
    }

    fn generation(&self, namespace: &str) -> u64 {
        self.generations
            .get_with(namespace.to_owned(), || self.next())
    }
}

fn entry_key(namespace: &str, generation: u64, key: &str) -> String {
    format!("{namespace}:{generation}:{key}")
}

#[async_trait]
impl CacheStore for MemoryCache {
    async fn get(
        &self,
        namespace: &str,
        keys: &[String],
    ) -> Result<(u64, Vec<Option<Vec<u8>>>), BoxError> {
        let generation = self.generation(namespace);
        let values = keys
            .iter()
            .map(|key| {
                self.entries
                    .get(&entry_key(namespace, generation, key))
                    .map(|value| value.as_ref().clone())
            })
            .collect();
        Ok((generation, values))
    }

    async fn put(
        &self,
        namespace: &str,
        generation: u64,
        entries: Vec<(String, Vec<u8>)>,
        _ttl: Duration,
    ) -> Result<(), BoxError> {
        for (key, value) in entries {
            self.entries
                .insert(entry_key(namespace, generation, &key), Arc::new(value));
        }
        Ok(())
    }

    async fn invalidate(&self, namespaces: &[String], _ttl: Duration) -> Result<(), BoxError> {
        for namespace in namespaces {
            self.generations.insert(namespace.clone(), self.next());
        }
        Ok(())
    }
}

/// The `[caching]` section of the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    /// Cache what the hot path reads (the product snapshots orders are priced from)
    /// where the cache can be invalidated: in a process that also runs the catalog, or
    /// in Redis (`redis.url`) shared with every catalog process.
    pub enabled: bool,
    /// How long an entry lives at most. It bounds memory; a change invalidates at once.
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
    /// Most entries one process keeps in memory.
    pub capacity: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            ttl: Duration::from_secs(600),
            capacity: 100_000,
        }
    }
}

/// One cache as a service holds it; cheap to clone.
#[derive(Clone)]
pub struct Cached {
    store: Arc<dyn CacheStore>,
    namespace: &'static str,
    ttl: Duration,
    lookups: IntCounterVec,
}

/// Counts hits and misses of every cache, by cache.
#[derive(Clone)]
pub struct CacheMetrics(IntCounterVec);

impl CacheMetrics {
    /// Registers `cache_lookups_total{cache, result}` in `metrics`.
    pub fn new(metrics: &Metrics) -> Self {
        let lookups = IntCounterVec::new(
            Opts::new(
                "cache_lookups_total",
                "Keys looked up in a cache, by cache and result (hit, miss, error)",
            ),
            &["cache", "result"],
        )
        .expect("valid metric definition");
        metrics.register(Box::new(lookups.clone()));
        Self(lookups)
    }
}

impl std::fmt::Debug for Cached {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cached")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

impl Cached {
    pub fn new(
        store: Arc<dyn CacheStore>,
        namespace: &'static str,
        ttl: Duration,
        metrics: &CacheMetrics,
    ) -> Self {
        for result in ["hit", "miss", "error"] {
            metrics.0.with_label_values(&[namespace, result]);
        }
        Self {
            store,
            namespace,
            ttl,
            lookups: metrics.0.clone(),
        }
    }

    /// The values of `keys`: from the cache where it has them, the rest from `fetch`
    /// (given the keys it lacks, answering with the values it found, each with its key),
    /// which are then cached. A cache that fails is passed over: `fetch` answers for
    /// every key, and the failure is counted.
    pub async fn get_or_fetch<T, F, Fut, E>(&self, keys: &[String], fetch: F) -> Result<Vec<T>, E>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce(Vec<String>) -> Fut,
        Fut: std::future::Future<Output = Result<Vec<(String, T)>, E>>,
    {
        self.lookup(self.namespace.to_owned(), keys, fetch).await
    }

    /// [`get_or_fetch`](Self::get_or_fetch) in `scope`, a part of the cache with a
    /// generation of its own (one order's payments), which
    /// [`invalidate_scopes`](Self::invalidate_scopes) moves alone.
    pub async fn get_or_fetch_in<T, F, Fut, E>(
        &self,
        scope: &str,
        keys: &[String],
        fetch: F,
    ) -> Result<Vec<T>, E>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce(Vec<String>) -> Fut,
        Fut: std::future::Future<Output = Result<Vec<(String, T)>, E>>,
    {
        self.lookup(self.scoped(scope), keys, fetch).await
    }

    fn scoped(&self, scope: &str) -> String {
        format!("{}:{scope}", self.namespace)
    }

    async fn lookup<T, F, Fut, E>(
        &self,
        namespace: String,
        keys: &[String],
        fetch: F,
    ) -> Result<Vec<T>, E>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce(Vec<String>) -> Fut,
        Fut: std::future::Future<Output = Result<Vec<(String, T)>, E>>,
    {
        let count = |result: &str, n: usize| {
            self.lookups
                .with_label_values(&[self.namespace, result])
                .inc_by(n as u64);
        };
        let (generation, cached) = match self.store.get(&namespace, keys).await {
            Ok(found) => found,
            Err(error) => {
                tracing::warn!(cache = self.namespace, error = %error, "cache unreachable; reading through");
                count("error", keys.len());
                let fetched = fetch(keys.to_vec()).await?;
                return Ok(fetched.into_iter().map(|(_, value)| value).collect());
            }
        };
        let mut found = Vec::new();
        let mut missing = Vec::new();
        for (key, value) in keys.iter().zip(cached) {
            match value.and_then(|bytes| serde_json::from_slice::<T>(&bytes).ok()) {
                Some(value) => found.push(value),
                None => missing.push(key.clone()),
            }
        }
        count("hit", found.len());
        count("miss", missing.len());
        if missing.is_empty() {
            return Ok(found);
        }
        let fetched = fetch(missing).await?;
        let entries = fetched
            .iter()
            .filter_map(|(key, value)| Some((key.clone(), serde_json::to_vec(value).ok()?)))
            .collect();
        if let Err(error) = self
            .store
            .put(&namespace, generation, entries, self.ttl)
            .await
        {
            tracing::warn!(cache = self.namespace, error = %error, "cannot fill the cache");
        }
        found.extend(fetched.into_iter().map(|(_, value)| value));
        Ok(found)
    }

    /// Everything cached so far is gone for readers. The owner of the data calls it
    /// twice around a change: before it commits (failing the change if the cache cannot
    /// be reached, so that no change goes unannounced) and after, before it answers (a
    /// reader that fetched the old value in between stored it under the generation this
    /// leaves behind).
    pub async fn invalidate(&self) -> Result<(), BoxError> {
        self.store
            .invalidate(&[self.namespace.to_owned()], self.ttl)
            .await
    }

    /// Moves each of `scopes` to a new generation (see [`get_or_fetch_in`](Self::get_or_fetch_in)).
    pub async fn invalidate_scopes(&self, scopes: &[String]) -> Result<(), BoxError> {
        let namespaces: Vec<String> = scopes.iter().map(|scope| self.scoped(scope)).collect();
        self.store.invalidate(&namespaces, self.ttl).await
    }
}
