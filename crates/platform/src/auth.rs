//! Authentication: Ed25519-signed JWTs, the signing key's life cycle, and the `Caller`
//! extractor every protected route takes.
//!
//! Tokens are signed with an asymmetric key so that, once services run apart, only the
//! users service holds the private key; the others verify with the public half, which
//! `/.well-known/jwks.json` publishes (the form an Istio `RequestAuthentication` reads).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::FromRequestParts;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use http::request::Parts;
use http::{HeaderValue, header};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::BoxError;
use crate::problem::{ApiError, ProblemKind};

const ISSUER: &str = "oxcart";
const AUDIENCE: &str = "oxcart";
const PEM_LABEL: &str = "PRIVATE KEY";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Customer,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Customer => "customer",
            Self::Admin => "admin",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "customer" => Some(Self::Customer),
            "admin" => Some(Self::Admin),
            _ => None,
        }
    }
}

/// The claims oxcart puts in an access token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: Uuid,
    pub role: Role,
    pub email: String,
    pub iat: i64,
    pub exp: i64,
    pub iss: String,
    pub aud: String,
    /// The session (sign-in) the token belongs to: what sign-out and a password change
    /// revoke. Absent from tokens that belong to none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<Uuid>,
}

/// The authenticated user behind a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub user_id: Uuid,
    pub role: Role,
    pub email: String,
    /// The session the token belongs to, if any.
    pub session: Option<Uuid>,
}

impl Caller {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// Whether the caller may see a resource owned by `owner`: its owner or an admin.
    pub fn may_access(&self, owner: Uuid) -> bool {
        self.is_admin() || self.user_id == owner
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read or write the signing key at {path}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("the signing key is not a PEM-encoded PKCS#8 Ed25519 private key")]
    Invalid,
    #[error("cannot generate a signing key")]
    Generate,
    #[error("cannot sign the token")]
    Sign(#[source] jsonwebtoken::errors::Error),
}

/// The Ed25519 key tokens are signed with.
pub struct SigningKey {
    pkcs8: Vec<u8>,
    public: Vec<u8>,
    kid: String,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    pub fn generate() -> Result<Self, KeyError> {
        let document = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new())
            .map_err(|_| KeyError::Generate)?;
        Self::from_pkcs8(document.as_ref().to_vec())
    }

    fn from_pkcs8(pkcs8: Vec<u8>) -> Result<Self, KeyError> {
        let pair =
            Ed25519KeyPair::from_pkcs8_maybe_unchecked(&pkcs8).map_err(|_| KeyError::Invalid)?;
        let public = pair.public_key().as_ref().to_vec();
        let digest = ring::digest::digest(&ring::digest::SHA256, &public);
        let kid = URL_SAFE_NO_PAD.encode(&digest.as_ref()[..12]);
        Ok(Self { pkcs8, public, kid })
    }

    /// Parses a `-----BEGIN PRIVATE KEY-----` document, as `openssl genpkey -algorithm
    /// ed25519` writes it.
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        let body: String = pem
            .lines()
            .map(str::trim)
            .skip_while(|line| *line != format!("-----BEGIN {PEM_LABEL}-----"))
            .skip(1)
            .take_while(|line| !line.starts_with("-----END"))
            .collect();
        let der = STANDARD.decode(body).map_err(|_| KeyError::Invalid)?;
        Self::from_pkcs8(der)
    }

    pub fn to_pem(&self) -> String {
        let encoded = STANDARD.encode(&self.pkcs8);
        let mut pem = format!("-----BEGIN {PEM_LABEL}-----\n");
        for chunk in encoded.as_bytes().chunks(64) {
            pem.push_str(&String::from_utf8_lossy(chunk));
            pem.push('\n');
        }
        pem.push_str(&format!("-----END {PEM_LABEL}-----\n"));
        pem
    }

    /// Reads the key at `path`, or generates one there (readable by the owner only) on
    /// first run, so tokens stay valid across restarts.
    pub fn load_or_generate(path: &Path) -> Result<Self, KeyError> {
        let io = |source| KeyError::Io {
            path: path.display().to_string(),
            source,
        };
        match std::fs::read_to_string(path) {
            Ok(pem) => Self::from_pem(&pem),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                let key = Self::generate()?;
                write_private(path, key.to_pem().as_bytes()).map_err(io)?;
                tracing::info!(path = %path.display(), kid = %key.kid, "generated a new token signing key");
                Ok(key)
            }
            Err(error) => Err(io(error)),
        }
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn issuer(&self, ttl: Duration) -> TokenIssuer {
        TokenIssuer {
            key: EncodingKey::from_ed_der(&self.pkcs8),
            kid: self.kid.clone(),
            ttl,
        }
    }

    pub fn verifier(&self) -> TokenVerifier {
        TokenVerifier::from_public_key(&self.public)
    }

    /// The public key as a JSON Web Key (RFC 8037).
    pub fn jwk(&self) -> serde_json::Value {
        serde_json::json!({
            "kty": "OKP",
            "crv": "Ed25519",
            "alg": "EdDSA",
            "use": "sig",
            "kid": self.kid,
            "x": URL_SAFE_NO_PAD.encode(&self.public),
        })
    }
}

fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

/// Signs access tokens.
pub struct TokenIssuer {
    key: EncodingKey,
    kid: String,
    ttl: Duration,
}

/// A freshly signed token and how long it lives.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub token: String,
    pub expires_in: Duration,
}

impl TokenIssuer {
    /// A token in no session: nothing but its expiry ends it.
    pub fn issue(
        &self,
        user_id: Uuid,
        role: Role,
        email: &str,
        now: DateTime<Utc>,
    ) -> Result<IssuedToken, KeyError> {
        self.issue_for(None, user_id, role, email, now)
    }

    /// A token of `session`: it stops working when the session is revoked.
    pub fn issue_in_session(
        &self,
        session: Uuid,
        user_id: Uuid,
        role: Role,
        email: &str,
        now: DateTime<Utc>,
    ) -> Result<IssuedToken, KeyError> {
        self.issue_for(Some(session), user_id, role, email, now)
    }

    /// How long the tokens it signs live.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    fn issue_for(
        &self,
        session: Option<Uuid>,
        user_id: Uuid,
        role: Role,
        email: &str,
        now: DateTime<Utc>,
    ) -> Result<IssuedToken, KeyError> {
        let ttl = i64::try_from(self.ttl.as_secs()).unwrap_or(i64::MAX);
        let claims = Claims {
            sub: user_id,
            role,
            email: email.to_owned(),
            iat: now.timestamp(),
            exp: now.timestamp().saturating_add(ttl),
            iss: ISSUER.to_owned(),
            aud: AUDIENCE.to_owned(),
            sid: session,
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        let token = jsonwebtoken::encode(&header, &claims, &self.key).map_err(KeyError::Sign)?;
        Ok(IssuedToken {
            token,
            expires_in: self.ttl,
        })
    }
}

/// Verifies access tokens; cheap to clone. Installed as a request extension so that the
/// `Caller` extractor works under any router state.
///
/// A token that verified is remembered until it expires: checking an Ed25519 signature
/// was the largest single cost of an authenticated read (about a sixth of a
/// `GET /api/orders/{id}`'s CPU), and a client sends the same token with every request.
/// A token is a signed, self-contained statement that holds until its `exp`, so
/// remembering the outcome changes nothing but the cost; a token that failed is never
/// remembered.
#[derive(Clone)]
pub struct TokenVerifier(Arc<Verifier>);

struct Verifier {
    key: DecodingKey,
    validation: Validation,
    /// Tokens that verified, with the caller and the second after which they no longer
    /// do (`exp` plus the leeway).
    verified: std::sync::Mutex<std::collections::HashMap<String, (Caller, i64)>>,
}

/// The most tokens remembered at once; past it, expired ones are forgotten, and if that
/// is not enough, all of them.
const REMEMBERED_TOKENS: usize = 4096;

