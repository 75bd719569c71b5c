//! Password reset by e-mail: a single-use code with an expiry, and every session ended.

use std::path::Path;
use std::time::Duration;

use oxcart_test_util::api::{Api, PASSWORD};
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{TestApp, eventually, plain_text};

const NEW_PASSWORD: &str = "a brand new passphrase";

/// The reset e-mails in the app's mail directory for `email`, as text.
fn reset_mails(dir: &Path, email: &str) -> Vec<String> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .filter(|eml| eml.contains("X-Oxcart-Template: password-reset") && eml.contains(email))
        .map(|eml| plain_text(&eml))
        .collect()
}

/// The code in a reset e-mail.
fn code(mail: &str) -> String {
    mail.lines()
        .find_map(|l| l.trim().strip_prefix("Code: "))
        .unwrap_or_else(|| panic!("no code in {mail}"))
        .to_owned()
}

async fn ask(api: &Api, email: &str) {
    let reply = api
        .post("/api/auth/password-reset", None, &json!({ "email": email }))
        .await;
    assert_eq!(reply.status, 202, "{}", reply.text);
}

async fn confirm(api: &Api, token: &str) -> oxcart_test_util::api::Reply {
    api.post(
        "/api/auth/password-reset/confirm",
        None,
        &json!({ "token": token, "newPassword": NEW_PASSWORD }),
    )
    .await
}

#[tokio::test]
async fn a_reset_code_sets_a_new_password_once_and_ends_every_session() {
    let app = TestApp::spawn().await;
    let api = &app.api;
    let mail_dir = app.config.data_dir.join("mail");
    let email = format!("forgetful-{}@example.com", Uuid::new_v4().simple());
    api.register(&email, PASSWORD).await.ok(201);
    let session = api.sign_in(&email, PASSWORD).await.ok(200).clone();
    let access = session["accessToken"].as_str().unwrap().to_owned();

    // An address with no account is answered alike, and gets nothing.
    let stranger = format!("nobody-{}@example.com", Uuid::new_v4().simple());
    ask(api, &stranger).await;
    ask(api, &email).await;
    let mails = eventually("a reset e-mail", || async {
        Some(reset_mails(&mail_dir, &email)).filter(|m| !m.is_empty())
    })
    .await;
    assert_eq!(mails.len(), 1);
    assert!(
        mails[0].contains("It works once, within 1h"),
        "{}",
        mails[0]
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(reset_mails(&mail_dir, &stranger).is_empty());

    let token = code(&mails[0]);
    let reset = confirm(api, &token).await;
    let fresh = reset.ok(200)["accessToken"].as_str().unwrap().to_owned();
    api.get("/api/users/me", Some(&fresh)).await.ok(200);
    // The old password, the old session's access and refresh tokens: all refused.
    api.sign_in(&email, PASSWORD).await.problem(401);
    api.sign_in(&email, NEW_PASSWORD).await.ok(200);
    api.get("/api/users/me", Some(&access)).await.problem(401);
    api.post(
        "/api/auth/refresh",
        None,
        &json!({ "refreshToken": session["refreshToken"] }),
    )
    .await
    .problem(401);
    // The code worked once.
    confirm(api, &token).await.problem_at(422, "#/token");
    confirm(api, "made-up").await.problem_at(422, "#/token");
    app.stop().await;
}

#[tokio::test]
async fn an_expired_code_or_a_weak_password_is_refused() {
    let app = TestApp::spawn_with(|c| c.users.reset_ttl = Duration::from_millis(1)).await;
    let api = &app.api;
    let mail_dir = app.config.data_dir.join("mail");
    let email = format!("slow-{}@example.com", Uuid::new_v4().simple());
    api.register(&email, PASSWORD).await.ok(201);
    ask(api, &email).await;
    let mails = eventually("a reset e-mail", || async {
        Some(reset_mails(&mail_dir, &email)).filter(|m| !m.is_empty())
    })
    .await;
    let token = code(&mails[0]);
    let weak = api
        .post(
            "/api/auth/password-reset/confirm",
            None,
            &json!({ "token": token, "newPassword": "short" }),
        )
        .await;
    weak.problem_at(422, "#/newPassword");
    confirm(api, &token).await.problem_at(422, "#/token");
    api.sign_in(&email, PASSWORD).await.ok(200);
    app.stop().await;
}

#[tokio::test]
async fn a_configured_reset_page_is_linked_with_the_code_in_it() {
    let app = TestApp::spawn_with(|c| {
        c.users.reset_url = Some("https://shop.example.com/reset?token={token}".into());
    })
    .await;
    let mail_dir = app.config.data_dir.join("mail");
    let email = format!("linked-{}@example.com", Uuid::new_v4().simple());
    app.api.register(&email, PASSWORD).await.ok(201);
    ask(&app.api, &email).await;
    let mails = eventually("a reset e-mail", || async {
        Some(reset_mails(&mail_dir, &email)).filter(|m| !m.is_empty())
    })
    .await;
    let link = mails[0]
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("https://shop.example.com/reset?token=")
        })
        .unwrap_or_else(|| panic!("no link in {}", mails[0]));
    confirm(&app.api, link).await.ok(200);
    app.stop().await;
}
