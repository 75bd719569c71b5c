//! Rate limits, as a client meets them: 429 problems with `Retry-After`, a sign-in
//! refused before its password is checked, one caller's allowance not spent by another's,
//! and (with Redis) one allowance shared by every process.

use oxcart_test_util::api::{Api, PASSWORD, Reply};

use crate::helpers::{TestApp, on_redis};

async fn sign_in(api: &Api, email: &str, password: &str) -> Reply {
    api.sign_in(email, password).await
}

/// The value of an unlabelled counter in a `/metrics` scrape.
async fn counter(api: &Api, name: &str) -> f64 {
    let scrape = api.get("/metrics", None).await;
    scrape
        .text
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} is not in the scrape"))
}

/// Sends requests until one is refused (at most five), and returns that one.
async fn first_refusal<F: Future<Output = Reply>>(mut send: impl FnMut() -> F) -> Reply {
    for _ in 0..5 {
        let reply = send().await;
        if reply.status == 429 {
            return reply;
        }
        assert_eq!(reply.status, 200, "{}", reply.text);
    }
    panic!("five requests past the burst and none refused");
}

fn retry_after(reply: &Reply) -> u64 {
    reply.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .expect("Retry-After in seconds")
}

/// Asserts a 429 problem of the rate-limit type that says to wait, and how long.
fn assert_limited(reply: &Reply) -> u64 {
    let problem = reply.problem(429);
    assert_eq!(problem["type"], "/docs#problem-too-many-requests");
    let wait = retry_after(reply);
    assert!((1..=60).contains(&wait), "Retry-After {wait}");
    wait
}

#[tokio::test]
async fn the_sixth_wrong_password_in_a_minute_is_refused_before_it_is_hashed() {
    let app = TestApp::spawn().await;
    let api = &app.api;
    let email = "target@example.com";
    api.register(email, PASSWORD).await.ok(201);
    let checked_before = counter(api, "password_checks_total").await;

    for _ in 0..5 {
        sign_in(api, email, "wrong password!").await.problem(401);
    }
    let refused = sign_in(api, email, "wrong password!").await;
    assert_limited(&refused);
    assert_eq!(
        refused.problem(429)["detail"],
        "too many sign-in attempts for this e-mail"
    );
    // The right password is refused too, for now: the limit is on the e-mail, and
    // whoever is guessing must not learn when they guessed right.
    assert_limited(&sign_in(api, "Target@Example.com ", PASSWORD).await);
    assert_eq!(
        counter(api, "password_checks_total").await - checked_before,
        5.0,
        "a refused attempt had its password checked"
    );
    // Another account is not held back by this one's attacker.
    api.register("bystander@example.com", PASSWORD)
        .await
        .ok(201);
    sign_in(api, "bystander@example.com", PASSWORD)
        .await
        .ok(200);
    app.stop().await;
}

#[tokio::test]
async fn one_address_trying_many_e_mails_is_refused() {
    let app = TestApp::spawn_with(|config| config.rate_limit.sign_in_per_address = 3).await;
    let api = &app.api;
    for n in 0..3 {
        sign_in(api, &format!("guess{n}@example.com"), PASSWORD)
            .await
            .problem(401);
    }
    let refused = sign_in(api, "guess3@example.com", PASSWORD).await;
    assert_limited(&refused);
    assert_eq!(
        refused.body["detail"],
        "too many sign-in attempts from this address"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_caller_over_its_rate_is_refused_and_others_are_not() {
    let app = TestApp::spawn_with(|config| {
        config.rate_limit.requests_per_second = 1;
        config.rate_limit.burst = 3;
        // Callers behind a proxy that writes their address.
        config.rate_limit.client_address_header = Some("x-forwarded-for".into());
    })
    .await;
    let api = &app.api;
    let (token, _) = api.customer().await;
    // Registering and signing in took two of this address's three; the caller with a
    // token is counted by its subject, with an allowance of its own: the burst, then one
    // a second (a slow machine may earn one more before the refusal).
    for _ in 0..3 {
        api.get("/api/users/me", Some(&token)).await.ok(200);
    }
    let refused = first_refusal(|| api.get("/api/users/me", Some(&token))).await;
    assert_eq!(
        refused.problem(429)["detail"],
        "this caller has made too many requests; slow down"
    );
    assert_eq!(retry_after(&refused), 1);

    // Anonymous callers are told apart by the address the proxy wrote: the last one.
    let from = |address: &'static str| {
        api.send(
            api.client()
                .get(api.url("/api/products"))
                .header("x-forwarded-for", format!("198.51.100.1, {address}")),
        )
    };
    for _ in 0..3 {
        assert_eq!(from("203.0.113.1").await.status, 200);
    }
    assert_limited(&first_refusal(|| from("203.0.113.1")).await);
    assert_eq!(from("203.0.113.2").await.status, 200);

    // What is not the API is not limited: probes and scrapes keep working.
    for _ in 0..5 {
        assert_eq!(api.get("/health/live", None).await.status, 200);
    }
    let scrape = api.get("/metrics", None).await.text;
    assert!(
        scrape.contains("rate_limited_total{limit=\"api\"} 2"),
        "{}",
        scrape
            .lines()
            .filter(|l| l.contains("rate_limited"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    app.stop().await;
}

/// Two processes on one Redis: an e-mail's five attempts are five in all, not five each.
#[tokio::test]
#[ignore = "needs Redis (.ci/services)"]
async fn processes_sharing_redis_share_one_allowance() {
    let prefix = format!("test-{}:", uuid::Uuid::new_v4().simple());
    // Each process has its own database: only Redis is shared.
    let configure = |config: &mut oxcart::config::Config| on_redis(config, &prefix);
    let first = TestApp::spawn_with(configure).await;
    let second = TestApp::spawn_with(configure).await;
    // An e-mail no account has: the attempts count all the same.
    let email = "nobody@example.com";
    for api in [&first.api, &second.api, &first.api, &second.api, &first.api] {
        sign_in(api, email, PASSWORD).await.problem(401);
    }
    assert_limited(&sign_in(&second.api, email, PASSWORD).await);
    assert_limited(&sign_in(&first.api, email, PASSWORD).await);
    second.stop().await;
    first.stop().await;
}
