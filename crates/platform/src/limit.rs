//! Rate limits: how many requests one caller may make to the API, and how many sign-in
//! attempts one e-mail or one address may make, before the answer is `429 Too Many
//! Requests` with `Retry-After`.
//!
//! Every limit is GCRA (the generic cell rate algorithm: a token bucket kept as one
//! timestamp per key, so a key costs a few bytes however busy it is). Where the state
//! lives is a [`LimitStore`]: in one process, memory ([`MemoryStore`], the `governor`
//! crate); processes that must share their limits keep it in Redis
//! (`oxcart_redis::RedisStore`, the same algorithm as a server-side script), so that
//! three replicas of the users service still allow an e-mail five attempts a minute, not
//! fifteen.
//!
//! A store that cannot be reached lets the request through and counts it in
//! `rate_limit_store_errors_total`: a limiter that fails closed would turn a Redis
//! outage into an API outage.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, RateLimiter};
use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, header};
use prometheus::{IntCounter, IntCounterVec, Opts};
use serde::{Deserialize, Serialize};

use crate::auth::{TokenVerifier, bearer_token};
use crate::metrics::Metrics;
use crate::problem::{ApiError, ProblemKind};

pub use crate::BoxError;

/// The `[rate_limit]` section of the configuration. A limit of 0 is off.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Requests per second one caller may make to `/api/…`, sustained. A caller is the
    /// subject of a valid bearer token, else the client's address.
    pub requests_per_second: u32,
    /// Requests a caller may make at once, above the sustained rate.
    pub burst: u32,
    /// Sign-in attempts per minute for one e-mail, right or wrong. The next one is
    /// refused before its password is checked, so guessing costs the server nothing.
    pub sign_in_per_email: u32,
    /// Sign-in attempts per minute from one client address, whatever the e-mail.
    pub sign_in_per_address: u32,
    /// The header a trusted proxy in front of oxcart writes the client's address into
    /// (`x-forwarded-for`, `x-envoy-external-address`). The address is the header's last
    /// entry: the one the proxy nearest oxcart added. Unset: the connection's peer. Set
    /// it only behind a proxy that writes it, or any client can name any address.
    pub client_address_header: Option<String>,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            requests_per_second: 50,
            burst: 100,
            sign_in_per_email: 5,
            sign_in_per_address: 20,
            client_address_header: None,
        }
    }
}

/// How many requests a key may make: one every `interval`, and up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Quota {
    pub interval: Duration,
    pub burst: u32,
}

impl Quota {
    /// `count` per `period`, `burst` of them at once; `None` when `count` is 0 (off).
    pub fn new(count: u32, period: Duration, burst: u32) -> Option<Self> {
        (count > 0).then(|| Self {
            interval: (period / count).max(Duration::from_nanos(1)),
            burst: burst.max(1),
        })
    }
}

/// The limits oxcart keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Limit {
    /// Requests to `/api/…` per caller.
    Api,
    /// Sign-in attempts per e-mail.
    SignInEmail,
    /// Sign-in attempts per client address.
    SignInAddress,
}

impl Limit {
    /// The metric label, and the name a store keeps the limit under.
    pub fn name(self) -> &'static str {
        match self {
            Self::Api => "api",
            Self::SignInEmail => "sign_in_email",
            Self::SignInAddress => "sign_in_address",
        }
    }

    fn detail(self) -> &'static str {
        match self {
            Self::Api => "this caller has made too many requests; slow down",
            Self::SignInEmail => "too many sign-in attempts for this e-mail",
            Self::SignInAddress => "too many sign-in attempts from this address",
        }
    }
}

/// Where limits keep their state.
#[async_trait]
pub trait LimitStore: Send + Sync {
    /// Takes one request from `key`'s allowance under `limit` and `quota`: `None` when it
    /// is allowed, else how long until the next one would be.
    async fn take(
        &self,
        limit: Limit,
        quota: Quota,
        key: &str,
    ) -> Result<Option<Duration>, BoxError>;
}

/// One `governor` limiter, keyed by caller, e-mail or address.
type Keyed = Arc<DefaultKeyedRateLimiter<String>>;

/// Limits kept in this process's memory: one `governor` keyed limiter per limit.
#[derive(Default)]
pub struct MemoryStore {
    limiters: Mutex<HashMap<(Limit, Quota), Keyed>>,
    takes: AtomicU64,
}

