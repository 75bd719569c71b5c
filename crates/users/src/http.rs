//! The users HTTP API.

use axum::extract::State;
use axum::response::IntoResponse;
use chrono::{DateTime, Utc};
use http::{StatusCode, header};
use oxcart_platform::auth::{Caller, Role};
use oxcart_platform::http::{Json, Path};
use oxcart_platform::limit::Client;
use oxcart_platform::{ApiError, FieldError};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::domain::{Password, Registration, User};
use crate::{Error, Session, Users};

pub const TAG: &str = "users";

pub fn router(users: Users) -> OpenApiRouter {
    routes().with_state(users)
}

/// The routes with their OpenAPI description, before the service is attached.
pub fn routes() -> OpenApiRouter<Users> {
    OpenApiRouter::new()
        .routes(routes!(register))
        .routes(routes!(sign_in))
        .routes(routes!(refresh))
        .routes(routes!(sign_out))
        .routes(routes!(me))
        .routes(routes!(change_password))
        .routes(routes!(request_reset))
        .routes(routes!(confirm_reset))
        .routes(routes!(get_user))
        .routes(routes!(jwks))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegisterRequest {
    /// The e-mail to sign in with; matched case-insensitively. The domain must be a
    /// public one (`ada@localhost` is refused).
    #[schema(example = "ada@example.com", max_length = 254, format = Email, pattern = r"^[^@\s]+@[^@\s.]+(\.[^@\s.]+)+$")]
    pub email: String,
    #[schema(
        example = "correct horse battery staple",
        min_length = 8,
        max_length = 128
    )]
    pub password: String,
    /// Display name, used in e-mails.
    #[serde(default)]
    #[schema(
        example = "Ada Lovelace",
        max_length = 100,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*$"
    )]
    pub name: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TokenRequest {
    #[schema(example = "ada@example.com")]
    pub email: String,
    #[schema(example = "correct horse battery staple")]
    pub password: String,
}

/// An account.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserView {
    pub id: Uuid,
    pub email: String,
    pub name: Option<String>,
    pub role: Role,
    pub created_at: DateTime<Utc>,
}

impl From<User> for UserView {
    fn from(user: User) -> Self {
        Self {
            id: user.id,
            email: user.email,
            name: user.name,
            role: user.role,
            created_at: user.created_at,
        }
    }
}

/// A refresh token, to exchange or to end its session.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RefreshRequest {
    #[schema(example = "4q0dXJ0V7m3mXy2w5hM3p2sWq7Q0r1oE3m7Nn8b9c0A")]
    pub refresh_token: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PasswordChange {
    #[schema(example = "correct horse battery staple")]
    pub current_password: String,
    #[schema(
        example = "a longer and newer passphrase",
        min_length = 8,
        max_length = 128
    )]
    pub new_password: String,
}

/// A session's tokens.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenResponse {
    /// Send as `Authorization: Bearer <accessToken>`.
    pub access_token: String,
    #[schema(example = "Bearer")]
    pub token_type: TokenType,
    /// Seconds until the access token expires.
    #[schema(example = 900)]
    pub expires_in: u64,
    /// Exchange at `POST /api/auth/refresh` for the next pair, once: each use retires
    /// it. Keep it secret; `POST /api/auth/sign-out` ends the session.
    pub refresh_token: String,
    /// Seconds until the refresh token expires unused.
    #[schema(example = 2592000)]
    pub refresh_expires_in: u64,
}

impl From<Session> for TokenResponse {
    fn from(session: Session) -> Self {
        Self {
            access_token: session.access.token,
            token_type: TokenType::Bearer,
            expires_in: session.access.expires_in.as_secs(),
            refresh_token: session.refresh_token,
            refresh_expires_in: session.refresh_expires_in.as_secs(),
        }
    }
}

/// Tokens are never cached, by browsers or proxies.
fn tokens(session: Session) -> impl IntoResponse {
    (
        [(header::CACHE_CONTROL, "no-store")],
        Json(TokenResponse::from(session)),
    )
}

#[derive(Debug, Serialize, ToSchema)]
pub enum TokenType {
    Bearer,
}

/// Register a customer account.
#[utoipa::path(
    post,
    path = "/api/users",
    tag = TAG,
    request_body = RegisterRequest,
    responses(
        (status = 201, description = "Registered", body = UserView,
            headers(("location" = String, description = "URL of the new account"))),
        (status = 409, description = "The e-mail is already registered"),
    )
)]
async fn register(
    State(users): State<Users>,
    Json(request): Json<RegisterRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let registration = Registration::parse(&request.email, request.password, request.name)
        .map_err(Error::Invalid)?;
    let user = users.register(registration).await?;
    let location = format!("/api/users/{}", user.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(UserView::from(user)),
    ))
}

/// Exchange an e-mail and password for an access token.
#[utoipa::path(
    post,
    path = "/api/auth/token",
    tag = TAG,
    request_body = TokenRequest,
    responses(
        (status = 200, description = "Signed in", body = TokenResponse),
        (status = 401, description = "The e-mail or password is wrong"),
        (status = 429, description = "Too many attempts for this e-mail or from this address",
            headers(("retry-after" = u64, description = "Seconds until the next attempt is allowed"))),
    )
)]
async fn sign_in(
    State(users): State<Users>,
    client: Client,
    Json(request): Json<TokenRequest>,
) -> Result<impl IntoResponse, ApiError> {
    // Before the password is checked: a refused guess costs no hash.
    client.sign_in_attempt(&request.email).await?;
    Ok(tokens(
        users.sign_in(&request.email, request.password).await?,
    ))
}

