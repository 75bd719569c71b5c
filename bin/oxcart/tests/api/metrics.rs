use crate::helpers::TestApp;

#[tokio::test]
async fn requests_are_counted_by_route_template() {
    let app = TestApp::spawn().await;
    let (customer, _) = app.api.customer().await;
    let missing = uuid::Uuid::now_v7();
    app.api
        .get(&format!("/api/orders/{missing}"), Some(&customer))
        .await
        .problem(404);
    app.api
        .get(&format!("/api/orders/{missing}"), Some(&customer))
        .await
        .problem(404);
    app.api.get("/no/such/route", None).await.problem(404);

    let scrape = app.api.get("/metrics", None).await;
    assert_eq!(scrape.status, 200);
    assert!(
        scrape
            .content_type()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = &scrape.text;
    assert!(
        text.contains(
            r#"http_requests_total{endpoint="/api/orders/{id}",method="GET",status="404"} 2"#
        ),
        "{text}"
    );
    assert!(
        text.contains(r#"http_requests_total{endpoint="/api/users",method="POST",status="201"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"http_requests_total{endpoint="unmatched",method="GET",status="404"} 1"#),
        "{text}"
    );
    assert!(text.contains(r#"http_request_duration_seconds_bucket{endpoint="/api/orders/{id}",method="GET",le="0.005"}"#));
    assert!(text.contains("# TYPE http_request_duration_seconds histogram"));
    assert!(
        !text.contains(&missing.to_string()),
        "raw paths must not become labels"
    );
}