/// How often (in takes) the memory store forgets keys whose allowance is whole again.
const PRUNE_EVERY: u64 = 4096;

impl MemoryStore {
    fn limiter(&self, limit: Limit, quota: Quota) -> Keyed {
        let mut limiters = self
            .limiters
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(limiters.entry((limit, quota)).or_insert_with(|| {
            let burst = NonZeroU32::new(quota.burst).unwrap_or(NonZeroU32::MIN);
            let per = governor::Quota::with_period(quota.interval)
                .unwrap_or_else(|| governor::Quota::per_second(NonZeroU32::MAX));
            Arc::new(RateLimiter::keyed(per.allow_burst(burst)))
        }))
    }
}

#[async_trait]
impl LimitStore for MemoryStore {
    async fn take(
        &self,
        limit: Limit,
        quota: Quota,
        key: &str,
    ) -> Result<Option<Duration>, BoxError> {
        let limiter = self.limiter(limit, quota);
        let verdict = limiter
            .check_key(&key.to_owned())
            .err()
            .map(|not_until| not_until.wait_time_from(DefaultClock::default().now()));
        if self.takes.fetch_add(1, Ordering::Relaxed) % PRUNE_EVERY == PRUNE_EVERY - 1 {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        Ok(verdict)
    }
}

/// The configured limits on a store; cheap to clone.
#[derive(Clone)]
pub struct Limits(Arc<Inner>);

struct Inner {
    config: RateLimitConfig,
    store: Arc<dyn LimitStore>,
    /// Tells a caller by its token's subject; a token that does not verify counts as
    /// none, so that made-up subjects cannot spread one client over many allowances.
    verifier: TokenVerifier,
    address_header: Option<HeaderName>,
    refused: IntCounterVec,
    store_errors: IntCounter,
}

impl Limits {
    /// # Errors
    /// A `client_address_header` that is not a header name, naming the setting.
    pub fn new(
        config: &RateLimitConfig,
        store: Arc<dyn LimitStore>,
        verifier: TokenVerifier,
        metrics: &Metrics,
    ) -> Result<Self, String> {
        let address_header = config
            .client_address_header
            .as_deref()
            .map(|name| {
                HeaderName::try_from(name.trim()).map_err(|_| {
                    format!("rate_limit.client_address_header: `{name}` is not a header name")
                })
            })
            .transpose()?;
        let refused = IntCounterVec::new(
            Opts::new(
                "rate_limited_total",
                "Requests refused with 429 by a rate limit, by limit",
            ),
            &["limit"],
        )
        .expect("valid metric definition");
        let store_errors = IntCounter::new(
            "rate_limit_store_errors_total",
            "Requests let through because the rate-limit store could not be reached",
        )
        .expect("valid metric definition");
        metrics.register(Box::new(refused.clone()));
        metrics.register(Box::new(store_errors.clone()));
        Ok(Self(Arc::new(Inner {
            config: config.clone(),
            store,
            verifier,
            address_header,
            refused,
            store_errors,
        })))
    }

    fn quota(&self, limit: Limit) -> Option<Quota> {
        let config = &self.0.config;
        let minute = Duration::from_secs(60);
        match limit {
            Limit::Api => Quota::new(
                config.requests_per_second,
                Duration::from_secs(1),
                config.burst,
            ),
            Limit::SignInEmail => {
                Quota::new(config.sign_in_per_email, minute, config.sign_in_per_email)
            }
            Limit::SignInAddress => Quota::new(
                config.sign_in_per_address,
                minute,
                config.sign_in_per_address,
            ),
        }
    }

    /// Takes one request from `key`'s allowance under `limit`: a 429 problem with
    /// `Retry-After` when there is none left.
    pub async fn check(&self, limit: Limit, key: &str) -> Result<(), ApiError> {
        let Some(quota) = self.quota(limit) else {
            return Ok(());
        };
        match self.0.store.take(limit, quota, key).await {
            Ok(None) => Ok(()),
            Ok(Some(wait)) => {
                self.0.refused.with_label_values(&[limit.name()]).inc();
                Err(too_many(limit, wait))
            }
            Err(error) => {
                self.0.store_errors.inc();
                tracing::warn!(error = %error, limit = limit.name(), "rate-limit store unreachable; letting the request through");
                Ok(())
            }
        }
    }

