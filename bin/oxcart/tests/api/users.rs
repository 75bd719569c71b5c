use oxcart_test_util::api::PASSWORD;
use serde_json::json;

use oxcart_platform::auth::{Role, SigningKey};

use crate::helpers::TestApp;

/// A token for a made-up account, signed by `key` rather than by the app.
fn token_signed_by(key: &SigningKey, role: Role) -> String {
    let issuer = key.issuer(std::time::Duration::from_secs(60));
    issuer
        .issue(
            uuid::Uuid::now_v7(),
            role,
            "x@example.com",
            chrono::Utc::now(),
        )
        .unwrap()
        .token
}

#[tokio::test]
async fn registration_sign_in_and_profile() {
    let app = TestApp::spawn().await;
    let api = &app.api;
    let registered = api.register("  Grace.Hopper@Example.COM ", PASSWORD).await;
    let user = registered.ok(201).clone();
    assert_eq!(user["email"], "grace.hopper@example.com");
    assert_eq!(user["role"], "customer");
    assert_eq!(
        registered.headers["location"],
        format!("/api/users/{}", user["id"].as_str().unwrap())
    );
    assert!(user.get("password").is_none() && user.get("passwordHash").is_none());

    // E-mail is unique whatever its case.
    api.register("GRACE.HOPPER@example.com", PASSWORD)
        .await
        .problem_at(409, "#/email");

    let token = api
        .post(
            "/api/auth/token",
            None,
            &json!({ "email": "Grace.Hopper@example.com", "password": PASSWORD }),
        )
        .await;
    assert_eq!(token.ok(200)["tokenType"], "Bearer");
    assert_eq!(token.body["expiresIn"], 900);
    assert_eq!(token.body["refreshExpiresIn"], 30 * 24 * 3600);
    assert_eq!(token.headers["cache-control"], "no-store");
    let token = token.body["accessToken"].as_str().unwrap().to_owned();

    let me = api.get("/api/users/me", Some(&token)).await;
    assert_eq!(me.ok(200), &user);
    let by_id = api
        .get(
            &format!("/api/users/{}", user["id"].as_str().unwrap()),
            Some(&token),
        )
        .await;
    assert_eq!(by_id.ok(200), &user);
}

#[tokio::test]
async fn wrong_credentials_are_refused_alike() {
    let app = TestApp::spawn().await;
    app.api.register("ada@example.com", PASSWORD).await.ok(201);
    for (email, password) in [
        ("ada@example.com", "wrong password"),
        ("nobody@example.com", PASSWORD),
        ("not an email", PASSWORD),
    ] {
        let reply = app
            .api
            .post(
                "/api/auth/token",
                None,
                &json!({ "email": email, "password": password }),
            )
            .await;
        assert_eq!(
            reply.problem(401)["detail"],
            "the e-mail or password is wrong"
        );
    }
}

#[tokio::test]
async fn accounts_are_visible_to_their_owner_and_admins_only() {
    let app = TestApp::spawn().await;
    let (alice, alice_id) = app.api.customer().await;
    let (bob, _) = app.api.customer().await;
    app.api
        .get(&format!("/api/users/{alice_id}"), Some(&bob))
        .await
        .problem(404);
    app.api
        .get(&format!("/api/users/{alice_id}"), Some(&alice))
        .await
        .ok(200);
    let admin = app.admin().await;
    let seen = app
        .api
        .get(&format!("/api/users/{alice_id}"), Some(&admin))
        .await;
    assert_eq!(seen.ok(200)["id"], alice_id.to_string());
    let me = app.api.get("/api/users/me", Some(&admin)).await;
    assert_eq!(me.ok(200)["role"], "admin");
    let missing = app.api.get("/api/users/me", None).await;
    missing.problem(401);
    assert_eq!(
        missing.headers["www-authenticate"],
        r#"Bearer realm="oxcart""#
    );
}

#[tokio::test]
async fn registration_validates_every_field() {
    let app = TestApp::spawn().await;
    let reply = app
        .api
        .post(
            "/api/users",
            None,
            &json!({ "email": "nope", "password": "short", "name": "x".repeat(101) }),
        )
        .await;
    let problem = reply.problem(422);
    let pointers: Vec<_> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["pointer"].as_str().unwrap())
        .collect();
    assert_eq!(pointers, ["#/email", "#/password", "#/name"]);
    assert_eq!(problem["detail"], "the request has 3 invalid fields");
    app.api
        .post("/api/users", None, &json!({ "email": "a@example.com" }))
        .await
        .problem_at(422, "#/password");
}

#[tokio::test]
async fn tokens_verify_against_the_published_key() {
    let app = TestApp::spawn().await;
    let jwks = app.api.get("/.well-known/jwks.json", None).await;
    let key = &jwks.ok(200)["keys"][0];
    assert_eq!(
        (
            key["kty"].as_str(),
            key["crv"].as_str(),
            key["alg"].as_str()
        ),
        (Some("OKP"), Some("Ed25519"), Some("EdDSA"))
    );
    // A token signed with another key is refused.
    let forged = token_signed_by(&SigningKey::generate().unwrap(), Role::Admin);
    let reply = app.api.get("/api/users/me", Some(&forged)).await;
    reply.problem(401);
    assert!(
        reply.headers["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("invalid_token")
    );
}

#[tokio::test]
async fn a_configured_signing_key_is_used_instead_of_a_generated_one() {
    let key = SigningKey::generate().unwrap();
    let pem = key.to_pem();
    let app = TestApp::spawn_with(|c| c.auth.jwt_private_key = Some(pem.into())).await;
    assert!(
        !app.config.signing_key_path().exists(),
        "no key should be generated"
    );
    let published = app.api.get("/.well-known/jwks.json", None).await;
    assert_eq!(published.ok(200)["keys"][0]["kid"], key.kid());
    // A token this key signs is accepted (for an account that does not exist: 404, not 401).
    let token = token_signed_by(&key, Role::Customer);
    app.api
        .get("/api/users/me", Some(&token))
        .await
        .problem(404);
}

/// Mass assignment (OWASP API3): a field the request does not define, such as `role`, is
/// refused by name rather than ignored or, worse, applied.
#[tokio::test]
async fn a_client_cannot_make_itself_an_admin() {
    let app = TestApp::spawn().await;
    let reply = app
        .api
        .post(
            "/api/users",
            None,
            &json!({ "email": "eve@example.com", "password": PASSWORD, "role": "admin" }),
        )
        .await;
    let problem = reply.problem(422);
    assert!(
        problem.to_string().contains("role"),
        "the refusal names the field: {problem}"
    );
    // Nothing was registered.
    app.api.register("eve@example.com", PASSWORD).await.ok(201);
}