impl TokenVerifier {
    pub fn from_public_key(public: &[u8]) -> Self {
        let key = DecodingKey::from_ed_der(public);
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "sub", "iss", "aud"]);
        validation.leeway = 30;
        Self(Arc::new(Verifier {
            key,
            validation,
            verified: std::sync::Mutex::default(),
        }))
    }

    /// From the `x` of the issuer's JSON Web Key (RFC 8037: the raw Ed25519 public key,
    /// base64url), as `/.well-known/jwks.json` publishes it: what a process that only
    /// verifies tokens (a Lambda function) is configured with.
    pub fn from_jwk_x(x: &str) -> Result<Self, KeyError> {
        let public = URL_SAFE_NO_PAD
            .decode(x.trim())
            .map_err(|_| KeyError::Invalid)?;
        if public.len() != 32 {
            return Err(KeyError::Invalid);
        }
        Ok(Self::from_public_key(&public))
    }

    pub fn verify(&self, token: &str) -> Result<Caller, jsonwebtoken::errors::Error> {
        self.verify_at(token, Utc::now().timestamp())
    }

    /// [`verify`](Self::verify) as of `now` (Unix seconds) for what was remembered.
    fn verify_at(&self, token: &str, now: i64) -> Result<Caller, jsonwebtoken::errors::Error> {
        let verifier = &*self.0;
        if let Ok(mut verified) = verifier.verified.lock()
            && let Some((caller, until)) = verified.get(token)
        {
            if now <= *until {
                return Ok(caller.clone());
            }
            verified.remove(token);
            return Err(jsonwebtoken::errors::ErrorKind::ExpiredSignature.into());
        }
        let claims =
            jsonwebtoken::decode::<Claims>(token, &verifier.key, &verifier.validation)?.claims;
        let caller = Caller {
            user_id: claims.sub,
            role: claims.role,
            email: claims.email,
            session: claims.sid,
        };
        let until = claims
            .exp
            .saturating_add(i64::try_from(verifier.validation.leeway).unwrap_or(0));
        if let Ok(mut verified) = verifier.verified.lock() {
            if verified.len() >= REMEMBERED_TOKENS {
                verified.retain(|_, (_, until)| now <= *until);
                if verified.len() >= REMEMBERED_TOKENS {
                    verified.clear();
                }
            }
            verified.insert(token.to_owned(), (caller.clone(), until));
        }
        Ok(caller)
    }
}

/// The token of an `Authorization: Bearer <token>` header; `None` for another scheme or
/// a malformed value.
pub fn bearer_token(value: &HeaderValue) -> Option<&str> {
    value
        .to_str()
        .ok()
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
}

fn unauthorized(detail: &str, invalid: bool) -> ApiError {
    let challenge = if invalid {
        r#"Bearer realm="oxcart", error="invalid_token""#
    } else {
        r#"Bearer realm="oxcart""#
    };
    ApiError::new(ProblemKind::Unauthorized)
        .with_detail(detail)
        .with_header(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(challenge),
        )
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let verifier = parts.extensions.get::<TokenVerifier>().ok_or_else(|| {
            ApiError::new(ProblemKind::Internal).with_source("no TokenVerifier extension installed")
        })?;
        let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
            return Err(unauthorized("this endpoint needs a bearer token", false));
        };
        let token = bearer_token(value).ok_or_else(|| {
            unauthorized("the Authorization header must be `Bearer <token>`", true)
        })?;
        let caller = verifier.verify(token).map_err(|error| {
            let detail = match error.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => "the token has expired",
                _ => "the token is not valid",
            };
            unauthorized(detail, true)
        })?;
        if let (Some(session), Some(RevokedSessions(revocations))) =
            (caller.session, parts.extensions.get::<RevokedSessions>())
        {
            match revocations.is_revoked(session).await {
                Ok(false) => {}
                Ok(true) => {
                    return Err(unauthorized(
                        "the session has ended (signed out, or the password changed); sign in again",
                        true,
                    ));
                }
                // As with rate limits: an unreachable store must not lock every caller
                // out. The token still expires on time.
                Err(error) => {
                    tracing::warn!(error = %error, "cannot check whether the session was revoked; accepting the token");
                }
            }
        }
        Ok(caller)
    }
}

/// Sessions ended before their access tokens expire: by sign-out, by a password change,
/// or because a refresh token was used twice (someone else has a copy). An access token
/// is a signed statement that holds until its `exp`; this is the list that overrules
/// it, kept only that long. In one process it is memory ([`MemoryRevocations`]); where
/// services run apart, Redis, so that a sign-out reaches every service at once.
#[async_trait::async_trait]
pub trait Revocations: Send + Sync {
    /// Ends `sessions`, remembering it for `ttl` (the access tokens' lifetime: past it
    /// their tokens have expired anyway).
    async fn revoke(&self, sessions: &[Uuid], ttl: Duration) -> Result<(), BoxError>;
    /// Whether `session` has been ended.
    async fn is_revoked(&self, session: Uuid) -> Result<bool, BoxError>;
}

/// Revocations held in this process's memory.
#[derive(Default)]
pub struct MemoryRevocations(std::sync::Mutex<std::collections::HashMap<Uuid, std::time::Instant>>);

#[async_trait::async_trait]
impl Revocations for MemoryRevocations {
    async fn revoke(&self, sessions: &[Uuid], ttl: Duration) -> Result<(), BoxError> {
        let now = std::time::Instant::now();
        let mut revoked = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        revoked.retain(|_, until| *until > now);
        for session in sessions {
            revoked.insert(*session, now + ttl);
        }
        Ok(())
    }