    /// The client's address: from the trusted proxy's header when one is configured (its
    /// last entry), else (and for a request that did not pass the proxy, such as a
    /// kubelet's probe) the connection's peer.
    fn client_address(&self, headers: &HeaderMap, peer: Option<SocketAddr>) -> Option<IpAddr> {
        let proxied = self.0.address_header.as_ref().and_then(|name| {
            headers
                .get_all(name)
                .iter()
                .filter_map(|value| value.to_str().ok())
                .flat_map(|value| value.split(','))
                .next_back()
                .and_then(|last| parse_address(last.trim()))
        });
        proxied.or_else(|| peer.map(|peer| peer.ip()))
    }
}

/// An address as proxies write it: `203.0.113.7`, `2001:db8::1`, `[2001:db8::1]:443` or
/// `203.0.113.7:5123`.
fn parse_address(text: &str) -> Option<IpAddr> {
    text.parse::<IpAddr>()
        .ok()
        .or_else(|| text.parse::<SocketAddr>().ok().map(|s| s.ip()))
}

fn too_many(limit: Limit, wait: Duration) -> ApiError {
    // Whole seconds, rounded up: a client that waits that long is let in.
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    ApiError::new(ProblemKind::TooManyRequests)
        .with_detail(limit.detail())
        .with_header(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)))
}

/// The client behind a request, as the limits know it: what a handler takes to apply a
/// limit of its own (sign-in). Without limits installed, it limits nothing.
#[derive(Clone, Default)]
pub struct Client {
    limits: Option<Limits>,
    address: Option<IpAddr>,
}

impl Client {
    /// Takes one sign-in attempt for `email` and for the client's address; a 429 when
    /// either has none left, before anything else is done about the attempt.
    pub async fn sign_in_attempt(&self, email: &str) -> Result<(), ApiError> {
        let Some(limits) = &self.limits else {
            return Ok(());
        };
        if let Some(address) = self.address {
            limits
                .check(Limit::SignInAddress, &address.to_string())
                .await?;
        }
        limits
            .check(Limit::SignInEmail, &email.trim().to_lowercase())
            .await
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Client {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<Client>()
            .cloned()
            .unwrap_or_default())
    }
}

/// The per-caller limit on `/api/…`, and the [`Client`] every handler can take.
pub async fn api(State(limits): State<Limits>, mut request: Request, next: Next) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0);
    let address = limits.client_address(request.headers(), peer);
    if request.uri().path().starts_with("/api/") {
        let subject = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(bearer_token)
            .and_then(|token| limits.0.verifier.verify(token).ok())
            .map(|caller| format!("user:{}", caller.user_id));
        let key = subject.or_else(|| address.map(|a| format!("address:{a}")));
        if let Some(key) = key
            && let Err(refused) = limits.check(Limit::Api, &key).await
        {
            return refused.into_response();
        }
    }
    request.extensions_mut().insert(Client {
        limits: Some(limits),
        address,
    });
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zero_limit_is_off() {
        assert_eq!(Quota::new(0, Duration::from_secs(1), 10), None);
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        let response = too_many(Limit::Api, Duration::from_millis(1200)).into_response();
        assert_eq!(response.status(), 429);
        assert_eq!(response.headers()[header::RETRY_AFTER], "2");
        let response = too_many(Limit::Api, Duration::ZERO).into_response();
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
    }

    #[test]
    fn the_address_is_the_last_one_the_trusted_proxy_wrote() {
        let verifier = crate::auth::SigningKey::generate().unwrap().verifier();
        let config = RateLimitConfig {
            client_address_header: Some("x-forwarded-for".into()),
            ..RateLimitConfig::default()
        };
        let limits = Limits::new(
            &config,
            Arc::new(MemoryStore::default()),
            verifier,
            &Metrics::new(),
        )
        .unwrap();
        let mut headers = HeaderMap::new();
        headers.append(
            "x-forwarded-for",
            HeaderValue::from_static("6.6.6.6, 10.0.0.1"),
        );
        headers.append("x-forwarded-for", HeaderValue::from_static("203.0.113.7"));
        let peer = Some(SocketAddr::from(([127, 0, 0, 1], 9)));
        assert_eq!(
            limits.client_address(&headers, peer),
            Some("203.0.113.7".parse().unwrap())
        );
        assert_eq!(
            limits.client_address(&HeaderMap::new(), peer),
            Some("127.0.0.1".parse().unwrap())
        );
        assert_eq!(
            parse_address("[2001:db8::1]:443"),
            Some("2001:db8::1".parse().unwrap())
        );
    }
}
