use crate::helpers::TestApp;

#[tokio::test]
async fn live_and_ready() {
    let app = TestApp::spawn().await;
    let live = app.api.get("/health/live", None).await;
    assert_eq!(live.ok(200)["status"], "live");
    let ready = app.api.get("/health/ready", None).await;
    assert_eq!(
        ready.ok(200)["checks"],
        serde_json::json!({ "database": "ok", "migrations": "ok" })
    );
}

#[tokio::test]
async fn not_ready_until_migrated() {
    let app = TestApp::spawn_with(|c| c.migrate = false).await;
    app.api.get("/health/live", None).await.ok(200);
    let ready = app.api.get("/health/ready", None).await;
    let problem = ready.problem(503);
    assert_eq!(problem["checks"]["database"], "ok");
    assert!(
        problem["checks"]["migrations"]
            .as_str()
            .unwrap()
            .contains("oxcart migrate")
    );
    assert_eq!(ready.headers["retry-after"], "5");

    oxcart::migrate(&app.config, &app.db).await.unwrap();
    app.api.get("/health/ready", None).await.ok(200);
}
