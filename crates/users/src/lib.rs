//! Users: registration, password sign-in, roles and access tokens.
//!
//! # Layout
//! - [`domain`]: what a valid e-mail, password and registration are.
//! - [`store`]: the `users` table.
//! - [`sessions`]: the `refresh_tokens` table: sessions, and rotating their tokens.
//! - [`http`]: `POST /api/users`, `POST /api/auth/token` (sign-in), `/api/auth/refresh`,
//!   `/api/auth/sign-out`, `GET /api/users/me`, `POST /api/users/me/password`,
//!   `GET /api/users/{id}` and the JWKS document other services verify tokens with.
//!
//! A sign-in starts a session: a short-lived access token (a JWT other services verify
//! alone) and a refresh token that gets the next one, rotated at each use. Sign-out and a
//! password change end sessions; their access tokens are refused from then on through
//! [`Revocations`], not only when they expire.
//!
//! Passwords are hashed with Argon2id (19 MiB, 2 passes: the OWASP baseline) on the
//! blocking pool, so a burst of sign-ins slows sign-ins but not the rest of the API.

pub mod domain;
pub mod http;
pub mod sessions;
pub mod store;

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use oxcart_db::{self as db, Db};
use oxcart_platform::auth::{
    IssuedToken, KeyError, MemoryRevocations, Revocations, Role, SigningKey, TokenIssuer,
};
use oxcart_platform::metrics::Metrics;
use oxcart_platform::service::{About, Parts};
use oxcart_platform::{FieldError, ProblemKind, ServiceError};
use prometheus::IntCounter;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::{Email, Password, Registration, User};
use crate::sessions::{Rotation, SessionStore};
use crate::store::UserStore;

/// The `[users]` section of the configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UsersConfig {
    /// Lifetime of an access token. Short, since a stolen one works until it expires
    /// wherever revocations are not shared.
    #[serde(with = "humantime_serde")]
    pub token_ttl: Duration,
    /// Lifetime of a refresh token: how long a session lasts without use.
    #[serde(with = "humantime_serde")]
    pub refresh_ttl: Duration,
    /// How long a password-reset code sent by e-mail works.
    #[serde(with = "humantime_serde")]
    pub reset_ttl: Duration,
    /// The page of the shop where a customer chooses a new password, with `{token}`
    /// where the code goes (`https://shop.example.com/reset-password?token={token}`): the
    /// e-mail links to it. Unset: the e-mail gives the code, to send to
    /// `POST /api/auth/password-reset/confirm`.
    pub reset_url: Option<String>,
}

impl Default for UsersConfig {
    fn default() -> Self {
        Self {
            token_ttl: Duration::from_secs(15 * 60),
            refresh_ttl: Duration::from_secs(30 * 24 * 3600),
            reset_ttl: Duration::from_secs(3600),
            reset_url: None,
        }
    }
}

/// A password-reset e-mail to send: to whom, the code, and how long it works.
#[derive(Debug, Clone)]
pub struct ResetMail {
    pub email: String,
    pub name: Option<String>,
    pub token: String,
    /// The configured page with the code in it, if there is one.
    pub link: Option<String>,
    pub expires_in: Duration,
}