/// Exchange a refresh token for a new access token and the session's next refresh token.
///
/// Each refresh token works once. Presenting one that was already exchanged ends the
/// session (someone else holds a copy): both holders must sign in again.
#[utoipa::path(
    post,
    path = "/api/auth/refresh",
    tag = TAG,
    request_body = RefreshRequest,
    responses(
        (status = 200, description = "The session's next tokens", body = TokenResponse),
        (status = 401, description = "The refresh token is unknown, expired, revoked or was used already"),
    )
)]
async fn refresh(
    State(users): State<Users>,
    Json(request): Json<RefreshRequest>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(tokens(users.refresh(&request.refresh_token).await?))
}

/// Sign out: end the session of a refresh token. Its refresh tokens stop working at once,
/// and so do its access tokens. An unknown token is not an error.
#[utoipa::path(
    post,
    path = "/api/auth/sign-out",
    tag = TAG,
    request_body = RefreshRequest,
    responses((status = 204, description = "The session is over"))
)]
async fn sign_out(
    State(users): State<Users>,
    Json(request): Json<RefreshRequest>,
) -> Result<StatusCode, ApiError> {
    users.sign_out(&request.refresh_token).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Change the caller's password. Every session of the account ends (other devices are
/// signed out); the answer starts a new one for the caller.
#[utoipa::path(
    post,
    path = "/api/users/me/password",
    tag = TAG,
    security(("bearer" = [])),
    request_body = PasswordChange,
    responses(
        (status = 200, description = "Changed; the caller's new session", body = TokenResponse),
        (status = 404, description = "The account no longer exists"),
        (status = 422, description = "`currentPassword` is wrong, or `newPassword` is not a valid password"),
    )
)]
async fn change_password(
    State(users): State<Users>,
    caller: Caller,
    client: Client,
    Json(request): Json<PasswordChange>,
) -> Result<impl IntoResponse, ApiError> {
    let new = Password::parse(request.new_password)
        .map_err(|e| Error::Invalid(vec![FieldError::body(&["newPassword"], e)]))?;
    // Guessing the current password with a stolen token is guessing a password.
    client.sign_in_attempt(&caller.email).await?;
    let session = users
        .change_password(caller.user_id, request.current_password, new)
        .await?;
    Ok(tokens(session))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResetRequest {
    #[schema(example = "ada@example.com")]
    pub email: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResetConfirmation {
    /// The code from the e-mail.
    pub token: String,
    #[schema(min_length = 12, max_length = 128)]
    pub new_password: String,
}

/// Forgot the password: e-mails a reset code to the address, if it is an account's.
///
/// The answer is 202 whether or not the address has an account, and comes before the
/// e-mail is sent, so it tells nothing about who has one. The code works once, for
/// `users.reset_ttl` (1 hour). Attempts count against the sign-in limits of the address
/// and the e-mail.
#[utoipa::path(
    post,
    path = "/api/auth/password-reset",
    tag = TAG,
    request_body = ResetRequest,
    responses(
        (status = 202, description = "If the address has an account, a code is on its way"),
        (status = 503, description = "No mailer is configured to send the code"),
    )
)]
async fn request_reset(
    State(users): State<Users>,
    client: Client,
    Json(request): Json<ResetRequest>,
) -> Result<StatusCode, ApiError> {
    let email = request.email.trim().to_lowercase();
    client.sign_in_attempt(&email).await?;
    users.request_reset(&email).await?;
    Ok(StatusCode::ACCEPTED)
}

/// Set a new password with the code from a reset e-mail. Every session of the account
/// ends (whoever knew the old password is signed out), every other code stops working,
/// and the answer starts a new session.
#[utoipa::path(
    post,
    path = "/api/auth/password-reset/confirm",
    tag = TAG,
    request_body = ResetConfirmation,
    responses(
        (status = 200, description = "Reset; the new session", body = TokenResponse),
        (status = 422, description = "`token` is unknown, used or expired, or `newPassword` is not a valid password"),
    )
)]
async fn confirm_reset(
    State(users): State<Users>,
    Json(request): Json<ResetConfirmation>,
) -> Result<impl IntoResponse, ApiError> {
    let new = Password::parse(request.new_password)
        .map_err(|e| Error::Invalid(vec![FieldError::body(&["newPassword"], e)]))?;
    Ok(tokens(users.confirm_reset(&request.token, new).await?))
}

/// The caller's own account.
#[utoipa::path(
    get,
    path = "/api/users/me",
    tag = TAG,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The account", body = UserView),
        (status = 404, description = "The account no longer exists"),
    )
)]
async fn me(State(users): State<Users>, caller: Caller) -> Result<Json<UserView>, ApiError> {
    Ok(Json(users.get(caller.user_id).await?.into()))
}

/// An account, to its owner or an admin.
#[utoipa::path(
    get,
    path = "/api/users/{id}",
    tag = TAG,
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Account id")),
    responses(
        (status = 200, description = "The account", body = UserView),
        (status = 404, description = "No such account, or not the caller's"),
    )
)]
async fn get_user(
    State(users): State<Users>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<Json<UserView>, ApiError> {
    if !caller.may_access(id) {
        return Err(Error::NotFound.into());
    }
    Ok(Json(users.get(id).await?.into()))
}

/// The public key access tokens are signed with, as a JWK set (RFC 7517).
#[utoipa::path(
    get,
    path = "/.well-known/jwks.json",
    tag = TAG,
    responses((status = 200, description = "The JWK set", body = Object))
)]
async fn jwks(State(users): State<Users>) -> impl IntoResponse {
    (
        [(header::CACHE_CONTROL, "public, max-age=300")],
        Json(users.jwks()),
    )
}
