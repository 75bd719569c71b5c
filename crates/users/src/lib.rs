//! Users: registration, password sign-in, roles and access tokens.
//!
//! # Layout
//! - [`domain`]: what a valid e-mail, password and registration are.
//! - [`store`]: the `users` table.
//! - [`http`]: `POST /api/users`, `POST /api/auth/token`, `GET /api/users/me`,
//!   `GET /api/users/{id}` and the JWKS document other services verify tokens with.
//!
//! Passwords are hashed with Argon2id (19 MiB, 2 passes: the OWASP baseline) on the
//! blocking pool, so a burst of sign-ins slows sign-ins but not the rest of the API.

pub mod domain;
pub mod http;
pub mod store;

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use oxcart_db::{self as db, Db};
use oxcart_platform::auth::{IssuedToken, KeyError, Role, SigningKey, TokenIssuer};
use oxcart_platform::metrics::Metrics;
use oxcart_platform::service::{About, Parts};
use oxcart_platform::{FieldError, ProblemKind, ServiceError};
use prometheus::IntCounter;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::{Email, Registration, User};
use crate::store::UserStore;

/// The `[users]` section of the configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UsersConfig {
    /// Lifetime of an access token.
    #[serde(with = "humantime_serde")]
    pub token_ttl: Duration,
}

impl Default for UsersConfig {
    fn default() -> Self {
        Self {
            token_ttl: Duration::from_secs(3600),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the request has invalid fields")]
    Invalid(Vec<FieldError>),
    #[error("an account with this e-mail already exists")]
    EmailTaken,
    #[error("the e-mail or password is wrong")]
    InvalidCredentials,
    #[error("no such user")]
    NotFound,
    #[error("password hashing failed: {0}")]
    Hashing(String),
    #[error("cannot sign the token")]
    Token(#[from] KeyError),
    #[error("the users table holds an unreadable {0}")]
    Corrupt(String),
    #[error("storage failed")]
    Storage(#[from] sqlx::Error),
}

impl ServiceError for Error {
    fn kind(&self) -> ProblemKind {
        match self {
            Self::Invalid(_) => ProblemKind::Validation,
            Self::EmailTaken => ProblemKind::Conflict,
            Self::InvalidCredentials => ProblemKind::Unauthorized,
            Self::NotFound => ProblemKind::NotFound,
            Self::Storage(e) => ProblemKind::of_storage(e),
            Self::Hashing(_) | Self::Token(_) | Self::Corrupt(_) => ProblemKind::Internal,
        }
    }

    fn field_errors(&self) -> Vec<FieldError> {
        match self {
            Self::Invalid(errors) => errors.clone(),
            Self::EmailTaken => vec![FieldError::body(&["email"], "is already registered")],
            _ => Vec::new(),
        }
    }
}

/// The users service; cheap to clone.
pub const ABOUT: About = About {
    name: "users",
    description: "Accounts and access tokens.",
    openapi: || http::routes().into_openapi(),
};

/// The users service on `db`, issuing tokens signed with `key`: its routes.
pub fn build(db: Db, key: Arc<SigningKey>, config: &UsersConfig, metrics: &Metrics) -> Parts {
    let users = Users::new(db, key, config);
    metrics.register(Box::new(users.password_checks.clone()));
    Parts::routes(http::router(users))
}

#[derive(Clone)]
pub struct Users {
    store: UserStore,
    issuer: Arc<TokenIssuer>,
    key: Arc<SigningKey>,
    /// `password_checks_total`: Argon2 verifications run, the cost a sign-in limit saves.
    password_checks: IntCounter,
}

/// A hash to verify against when the e-mail is unknown, so that a wrong e-mail takes as
/// long to refuse as a wrong password and response times do not reveal who has an account.
static DECOY_HASH: LazyLock<String> =
    LazyLock::new(|| hash(&format!("decoy-{}", Uuid::new_v4())).unwrap_or_default());

fn hash(password: &str) -> Result<String, Error> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| Error::Hashing(e.to_string()))
}

fn verify(password: &str, stored: &str) -> bool {
    PasswordHash::new(stored).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Error::Hashing(e.to_string()))
}

impl Users {
    pub fn new(db: Db, key: Arc<SigningKey>, config: &UsersConfig) -> Self {
        Self {
            store: UserStore::new(db),
            issuer: Arc::new(key.issuer(config.token_ttl)),
            key,
            password_checks: IntCounter::new(
                "password_checks_total",
                "Passwords checked against their Argon2 hash at sign-in",
            )
            .expect("valid metric definition"),
        }
    }

    pub async fn register(&self, registration: Registration) -> Result<User, Error> {
        self.create(registration, Role::Customer).await
    }

    /// Creates an administrator: the first one comes from `oxcart users create-admin`.
    pub async fn create_admin(&self, registration: Registration) -> Result<User, Error> {
        self.create(registration, Role::Admin).await
    }

    async fn create(&self, registration: Registration, role: Role) -> Result<User, Error> {
        let password = registration.password.expose().to_owned();
        let password_hash = blocking(move || hash(&password)).await??;
        let user = User {
            id: Uuid::now_v7(),
            email: registration.email.as_str().to_owned(),
            name: registration.name,
            role,
            created_at: db::now(),
        };
        self.store.insert(&user, &password_hash).await?;
        tracing::info!(user_id = %user.id, role = role.as_str(), "user registered");
        Ok(user)
    }

    /// Checks an e-mail and password and issues an access token.
    pub async fn sign_in(&self, email: &str, password: String) -> Result<IssuedToken, Error> {
        // An e-mail that cannot exist still costs one hash, like any other wrong one.
        let found = match Email::parse(email) {
            Ok(email) => self.store.by_email(email.as_str()).await?,
            Err(_) => None,
        };
        let stored = found
            .as_ref()
            .map_or_else(|| DECOY_HASH.clone(), |(_, hash)| hash.clone());
        self.password_checks.inc();
        let matches = blocking(move || verify(&password, &stored)).await?;
        match found {
            Some((user, _)) if matches => {
                Ok(self
                    .issuer
                    .issue(user.id, user.role, &user.email, chrono::Utc::now())?)
            }
            _ => Err(Error::InvalidCredentials),
        }
    }

    pub async fn get(&self, id: Uuid) -> Result<User, Error> {
        self.store.by_id(id).await?.ok_or(Error::NotFound)
    }

    /// The token-signing public key as a JWK set.
    pub fn jwks(&self) -> serde_json::Value {
        serde_json::json!({ "keys": [self.key.jwk()] })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_are_salted() {
        let a = hash("correct horse").unwrap();
        let b = hash("correct horse").unwrap();
        assert_ne!(a, b);
        assert!(a.starts_with("$argon2id$"));
        assert!(verify("correct horse", &a));
        assert!(!verify("wrong horse", &a));
        assert!(!verify("correct horse", "not a hash"));
    }
}
