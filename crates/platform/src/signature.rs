//! Timestamped HMAC signatures of HTTP bodies, the scheme Stripe signs its webhooks with
//! and oxcart signs its own with: a header `t=<unix time>,v1=<hex>[,v1=<hex>…]`, each
//! `v1` an HMAC-SHA256, keyed by the endpoint's secret, of `<t>.<body>`.
//!
//! The timestamp is signed with the body, so a captured delivery cannot be replayed
//! later than the receiver's tolerance; several `v1`s let a sender sign with an old and a
//! new secret while a secret is rolled over. Verifying compares in constant time.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

/// Why a signature was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    #[error("no signature header")]
    Missing,
    #[error("the signature header has no timestamp (t=) or no v1 signature")]
    Malformed,
    #[error("the signature's timestamp is outside the tolerance of {0:?}")]
    Stale(Duration),
    #[error("no v1 signature matches the body")]
    Mismatch,
}

/// The signature header for `body` at `timestamp` (Unix seconds).
pub fn sign(secret: &SecretString, timestamp: u64, body: &[u8]) -> String {
    let signature = signer(secret, timestamp, body).finalize().into_bytes();
    format!("t={timestamp},v1={}", hex::encode(signature))
}

/// The signature header for `body` now.
pub fn sign_now(secret: &SecretString, body: &[u8]) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    sign(secret, now, body)
}

/// Checks `header` against `body`: one `v1` must match, and `t` must be within
/// `tolerance` of `now`.
pub fn verify(
    secret: &SecretString,
    header: Option<&str>,
    body: &[u8],
    tolerance: Duration,
    now: SystemTime,
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = t.parse::<u64>().ok(),
            Some(("v1", hex)) => signatures.extend(hex::decode(hex).ok()),
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed)?;
    if signatures.is_empty() {
        return Err(SignatureError::Malformed);
    }
    let matches = signatures.iter().any(|signature| {
        signer(secret, timestamp, body)
            .verify_slice(signature)
            .is_ok()
    });
    if !matches {
        return Err(SignatureError::Mismatch);
    }
    let now = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    if now.abs_diff(timestamp) > tolerance.as_secs() {
        return Err(SignatureError::Stale(tolerance));
    }
    Ok(())
}

fn signer(secret: &SecretString, timestamp: u64, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose_secret().as_bytes())
        .expect("HMAC takes a key of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> SecretString {
        SecretString::from("whsec_test")
    }

    const BODY: &[u8] =
        br#"{"id":"evt_1","type":"payment_intent.succeeded","data":{"object":{"id":"pi_1"}}}"#;

    const FIVE_MINUTES: Duration = Duration::from_secs(300);

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    /// The signature as computed outside this code: `printf '1700000000.<body>' |
    /// openssl dgst -sha256 -hmac whsec_test`.
    #[test]
    fn the_signature_is_hmac_sha256_of_timestamp_dot_body() {
        assert_eq!(
            sign(&secret(), 1_700_000_000, BODY),
            "t=1700000000,v1=6d0a54250f996ff09caf2fd3057774f4cb0afdfce72782f2ca8bfd6f0a8234db"
        );
    }

    #[test]
    fn tampering_another_secret_staleness_and_garbage_are_refused() {
        let header = sign(&secret(), 1_700_000_000, BODY);
        let now = at(1_700_000_100);
        let check = |header: Option<&str>, body: &[u8], now| {
            verify(&secret(), header, body, FIVE_MINUTES, now)
        };
        assert_eq!(check(Some(&header), BODY, now), Ok(()));
        assert_eq!(
            check(Some(&header), b"{}", now),
            Err(SignatureError::Mismatch)
        );
        let other = sign(&SecretString::from("whsec_other"), 1_700_000_000, BODY);
        assert_eq!(
            check(Some(&other), BODY, now),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            check(Some(&header), BODY, at(1_700_000_301)),
            Err(SignatureError::Stale(FIVE_MINUTES))
        );
        assert_eq!(check(None, BODY, now), Err(SignatureError::Missing));
        assert_eq!(
            check(Some("v1=abcd"), BODY, now),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            check(Some("t=1700000000"), BODY, now),
            Err(SignatureError::Malformed)
        );
        // A rolled-over secret: the old one's signature beside the new one's.
        let rollover = format!("{header},v1={}", "00".repeat(32));
        assert_eq!(check(Some(&rollover), BODY, now), Ok(()));
    }
}