    async fn is_revoked(&self, session: Uuid) -> Result<bool, BoxError> {
        let revoked = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(revoked
            .get(&session)
            .is_some_and(|until| *until > std::time::Instant::now()))
    }
}

/// The [`Revocations`] every `Caller` is checked against, installed as a request
/// extension beside the [`TokenVerifier`]. Without it, tokens end only by expiring.
#[derive(Clone)]
pub struct RevokedSessions(pub Arc<dyn Revocations>);

/// A caller with the admin role; anyone else gets 403.
#[derive(Debug, Clone)]
pub struct Admin(pub Caller);

impl<S: Send + Sync> FromRequestParts<S> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let caller = Caller::from_request_parts(parts, state).await?;
        if caller.is_admin() {
            Ok(Admin(caller))
        } else {
            Err(ApiError::new(ProblemKind::Forbidden)
                .with_detail("this action needs the admin role"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_tokens_verify_and_carry_the_caller() {
        let key = SigningKey::generate().unwrap();
        let user = Uuid::new_v4();
        let token = key
            .issuer(Duration::from_secs(60))
            .issue(user, Role::Admin, "a@b.co", Utc::now())
            .unwrap();
        let caller = key.verifier().verify(&token.token).unwrap();
        assert_eq!(
            caller,
            Caller {
                user_id: user,
                role: Role::Admin,
                email: "a@b.co".into(),
                session: None,
            }
        );
    }

    #[test]
    fn expired_and_foreign_tokens_are_rejected() {
        let key = SigningKey::generate().unwrap();
        let issuer = key.issuer(Duration::from_secs(60));
        let old = issuer
            .issue(
                Uuid::new_v4(),
                Role::Customer,
                "a@b.co",
                Utc::now() - chrono::Duration::hours(2),
            )
            .unwrap();
        assert!(key.verifier().verify(&old.token).is_err());
        let other = SigningKey::generate().unwrap();
        let forged = other
            .issuer(Duration::from_secs(60))
            .issue(Uuid::new_v4(), Role::Admin, "x@y.co", Utc::now())
            .unwrap();
        assert!(key.verifier().verify(&forged.token).is_err());
    }

    #[test]
    fn a_remembered_token_still_expires() {
        let key = SigningKey::generate().unwrap();
        // Issued 85 s ago for 60 s: past its `exp`, but within the 30 s leeway.
        let token = key
            .issuer(Duration::from_secs(60))
            .issue(
                Uuid::new_v4(),
                Role::Customer,
                "a@b.co",
                Utc::now() - chrono::Duration::seconds(85),
            )
            .unwrap();
        let verifier = key.verifier();
        let now = Utc::now().timestamp();
        assert!(verifier.verify_at(&token.token, now).is_ok());
        assert!(verifier.verify_at(&token.token, now).is_ok(), "remembered");
        assert!(
            verifier.verify_at(&token.token, now + 10).is_err(),
            "a remembered token outlived its expiry"
        );
        // A tampered token is not mistaken for the remembered one.
        let mut tampered = token.token.clone();
        tampered.push('x');
        assert!(verifier.verify_at(&tampered, now).is_err());
    }

    #[test]
    fn a_verifier_from_the_published_jwk_accepts_the_keys_tokens_only() {
        let key = SigningKey::generate().unwrap();
        let x = key.jwk()["x"].as_str().unwrap().to_owned();
        let verifier = TokenVerifier::from_jwk_x(&x).unwrap();
        let token = key
            .issuer(Duration::from_secs(60))
            .issue(Uuid::new_v4(), Role::Customer, "a@b.co", Utc::now())
            .unwrap();
        assert_eq!(verifier.verify(&token.token).unwrap().role, Role::Customer);
        let other = SigningKey::generate().unwrap().verifier();
        assert!(other.verify(&token.token).is_err());
        assert!(TokenVerifier::from_jwk_x("not base64!").is_err());
        assert!(TokenVerifier::from_jwk_x(&x[..20]).is_err());
    }

    #[test]
    fn pem_round_trips_and_persists() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/jwt.pem");
        let first = SigningKey::load_or_generate(&path).unwrap();
        let second = SigningKey::load_or_generate(&path).unwrap();
        assert_eq!(first.kid(), second.kid());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(SigningKey::from_pem("not a key").is_err());
    }
}
