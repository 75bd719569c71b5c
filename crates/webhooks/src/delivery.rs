//! The consumer group `webhook-service`: each event to every endpoint that wants it.
//!
//! An endpoint's address is checked twice against private networks (unless
//! `webhooks.allow_private`): when it is registered, and at every delivery, by the
//! client's own resolver, so a name that later resolves somewhere private (DNS
//! rebinding) is refused at the connection it would have made.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use async_trait::async_trait;
use oxcart_events::RecordedEvent;
use oxcart_events::bus::topics;
use oxcart_events::consumer::{Handler, Unfinished};
use oxcart_events::store::BoxError;
use oxcart_platform::signature;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use secrecy::SecretString;
use tracing::Instrument as _;

use crate::{Endpoints, Target, WebhooksConfig};

pub const GROUP: &str = "webhook-service";

/// What one attempt at one endpoint came to.
#[derive(Debug, Clone)]
pub enum Outcome {
    Delivered { status: u16 },
    Failed { status: Option<u16>, error: String },
}

/// Delivers events to the endpoints that want them.
pub struct Deliverer {
    endpoints: Endpoints,
    http: reqwest::Client,
    allow_private: bool,
}

impl Deliverer {
    pub fn new(endpoints: Endpoints, config: &WebhooksConfig) -> Result<Self, reqwest::Error> {
        let mut builder = reqwest::Client::builder()
            .timeout(config.timeout)
            // A redirect could lead anywhere, a private address included.
            .redirect(reqwest::redirect::Policy::none());
        if !config.allow_private {
            builder = builder.dns_resolver(Arc::new(PublicOnly));
        }
        Ok(Self {
            endpoints,
            http: builder.build()?,
            allow_private: config.allow_private,
        })
    }

    /// POSTs `body` to `target`, signed.
    async fn post(&self, target: &Target, event: &RecordedEvent, body: &[u8]) -> Outcome {
        if let Err(problem) = literal_allowed(&target.endpoint.url, self.allow_private) {
            return Outcome::Failed {
                status: None,
                error: problem,
            };
        }
        let secret = SecretString::from(target.secret.clone());
        let sent = self
            .http
            .post(&target.endpoint.url)
            .header("Content-Type", "application/json")
            .header("Oxcart-Event-Id", event.event.event_id.to_string())
            .header("Oxcart-Event-Type", &event.event.event_type)
            .header("Oxcart-Signature", signature::sign_now(&secret, body))
            .body(body.to_vec())
            .send()
            .await;
        match sent {
            Ok(response) if response.status().is_success() => Outcome::Delivered {
                status: response.status().as_u16(),
            },
            Ok(response) => Outcome::Failed {
                status: Some(response.status().as_u16()),
                error: format!("answered {}", response.status()),
            },
            Err(error) => Outcome::Failed {
                status: None,
                error: describe(&error),
            },
        }
    }
}

/// A transport error with its causes: reqwest's own text is only its first line.
fn describe(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text = format!("{text}: {cause}");
        source = cause.source();
    }
    text
}

impl Deliverer {
    /// Delivers `event` to every endpoint of `targets` that wants it and has not had it;
    /// an error names the endpoints that failed.
    async fn deliver(&self, event: &RecordedEvent, targets: &[Target]) -> Result<(), BoxError> {
        let kind = &event.event.event_type;
        let wanted = targets
            .iter()
            .filter(|t| t.endpoint.event_types.iter().any(|k| k == kind));
        let mut body = None;
        let mut failed = Vec::new();
        for target in wanted {
            let id = target.endpoint.id;
            if self.endpoints.delivered(id, event.event.event_id).await? {
                continue;
            }
            let body = match &body {
                Some(body) => body,
                None => body.insert(serde_json::to_vec(&event.to_json())?),
            };
            let span = tracing::info_span!("deliver webhook", webhook.endpoint = %id, event.r#type = %kind);
            let outcome = self.post(target, event, body).instrument(span).await;
            self.endpoints
                .record(id, (event.event.event_id, kind), &outcome)
                .await?;
            match outcome {
                Outcome::Delivered { .. } => {
                    tracing::info!(endpoint = %id, event_type = %kind, "webhook delivered");
                }
                Outcome::Failed { error, .. } => failed.push(format!("{id}: {error}")),
            }
        }
        if failed.is_empty() {
            Ok(())
        } else {
            // Retried, then dead-lettered; the endpoints that had it are skipped then.
            Err(format!("webhook delivery failed: {}", failed.join("; ")).into())
        }
    }
}

#[async_trait]
impl Handler for Deliverer {
    fn group(&self) -> &'static str {
        GROUP
    }