/// Where password-reset e-mails go: the process's mailer, through the account
/// templates (`oxcart_notifications`).
#[async_trait::async_trait]
pub trait ResetMailer: Send + Sync + 'static {
    async fn send(&self, mail: ResetMail) -> Result<(), oxcart_platform::BoxError>;
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the request has invalid fields")]
    Invalid(Vec<FieldError>),
    #[error("an account with this e-mail already exists")]
    EmailTaken,
    #[error("the e-mail or password is wrong")]
    InvalidCredentials,
    #[error("the refresh token is unknown, expired or revoked; sign in again")]
    InvalidRefresh,
    #[error("the current password is wrong")]
    WrongPassword,
    #[error("the reset code is unknown, used or expired")]
    InvalidReset,
    #[error("no such user")]
    NotFound,
    #[error("password resets are not available: no mailer to send the code")]
    ResetUnavailable,
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
            Self::Invalid(_) | Self::WrongPassword | Self::InvalidReset => ProblemKind::Validation,
            Self::EmailTaken => ProblemKind::Conflict,
            Self::InvalidCredentials | Self::InvalidRefresh => ProblemKind::Unauthorized,
            Self::NotFound => ProblemKind::NotFound,
            Self::ResetUnavailable => ProblemKind::Unavailable,
            Self::Storage(e) => ProblemKind::of_storage(e),
            Self::Hashing(_) | Self::Token(_) | Self::Corrupt(_) => ProblemKind::Internal,
        }
    }

    fn field_errors(&self) -> Vec<FieldError> {
        match self {
            Self::Invalid(errors) => errors.clone(),
            Self::EmailTaken => vec![FieldError::body(&["email"], "is already registered")],
            Self::WrongPassword => vec![FieldError::body(
                &["currentPassword"],
                "is not the account's password",
            )],
            Self::InvalidReset => vec![FieldError::body(
                &["token"],
                "is unknown, was used already, or has expired: ask for another",
            )],
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
/// The users service on `db`, issuing tokens signed with `key` and ending sessions in
/// `revocations` (which every process's token checks read): its routes.
pub fn build(
    db: Db,
    key: Arc<SigningKey>,
    revocations: Arc<dyn Revocations>,
    reset_mailer: Option<Arc<dyn ResetMailer>>,
    config: &UsersConfig,
    metrics: &Metrics,
) -> Parts {
    let mut users = Users::new(db, key, config).with_revocations(revocations);
    users.reset_mailer = reset_mailer;
    metrics.register(Box::new(users.password_checks.clone()));
    Parts::routes(http::router(users))
}

#[derive(Clone)]
pub struct Users {
    store: UserStore,
    sessions: SessionStore,
    issuer: Arc<TokenIssuer>,
    key: Arc<SigningKey>,
    revocations: Arc<dyn Revocations>,
    refresh_ttl: Duration,
    reset_ttl: Duration,
    reset_url: Option<String>,
    /// Where reset codes are sent; without one, resets are refused.
    reset_mailer: Option<Arc<dyn ResetMailer>>,
    /// `password_checks_total`: Argon2 verifications run, the cost a sign-in limit saves.
    password_checks: IntCounter,
}

/// What a sign-in, a refresh or a password change hands the client.
#[derive(Debug, Clone)]
pub struct Session {
    pub access: IssuedToken,
    /// The opaque refresh token, shown to the client once.
    pub refresh_token: String,
    pub refresh_expires_in: Duration,
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
    /// The service, ending sessions in a revocation list of its own; a process that
    /// serves requests gives it the shared one ([`with_revocations`](Self::with_revocations)).
    pub fn new(db: Db, key: Arc<SigningKey>, config: &UsersConfig) -> Self {
        Self {
            store: UserStore::new(db.clone()),
            sessions: SessionStore::new(db),
            issuer: Arc::new(key.issuer(config.token_ttl)),
            key,
            revocations: Arc::new(MemoryRevocations::default()),
            refresh_ttl: config.refresh_ttl,
            reset_ttl: config.reset_ttl,
            reset_url: config.reset_url.clone(),
            reset_mailer: None,
            password_checks: IntCounter::new(
                "password_checks_total",
                "Passwords checked against their Argon2 hash at sign-in",
            )
            .expect("valid metric definition"),
        }
    }

    pub fn with_revocations(mut self, revocations: Arc<dyn Revocations>) -> Self {
        self.revocations = revocations;
        self
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

    /// Checks an e-mail and password and starts a session.
    pub async fn sign_in(&self, email: &str, password: String) -> Result<Session, Error> {
        // An e-mail that cannot exist still costs one hash, like any other wrong one.
        let found = match Email::parse(email) {
            Ok(email) => self.store.by_email(email.as_str()).await?,
            Err(_) => None,
        };
        let stored = found
            .as_ref()
            .map_or_else(|| DECOY_HASH.clone(), |(_, hash)| hash.clone());
        let matches = self.check_password(password, stored).await?;
        match found {
            Some((user, _)) if matches => self.start_session(&user).await,
            _ => Err(Error::InvalidCredentials),
        }
    }

    async fn check_password(&self, password: String, stored: String) -> Result<bool, Error> {
        self.password_checks.inc();
        blocking(move || verify(&password, &stored)).await
    }

    async fn start_session(&self, user: &User) -> Result<Session, Error> {
        let family = Uuid::now_v7();
        let refresh_token = sessions::new_token();
        let now = chrono::Utc::now();
        self.sessions
            .start(
                family,
                user.id,
                &sessions::digest(&refresh_token),
                now,
                now + self.refresh_ttl,
            )
            .await?;
        self.session(family, user, refresh_token, now)
    }

    fn session(
        &self,
        family: Uuid,
        user: &User,
        refresh_token: String,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Session, Error> {
        let access = self
            .issuer
            .issue_in_session(family, user.id, user.role, &user.email, now)?;
        Ok(Session {
            access,
            refresh_token,
            refresh_expires_in: self.refresh_ttl,
        })
    }

    /// Exchanges a refresh token for a new access token and the session's next refresh
    /// token. A token already exchanged ends its session: someone else holds a copy.
    pub async fn refresh(&self, token: &str) -> Result<Session, Error> {
        let next = sessions::new_token();
        let now = chrono::Utc::now();
        let rotation = self
            .sessions
            .rotate(
                &sessions::digest(token),
                &sessions::digest(&next),
                now,
                now + self.refresh_ttl,
            )
            .await?;
        match rotation {
            Rotation::Rotated { family, user_id } => {
                let user = self
                    .store
                    .by_id(user_id)
                    .await?
                    .ok_or(Error::InvalidRefresh)?;
                self.session(family, &user, next, now)
            }
            Rotation::Reused { family } => {
                tracing::warn!(session = %family, "a retired refresh token was presented again; the session is ended");
                self.end_sessions(&[family]).await;
                Err(Error::InvalidRefresh)
            }
            Rotation::Invalid => Err(Error::InvalidRefresh),
        }
    }

    /// Ends the session of `token`: its refresh tokens stop working, and so do its access
    /// tokens. Unknown tokens are ignored: signing out twice is not an error.
    pub async fn sign_out(&self, token: &str) -> Result<(), Error> {
        let ended = self
            .sessions
            .end(&sessions::digest(token), chrono::Utc::now())
            .await?;
        if let Some(family) = ended {
            self.end_sessions(&[family]).await;
        }
        Ok(())
    }

    /// Changes `user_id`'s password after checking the current one, ends every session
    /// they have, and starts a new one for the caller.
    pub async fn change_password(
        &self,
        user_id: Uuid,
        current: String,
        new: Password,
    ) -> Result<Session, Error> {
        let (user, stored) = self
            .store
            .by_id_with_hash(user_id)
            .await?
            .ok_or(Error::NotFound)?;
        if !self.check_password(current, stored).await? {
            return Err(Error::WrongPassword);
        }
        let new = new.expose().to_owned();
        let password_hash = blocking(move || hash(&new)).await??;
        let mut tx = self.store.db().begin().await?;
        UserStore::set_password(&mut tx, user.id, &password_hash).await?;
        let ended = SessionStore::end_all(&mut tx, user.id, chrono::Utc::now()).await?;
        tx.commit().await?;
        self.end_sessions(&ended).await;
        tracing::info!(user_id = %user.id, sessions_ended = ended.len(), "password changed");
        self.start_session(&user).await
    }

    /// Sends a password-reset code to `email`, if it is an account's. The answer is the
    /// same either way, and comes before the e-mail is sent, so that neither it nor its
    /// timing tells whether the address has an account.
    pub async fn request_reset(&self, email: &str) -> Result<(), Error> {
        let Some(mailer) = self.reset_mailer.clone() else {
            return Err(Error::ResetUnavailable);
        };
        let Some((user, _)) = self.store.by_email(email).await? else {
            tracing::info!("password reset asked for an address with no account");
            return Ok(());
        };
        let token = sessions::new_token();
        let now = chrono::Utc::now();
        let expires = now + chrono::Duration::from_std(self.reset_ttl).unwrap_or_default();
        let mut tx = self.store.db().begin().await?;
        db::query(
            "INSERT INTO password_resets (token_hash, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(sessions::digest(&token))
        .bind(user.id.to_string())
        .bind(db::timestamp(now))
        .bind(db::timestamp(expires))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        let mail = ResetMail {
            email: user.email.clone(),
            name: user.name.clone(),
            link: self
                .reset_url
                .as_ref()
                .map(|url| url.replace("{token}", &token)),
            token,
            expires_in: self.reset_ttl,
        };
        let user_id = user.id;
        tokio::spawn(async move {
            match mailer.send(mail).await {
                Ok(()) => tracing::info!(user_id = %user_id, "password reset code sent"),
                Err(error) => {
                    tracing::warn!(user_id = %user_id, %error, "cannot send the password reset code");
                }
            }
        });
        Ok(())
    }

    /// Sets a new password with a reset code: once per code, before it expires. Every
    /// session of the account ends, every other code is retired, and the answer starts a
    /// new session.
    pub async fn confirm_reset(&self, token: &str, new: Password) -> Result<Session, Error> {
        let now = chrono::Utc::now();
        let new = new.expose().to_owned();
        let password_hash = blocking(move || hash(&new)).await??;
        let mut tx = self.store.db().begin().await?;
        let user_id: Option<String> = db::query_scalar(
            "UPDATE password_resets SET used_at = $1 \
             WHERE token_hash = $2 AND used_at IS NULL AND expires_at > $1 RETURNING user_id",
        )
        .bind(db::timestamp(now))
        .bind(sessions::digest(token))
        .fetch_optional(&mut *tx)
        .await?;
        let user_id: Uuid = user_id
            .ok_or(Error::InvalidReset)?
            .parse()
            .map_err(|_| Error::Corrupt("password reset".into()))?;
        db::query("UPDATE password_resets SET used_at = $1 WHERE user_id = $2 AND used_at IS NULL")
            .bind(db::timestamp(now))
            .bind(user_id.to_string())
            .execute(&mut *tx)
            .await?;
        UserStore::set_password(&mut tx, user_id, &password_hash).await?;
        let ended = SessionStore::end_all(&mut tx, user_id, now).await?;
        tx.commit().await?;
        self.end_sessions(&ended).await;
        tracing::info!(user_id = %user_id, sessions_ended = ended.len(), "password reset");
        let user = self.get(user_id).await?;
        self.start_session(&user).await
    }

    /// Refuses the access tokens of `families` from now on. Their refresh tokens are
    /// already revoked in the table, which is what counts: if the revocation list cannot
    /// be reached, the access tokens still expire within `token_ttl`.
    async fn end_sessions(&self, families: &[Uuid]) {
        if families.is_empty() {
            return;
        }
        let ttl = self.issuer.ttl() + Duration::from_secs(60);
        if let Err(error) = self.revocations.revoke(families, ttl).await {
            tracing::warn!(error = %error, "cannot record ended sessions; their access tokens last until they expire");
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
