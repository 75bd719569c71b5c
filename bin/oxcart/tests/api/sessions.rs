//! Sessions as a client lives them: refresh tokens that rotate, a reused one that ends
//! its session, sign-out, and a password change that signs every other device out, with
//! the ended sessions' access tokens refused at once, not when they expire.

use oxcart_test_util::api::{Api, PASSWORD, Reply};
use serde_json::{Value, json};

use crate::helpers::{TestApp, on_redis};

async fn sign_in(api: &Api, email: &str, password: &str) -> Value {
    api.sign_in(email, password).await.ok(200).clone()
}

async fn refresh(api: &Api, tokens: &Value) -> Reply {
    api.post(
        "/api/auth/refresh",
        None,
        &json!({ "refreshToken": tokens["refreshToken"] }),
    )
    .await
}

async fn sign_out(api: &Api, tokens: &Value) {
    let reply = api
        .post(
            "/api/auth/sign-out",
            None,
            &json!({ "refreshToken": tokens["refreshToken"] }),
        )
        .await;
    assert_eq!(reply.status, 204, "{}", reply.text);
}

fn access(tokens: &Value) -> &str {
    tokens["accessToken"].as_str().unwrap()
}

/// Asserts `token` is refused because its session ended.
async fn ended(api: &Api, token: &str) {
    let reply = api.get("/api/users/me", Some(token)).await;
    assert_eq!(
        reply.problem(401)["detail"],
        "the session has ended (signed out, or the password changed); sign in again"
    );
}

#[tokio::test]
async fn a_refresh_token_works_once_and_a_reused_one_ends_the_session() {
    let app = TestApp::spawn().await;
    let api = &app.api;
    api.register("ada@example.com", PASSWORD).await.ok(201);
    let first = sign_in(api, "ada@example.com", PASSWORD).await;

    let second = refresh(api, &first).await;
    assert_eq!(second.headers["cache-control"], "no-store");
    let second = second.ok(200).clone();
    assert_ne!(second["refreshToken"], first["refreshToken"], "rotated");
    api.get("/api/users/me", Some(access(&second)))
        .await
        .ok(200);

    // The first token again: someone holds a copy. The session ends, for both holders.
    let reused = refresh(api, &first).await;
    assert_eq!(
        reused.problem(401)["detail"],
        "the refresh token is unknown, expired or revoked; sign in again"
    );
    refresh(api, &second).await.problem(401);
    ended(api, access(&second)).await;
    ended(api, access(&first)).await;

    // A fresh sign-in is a new session, untouched.
    let again = sign_in(api, "ada@example.com", PASSWORD).await;
    api.get("/api/users/me", Some(access(&again))).await.ok(200);
    refresh(api, &json!({ "refreshToken": "made-up" }))
        .await
        .problem(401);
    app.stop().await;
}

#[tokio::test]
async fn signing_out_ends_that_session_only() {
    let app = TestApp::spawn().await;
    let api = &app.api;
    api.register("ada@example.com", PASSWORD).await.ok(201);
    let laptop = sign_in(api, "ada@example.com", PASSWORD).await;
    let phone = sign_in(api, "ada@example.com", PASSWORD).await;

    sign_out(api, &laptop).await;
    ended(api, access(&laptop)).await;
    refresh(api, &laptop).await.problem(401);
    // Signing out twice, or with a token that never was, is not an error.
    sign_out(api, &laptop).await;
    sign_out(api, &json!({ "refreshToken": "made-up" })).await;

    api.get("/api/users/me", Some(access(&phone))).await.ok(200);
    refresh(api, &phone).await.ok(200);
    app.stop().await;
}

#[tokio::test]
async fn a_password_change_signs_every_other_session_out() {
    // Sign-ins and password checks share the e-mail's allowance (5 a minute), which this
    // test spends more of than that.
    let app = TestApp::spawn_with(|config| config.rate_limit.sign_in_per_email = 10).await;
    let api = &app.api;
    api.register("ada@example.com", PASSWORD).await.ok(201);
    let laptop = sign_in(api, "ada@example.com", PASSWORD).await;
    let phone = sign_in(api, "ada@example.com", PASSWORD).await;
    let new_password = "a brand new passphrase";

    let wrong = api
        .post(
            "/api/users/me/password",
            Some(access(&laptop)),
            &json!({ "currentPassword": "not it at all", "newPassword": new_password }),
        )
        .await;
    wrong.problem_at(422, "#/currentPassword");
    api.post(
        "/api/users/me/password",
        Some(access(&laptop)),
        &json!({ "currentPassword": PASSWORD, "newPassword": "short" }),
    )
    .await
    .problem_at(422, "#/newPassword");

    let changed = api
        .post(
            "/api/users/me/password",
            Some(access(&laptop)),
            &json!({ "currentPassword": PASSWORD, "newPassword": new_password }),
        )
        .await;
    let fresh = changed.ok(200).clone();
    for old in [&laptop, &phone] {
        ended(api, access(old)).await;
        refresh(api, old).await.problem(401);
    }
    api.get("/api/users/me", Some(access(&fresh))).await.ok(200);
    refresh(api, &fresh).await.ok(200);

    api.sign_in("ada@example.com", PASSWORD).await.problem(401);
    sign_in(api, "ada@example.com", new_password).await;
    app.stop().await;
}

/// Two processes sharing one Redis and one signing key: a sign-out at one is refused at
/// the other at once, though the access token has not expired.
#[tokio::test]
#[ignore = "needs Redis (.ci/services)"]
async fn a_sign_out_reaches_every_process_through_redis() {
    let prefix = format!("test-{}:", uuid::Uuid::new_v4().simple());
    let pem = oxcart_platform::auth::SigningKey::generate()
        .unwrap()
        .to_pem();
    let configure = |config: &mut oxcart::config::Config| {
        on_redis(config, &prefix);
        config.auth.jwt_private_key = Some(pem.clone().into());
    };
    let users = TestApp::spawn_with(configure).await;
    let orders = TestApp::spawn_with(configure).await;
    users
        .api
        .register("ada@example.com", PASSWORD)
        .await
        .ok(201);
    let tokens = sign_in(&users.api, "ada@example.com", PASSWORD).await;
    // The other process knows the token by its signature alone: its own order list.
    orders
        .api
        .get("/api/orders", Some(access(&tokens)))
        .await
        .ok(200);

    sign_out(&users.api, &tokens).await;
    let refused = orders.api.get("/api/orders", Some(access(&tokens))).await;
    assert_eq!(
        refused.problem(401)["detail"],
        "the session has ended (signed out, or the password changed); sign in again"
    );
    orders.stop().await;
    users.stop().await;
}
