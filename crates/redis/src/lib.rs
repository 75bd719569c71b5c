//! Redis: the state processes share when services run apart, so that a limit or a cache
//! means the same in every replica.
//!
//! - [`Redis`] is one managed connection (reconnecting by itself), over TLS for a
//!   `rediss://` URL, verified against `[tls] ca_file` when one is set.
//! - It is a [`LimitStore`]: each limit is GCRA, run as one server-side script per
//!   request ([`GCRA`]), so concurrent replicas never race on a key.
//! - It is a [`CacheStore`]: a namespace's generation is a counter, its entries keys
//!   named with it ([`CACHED`] reads both in one round trip).
//! - It is the [`Revocations`] list: an ended session is a key that expires with the
//!   session's last access token, so a sign-out is seen by every service at once.
//!
//! Without a `[redis] url`, an all-in-one process keeps the same state in memory
//! (`oxcart_platform::limit::MemoryStore`).

use std::time::Duration;

use async_trait::async_trait;
use oxcart_platform::BoxError;
use oxcart_platform::auth::Revocations;
use oxcart_platform::cache::CacheStore;
use oxcart_platform::limit::{Limit, LimitStore, Quota};
use oxcart_platform::tls::TrustedCas;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde::{Deserialize, Serialize};

/// The `[redis]` section of the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://[:password@]host:port[/db]`, or `rediss://…` for TLS: share rate limits
    /// and caches between processes through it. Unset: each process keeps its own, in
    /// memory. `REDIS_URL` sets it too.
    pub url: Option<String>,
    /// Put before every key, to share a server with other applications.
    pub key_prefix: String,
    /// How long a command may take before the limit or cache behind it gives up (and
    /// lets the request through, or reads the database).
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: None,
            key_prefix: "oxcart:".to_owned(),
            timeout: Duration::from_millis(250),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("`{0}` is not a Redis URL: {1}")]
    Url(String, redis::RedisError),
    #[error("the server's certificate was refused: {0}")]
    Certificate(String),
}

/// One shared connection to Redis; cheap to clone.
#[derive(Clone)]
pub struct Redis {
    connection: ConnectionManager,
    prefix: String,
}

/// GCRA on one key: `KEYS[1]` holds the theoretical arrival time (µs, server clock) of
/// the next request; `ARGV[1]` is the interval between requests (µs), `ARGV[2]` the
/// burst. Answers -1 when the request is allowed (and stores the new arrival time,
/// expiring when the allowance is whole again), else the µs until one would be.
/// The server's clock, not the callers', so replicas whose clocks differ agree.
pub const GCRA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = interval * tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local next_tat = tat + interval
local allow_at = next_tat - tolerance
if now < allow_at then
  return allow_at - now
end
redis.call('SET', KEYS[1], string.format('%d', next_tat), 'PX', math.ceil((next_tat - now) / 1000))
return -1
";

/// A namespace's generation and its keys' values under it: `KEYS[1]` the generation's
/// key, `ARGV[1]` the entries' key prefix, the other arguments the keys. Answers the
/// generation, then each value (nil where there is none).
pub const CACHED: &str = r"
local generation = redis.call('GET', KEYS[1]) or '0'
local answer = {generation}
for i = 2, #ARGV do
  answer[i] = redis.call('GET', ARGV[1] .. generation .. ':' .. ARGV[i])
end
return answer
";

impl Redis {
    /// A connection to `config.url` (which must be set), trusting `cas` for `rediss://`.
    /// It is reached once: a refused certificate is an error, a server that does not
    /// answer yet is only logged, since the connection reconnects by itself.
    pub async fn connect(config: &RedisConfig, cas: &TrustedCas) -> Result<Self, Error> {
        let url = config.url.clone().unwrap_or_default();
        let redacted = redact(&url);
        let client = match cas.pem() {
            Some(pem) if url.starts_with("rediss://") => {
                install_crypto_provider();
                redis::Client::build_with_tls(
                    url.as_str(),
                    redis::TlsCertificates {
                        client_tls: None,
                        root_cert: Some(pem.to_vec()),
                    },
                )
            }
            _ => {
                install_crypto_provider();
                redis::Client::open(url.as_str())
            }
        }
        .map_err(|e| Error::Url(redacted.clone(), e))?;
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(config.timeout))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(1));
        let connection = ConnectionManager::new_lazy_with_config(client, manager_config)
            .map_err(|e| Error::Url(redacted.clone(), e))?;
        let redis = Self {
            connection,
            prefix: config.key_prefix.clone(),
        };
        if let Err(error) = redis.ping().await {
            if let Some(refused) = oxcart_platform::tls::failure(&error) {
                return Err(Error::Certificate(refused));
            }
            tracing::warn!(url = %redacted, error = %error, "Redis does not answer yet; limits let requests through until it does");
        }
        Ok(redis)
    }

    /// `PING`.
    pub async fn ping(&self) -> Result<(), redis::RedisError> {
        let mut connection = self.connection.clone();
        redis::cmd("PING")
            .query_async::<String>(&mut connection)
            .await
            .map(drop)
    }

    /// Sets every key to its value, each expiring after `ttl`, in one round trip.
    async fn set_all(
        &self,
        entries: impl Iterator<Item = (String, Vec<u8>)>,
        ttl: Duration,
    ) -> Result<(), BoxError> {
        let millis = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let mut pipe = redis::pipe();
        for (key, value) in entries {
            pipe.cmd("SET")
                .arg(key)
                .arg(value)
                .arg("PX")
                .arg(millis)
                .ignore();
        }
        let mut connection = self.connection.clone();
        pipe.query_async::<()>(&mut connection).await?;
        Ok(())
    }

    fn key(&self, parts: &[&str]) -> String {
        let mut key = self.prefix.clone();
        key.push_str(&parts.join(":"));
        key
    }
}