    fn topics(&self) -> &'static [&'static str] {
        &topics::ALL
    }

    async fn handle(&self, event: &RecordedEvent) -> Result<(), BoxError> {
        self.deliver(event, &self.endpoints.targets().await?).await
    }

    /// Every event of the system passes through this group, and most shops register
    /// few endpoints: the endpoints are read once for a polled batch, not per event.
    /// Deliveries are recorded per endpoint as they happen, so after a failure the
    /// events from it on are left to the runner, which skips what was delivered.
    fn batches(&self) -> bool {
        true
    }

    async fn handle_batch(&self, events: &[&RecordedEvent]) -> Result<(), BoxError> {
        let targets = self.endpoints.targets().await?;
        for (n, event) in events.iter().enumerate() {
            if let Err(error) = self.deliver(event, &targets).await {
                return Err(Box::new(Unfinished {
                    failed: vec![event.event.event_id],
                    left: events[n..].iter().map(|e| e.event.event_id).collect(),
                    error,
                }));
            }
        }
        Ok(())
    }
}

/// Checks a URL an admin registers: http or https, with a host, and (unless private
/// networks are allowed) not resolving to one.
pub async fn check_url(url: &str, allow_private: bool) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("is not a URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err("must be an http:// or https:// URL".to_owned());
    }
    let host = parsed
        .host_str()
        .ok_or_else(|| "has no host".to_owned())?
        .trim_matches(['[', ']'])
        .to_owned();
    if allow_private {
        return Ok(());
    }
    literal_allowed(url, false)?;
    let port = parsed.port_or_known_default().unwrap_or(443);
    let addresses: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
        .await
        .map_err(|e| format!("cannot be resolved: {e}"))?
        .collect();
    if addresses.iter().any(|a| !is_public(a.ip())) {
        return Err(format!(
            "resolves to a loopback or private address ({host}); set webhooks.allow_private to allow it"
        ));
    }
    Ok(())
}

/// Refuses a URL whose host is a private IP address written out (no resolver sees it).
fn literal_allowed(url: &str, allow_private: bool) -> Result<(), String> {
    if allow_private {
        return Ok(());
    }
    let host = reqwest::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(|h| h.trim_matches(['[', ']']).to_owned()));
    match host.as_deref().map(str::parse::<IpAddr>) {
        Some(Ok(ip)) if !is_public(ip) => Err(format!(
            "is a loopback or private address ({ip}); set webhooks.allow_private to allow it"
        )),
        _ => Ok(()),
    }
}

/// Whether `ip` is on the public internet: not loopback, private, link-local, shared
/// (carrier-grade NAT), unspecified, broadcast, multicast or documentation space, in
/// IPv4 or IPv6 (an IPv4-mapped IPv6 address as its IPv4 one).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || (a == 100 && (64..128).contains(&b))
                || a == 0)
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public(IpAddr::V4(v4)),
            None => {
                !(v6.is_loopback()
                    || v6.is_unspecified()
                    || v6.is_multicast()
                    || v6.is_unique_local()
                    || v6.is_unicast_link_local())
            }
        },
    }
}

/// A resolver that answers only public addresses: what every delivery connects through
/// unless private networks are allowed.
struct PublicOnly;

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addresses: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| is_public(a.ip()))
                .collect();
            if addresses.is_empty() {
                let error: Box<dyn std::error::Error + Send + Sync> =
                    format!("{host} resolves to no public address").into();
                return Err(error);
            }
            Ok(Box::new(addresses.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_special_addresses_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "93.184.216.34",
            "1.1.1.1",
            "2606:4700:4700::1111",
            "::ffff:1.1.1.1",
        ] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
    }

    #[tokio::test]
    async fn registration_refuses_what_is_not_a_public_http_url() {
        for url in [
            "http://127.0.0.1:8080/hook",
            "http://[::1]/hook",
            "http://169.254.169.254/latest/meta-data",
            "http://localhost/hook",
            "ftp://example.com/hook",
            "not a url",
        ] {
            assert!(check_url(url, false).await.is_err(), "{url}");
        }
        assert!(check_url("http://127.0.0.1:8080/hook", true).await.is_ok());
        assert!(check_url("file:///etc/passwd", true).await.is_err());
    }
}
