//! The HTTP conventions a client expects: compressed bodies, `304 Not Modified`, `Link`
//! headers on list pages, request ids that are safe to echo, and CORS for the configured
//! origins.

use oxcart::App;
use oxcart::config::Config;
use oxcart_platform::http::HttpConfig;
use reqwest::Method;
use reqwest::header::{ACCEPT_ENCODING, CONTENT_ENCODING, ETAG, IF_NONE_MATCH, LINK, ORIGIN};

use crate::helpers::TestApp;

#[tokio::test]
async fn large_bodies_are_compressed_for_a_client_that_accepts_it() {
    let app = TestApp::spawn().await;
    let get = |encoding: Option<&'static str>| {
        let mut request = app.api.client().get(app.api.url("/openapi.json"));
        if let Some(encoding) = encoding {
            request = request.header(ACCEPT_ENCODING, encoding);
        }
        request.send()
    };
    let plain = get(None).await.unwrap();
    assert!(plain.headers().get(CONTENT_ENCODING).is_none());
    let plain = plain.bytes().await.unwrap().len();
    for encoding in ["gzip", "br"] {
        let reply = get(Some(encoding)).await.unwrap();
        assert_eq!(
            reply
                .headers()
                .get(CONTENT_ENCODING)
                .map(|v| v.to_str().unwrap()),
            Some(encoding)
        );
        let compressed = reply.bytes().await.unwrap().len();
        assert!(
            compressed * 4 < plain,
            "{encoding}: {compressed} of {plain} bytes"
        );
    }
}

#[tokio::test]
async fn a_copy_the_client_has_is_answered_not_modified() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let mug = app.api.product(&admin, "Mug", 990, "EUR", 5).await;
    let url = app.api.url(&format!("/api/products/{mug}"));
    let first = app.api.client().get(&url).send().await.unwrap();
    let etag = first.headers()[ETAG].clone();
    let again = app
        .api
        .client()
        .get(&url)
        .header(IF_NONE_MATCH, etag.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
    assert_eq!(again.headers()[ETAG], etag);
    assert!(again.bytes().await.unwrap().is_empty());
    let stale = app
        .api
        .client()
        .get(&url)
        .header(IF_NONE_MATCH, "\"999\"")
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), 200);
}

#[tokio::test]
async fn list_pages_link_to_the_next_one() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    for name in ["Bowl", "Cup", "Dish"] {
        app.api.product(&admin, name, 500, "EUR", 1).await;
    }
    let first = app
        .api
        .client()
        .get(app.api.url("/api/products?limit=2"))
        .send()
        .await
        .unwrap();
    let link = first.headers()[LINK].to_str().unwrap().to_owned();
    let body: serde_json::Value = first.json().await.unwrap();
    let cursor = body["nextCursor"].as_str().unwrap();
    assert_eq!(
        link,
        format!("</api/products?limit=2&cursor={cursor}>; rel=\"next\"")
    );
    let target = link.trim_start_matches('<').split('>').next().unwrap();
    let last = app
        .api
        .client()
        .get(app.api.url(target))
        .send()
        .await
        .unwrap();
    assert!(
        last.headers().get(LINK).is_none(),
        "the last page links nowhere"
    );
    let body: serde_json::Value = last.json().await.unwrap();
    assert_eq!(body["items"][0]["name"], "Dish");
}

#[tokio::test]
async fn a_client_request_id_is_echoed_only_when_safe() {
    let app = TestApp::spawn().await;
    let echoed = |id: String| {
        let request = app.api.client().get(app.api.url("/health/live"));
        async move {
            let reply = request.header("x-request-id", id).send().await.unwrap();
            reply.headers()["x-request-id"].to_str().unwrap().to_owned()
        }
    };
    assert_eq!(echoed("lb-7f3a:42".into()).await, "lb-7f3a:42");
    for unsafe_id in ["a".repeat(200), "two words".into(), "x\"}".into()] {
        let id = echoed(unsafe_id.clone()).await;
        assert_ne!(id, unsafe_id);
        assert!(id.parse::<uuid::Uuid>().is_ok(), "{id} is not a fresh id");
    }
}

#[tokio::test]
async fn browsers_on_configured_origins_may_call_the_api() {
    let app =
        TestApp::spawn_with(|c| c.http.cors_origins = vec!["https://shop.example".into()]).await;
    let preflight = |origin: &'static str| {
        app.api
            .client()
            .request(Method::OPTIONS, app.api.url("/api/orders"))
            .header(ORIGIN, origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization,content-type,idempotency-key",
            )
            .send()
    };
    let allowed = preflight("https://shop.example").await.unwrap();
    assert!(allowed.status().is_success(), "{}", allowed.status());
    let headers = allowed.headers();
    assert_eq!(
        headers["access-control-allow-origin"],
        "https://shop.example"
    );
    let allowed_headers = headers["access-control-allow-headers"].to_str().unwrap();
    assert!(
        allowed_headers.contains("idempotency-key"),
        "{allowed_headers}"
    );

    let refused = preflight("https://elsewhere.example").await.unwrap();
    assert!(
        refused
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );

    // What a script may read of an actual response.
    let reply = app
        .api
        .client()
        .get(app.api.url("/api/products"))
        .header(ORIGIN, "https://shop.example")
        .send()
        .await
        .unwrap();
    let exposed = reply.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap();
    assert!(
        exposed.contains("etag") && exposed.contains("link"),
        "{exposed}"
    );
}

#[tokio::test]
async fn an_origin_that_is_not_one_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        data_dir: dir.path().to_owned(),
        http: HttpConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            cors_origins: vec!["https://shop.example/app".into()],
            ..HttpConfig::default()
        },
        ..Config::default()
    };
    let Err(error) = App::build(config).await else {
        panic!("started with a path for an origin");
    };
    let error = format!("{error:#}");
    assert!(
        error.contains("http.cors_origins: `https://shop.example/app` is not an origin"),
        "{error}"
    );
}

#[tokio::test]
async fn the_docs_page_allows_only_its_own_script_and_the_document_revalidates() {
    let app = TestApp::spawn().await;
    let page = app
        .api
        .client()
        .get(app.api.url("/docs"))
        .send()
        .await
        .unwrap();
    let policy = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        policy.starts_with("default-src 'none'; script-src 'sha256-"),
        "{policy}"
    );
    assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
    assert_eq!(page.headers()["x-content-type-options"], "nosniff");
    // The hash is of the script the page carries: the browser would run it.
    let html = page.text().await.unwrap();
    let script = html
        .split("<script>")
        .nth(1)
        .unwrap()
        .split("</script>")
        .next()
        .unwrap();
    let digest = ring::digest::digest(&ring::digest::SHA256, script.as_bytes());
    use base64::Engine as _;
    let hash = base64::engine::general_purpose::STANDARD.encode(digest.as_ref());
    assert!(policy.contains(&format!("'sha256-{hash}'")), "{policy}");

    let document = app
        .api
        .client()
        .get(app.api.url("/openapi.json"))
        .send()
        .await
        .unwrap();
    let etag = document.headers()[ETAG].clone();
    let again = app
        .api
        .client()
        .get(app.api.url("/openapi.json"))
        .header(IF_NONE_MATCH, etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
}