/// rustls needs one crypto provider chosen for the process when more than one is built
/// in (ring for oxcart's clients; aws-lc-rs comes with the AWS SDK): ring, as everywhere.
fn install_crypto_provider() {
    let _already = rustls::crypto::ring::default_provider().install_default();
}

/// The URL with its password replaced by `***`, for logs and errors.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            let user = credentials.split(':').next().unwrap_or_default();
            format!("{}://{user}:***@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

#[async_trait]
impl LimitStore for Redis {
    async fn take(
        &self,
        limit: Limit,
        quota: Quota,
        key: &str,
    ) -> Result<Option<Duration>, BoxError> {
        static SCRIPT: std::sync::LazyLock<redis::Script> =
            std::sync::LazyLock::new(|| redis::Script::new(GCRA));
        let interval = u64::try_from(quota.interval.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        let mut connection = self.connection.clone();
        let wait: i64 = SCRIPT
            .key(self.key(&["limit", limit.name(), key]))
            .arg(interval)
            .arg(quota.burst)
            .invoke_async(&mut connection)
            .await?;
        Ok(u64::try_from(wait).ok().map(Duration::from_micros))
    }
}

#[async_trait]
impl CacheStore for Redis {
    async fn get(
        &self,
        namespace: &str,
        keys: &[String],
    ) -> Result<(u64, Vec<Option<Vec<u8>>>), BoxError> {
        static SCRIPT: std::sync::LazyLock<redis::Script> =
            std::sync::LazyLock::new(|| redis::Script::new(CACHED));
        let mut invocation = SCRIPT.key(self.key(&["cache", namespace, "generation"]));
        invocation.arg(self.key(&["cache", namespace, ""]));
        for key in keys {
            invocation.arg(key);
        }
        let mut connection = self.connection.clone();
        let mut answer: Vec<Option<Vec<u8>>> = invocation.invoke_async(&mut connection).await?;
        if answer.is_empty() {
            return Err("the cache script answered nothing".into());
        }
        let generation = answer.remove(0).unwrap_or_default();
        let generation = std::str::from_utf8(&generation)?.parse()?;
        answer.resize(keys.len(), None);
        Ok((generation, answer))
    }

    async fn put(
        &self,
        namespace: &str,
        generation: u64,
        entries: Vec<(String, Vec<u8>)>,
        ttl: Duration,
    ) -> Result<(), BoxError> {
        let generation = generation.to_string();
        self.set_all(
            entries
                .into_iter()
                .map(|(key, value)| (self.key(&["cache", namespace, &generation, &key]), value)),
            ttl,
        )
        .await
    }

    async fn invalidate(&self, namespaces: &[String], ttl: Duration) -> Result<(), BoxError> {
        // A generation outlives its entries (twice their lifetime), so that when its key
        // expires and it starts again from 0, nothing of a generation before is left.
        let millis = u64::try_from(ttl.as_millis())
            .unwrap_or(u64::MAX / 2)
            .saturating_mul(2)
            .max(1);
        let mut pipe = redis::pipe();
        for namespace in namespaces {
            let key = self.key(&["cache", namespace, "generation"]);
            pipe.cmd("INCR").arg(&key).ignore();
            pipe.cmd("PEXPIRE").arg(&key).arg(millis).ignore();
        }
        let mut connection = self.connection.clone();
        pipe.query_async::<()>(&mut connection).await?;
        Ok(())
    }
}

#[async_trait]
impl Revocations for Redis {
    async fn revoke(&self, sessions: &[uuid::Uuid], ttl: Duration) -> Result<(), BoxError> {
        self.set_all(
            sessions
                .iter()
                .map(|session| (self.key(&["revoked", &session.to_string()]), b"1".to_vec())),
            ttl,
        )
        .await
    }

    async fn is_revoked(&self, session: uuid::Uuid) -> Result<bool, BoxError> {
        let mut connection = self.connection.clone();
        let exists: bool = redis::cmd("EXISTS")
            .arg(self.key(&["revoked", &session.to_string()]))
            .query_async(&mut connection)
            .await?;
        Ok(exists)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("rediss://:s3cret@cache:6380/0"),
            "rediss://:***@cache:6380/0"
        );
        assert_eq!(redact("redis://app:s3cret@cache"), "redis://app:***@cache");
        assert_eq!(redact("redis://cache:6379"), "redis://cache:6379");
    }
}
