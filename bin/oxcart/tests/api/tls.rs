//! TLS on every outside connection, against the real servers `.ci/services` starts with
//! certificates from its test CA: PostgreSQL (primary, replica, PgBouncer), Kafka
//! (SASL_SSL with SCRAM), the OTLP collector (Jaeger), the SMTP relay (mailpit) and a
//! call between services.
//!
//! Each connection is shown working with the right CA, and refused with a CA that signed
//! nothing here: the process stops at start-up with one line that names the connection
//! and the cause, instead of hanging or panicking.

use std::path::Path;
use std::time::{Duration, Instant};

use oxcart::App;
use oxcart::config::Config;
use oxcart_platform::http::HttpConfig;
use oxcart_test_util::api::Api;
use oxcart_test_util::postgres::TestDatabase;
use oxcart_test_util::process::{self, Process};
use oxcart_test_util::services::{ca, other_ca, var};

use crate::helpers::TestApp;

const BIN: &str = env!("CARGO_BIN_EXE_oxcart");

/// `url` verified against `ca` (`sslmode=verify-full`: the chain and the host name).
fn verified(url: &str, ca: &Path) -> String {
    format!("{url}?sslmode=verify-full&sslrootcert={}", ca.display())
}

/// A configuration on a data directory of its own (kept by the returned guard).
fn fresh() -> (Config, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        data_dir: dir.path().to_owned(),
        http: HttpConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..HttpConfig::default()
        },
        ..Config::default()
    };
    (config, dir)
}

/// Builds the app with `config`, which must fail; returns the error as the binary
/// prints it, asserting it is one line and came within `within`.
async fn refused(config: Config, within: Duration) -> String {
    let started = Instant::now();
    let error = match App::build(config).await {
        Ok(_) => panic!("the app started"),
        Err(error) => format!("{error:#}"),
    };
    assert!(
        started.elapsed() < within,
        "took {:?} to fail: {error}",
        started.elapsed()
    );
    assert!(!error.contains('\n'), "one line: {error}");
    error
}

/// How many of the app's sessions on `database` (as the server at `server` sees them)
/// are encrypted, and how many are not, leaving out the asking session.
async fn sessions(server: &str, database: &str) -> (i64, i64) {
    let pool = sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(&format!("{server}/postgres"))
        .await
        .unwrap();
    let row: (i64, i64) = sqlx::query_as(
        "SELECT COUNT(*) FILTER (WHERE s.ssl), COUNT(*) FILTER (WHERE NOT s.ssl) \
         FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
         WHERE a.datname = $1 AND a.pid <> pg_backend_pid()",
    )
    .bind(database)
    .fetch_one(&pool)
    .await
    .unwrap();
    pool.close().await;
    row
}

fn name_of(database: &TestDatabase) -> String {
    database.direct_url.rsplit('/').next().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL with TLS (.ci/services)"]
async fn postgres_over_tls_is_verified_and_used() {
    let database = TestDatabase::create().await;
    let server = var("OXCART_TEST_POSTGRES");
    let server = server.rsplit_once('/').unwrap().0;
    for url in [
        verified(&database.direct_url, &ca()),
        // Encrypted without checking whose certificate it is: what `require` promises.
        format!("{}?sslmode=require", database.direct_url),
    ] {
        let app = TestApp::spawn_with(|c| c.database.url = Some(url.clone())).await;
        let admin = app.admin().await;
        app.api.product(&admin, "Mug", 990, "EUR", 5).await;
        let (encrypted, plain) = sessions(server, &name_of(&database)).await;
        assert!(encrypted > 0, "{url}: no encrypted session");
        assert_eq!(plain, 0, "{url}: a session in plain text");
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL, its replica and PgBouncer with TLS (.ci/services)"]
async fn the_replica_and_pgbouncer_over_tls() {
    let database = TestDatabase::create().await;
    let replica = database.on(&var("OXCART_TEST_REPLICA"));
    let bouncer = database.on(&var("OXCART_TEST_PGBOUNCER_URL"));
    let app = TestApp::spawn_with(|c| {
        c.database.url = Some(verified(&bouncer, &ca()));
        c.database.migration_url = Some(database.direct_url.clone());
        c.database.read_url = Some(verified(&replica, &ca()));
    })
    .await;
    let admin = app.admin().await;
    let mug = app.api.product(&admin, "Mug", 990, "EUR", 5).await;
    // The list reads the replica: once the product has reached it, it is listed.
    let mut listed = false;
    for _ in 0..100 {
        let page = app.api.get("/api/products", None).await;
        if page.ok(200).to_string().contains(&mug.to_string()) {
            listed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(listed, "the replica never served the product");
    let (encrypted, plain) = sessions(&var("OXCART_TEST_REPLICA"), &name_of(&database)).await;
    assert!(encrypted > 0, "no encrypted session on the replica");
    assert_eq!(plain, 0, "a session in plain text on the replica");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL, its replica and PgBouncer with TLS (.ci/services)"]
async fn a_wrong_postgres_ca_stops_the_start_with_one_line() {
    let database = TestDatabase::create().await;
    // The primary, through the binary: what an operator sees.
    let dir = tempfile::tempdir().unwrap();
    let url = verified(&database.direct_url, &other_ca());
    let started = Instant::now();
    let output = process::run_with_env(
        Path::new(BIN),
        &["serve", "--data-dir", dir.path().to_str().unwrap()],
        &[("DATABASE_URL", url.as_str())],
    )
    .await;
    assert!(!output.status.success());
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(
        errors[0].contains("PostgreSQL at postgres://postgres@127.0.0.1:5432/")
            && errors[0].contains("UnknownIssuer"),
        "{stderr}"
    );

    // A replica, and PgBouncer.
    let (mut config, _dir) = fresh();
    config.database.url = Some(database.direct_url.clone());
    config.database.read_url = Some(verified(
        &database.on(&var("OXCART_TEST_REPLICA")),
        &other_ca(),
    ));
    let error = refused(config, Duration::from_secs(30)).await;
    assert!(
        error.contains("127.0.0.1:5433") && error.contains("UnknownIssuer"),
        "{error}"
    );

    let (mut config, _dir) = fresh();
    config.database.url = Some(verified(
        &database.on(&var("OXCART_TEST_PGBOUNCER_URL")),
        &other_ca(),
    ));
    config.database.migration_url = Some(database.direct_url.clone());
    let error = refused(config, Duration::from_secs(30)).await;
    assert!(
        error.contains("127.0.0.1:6439") && error.contains("UnknownIssuer"),
        "{error}"
    );
}

/// Orders priced by the catalog over `https://` (a TLS front before the catalog, as a
/// gateway would be), trusting the test CA through `tls_ca_file`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the test CA (.ci/services)"]
async fn calls_between_services_over_https() {
    use oxcart_test_util::tls_proxy::TlsProxy;

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let proxy = TlsProxy::start(([127, 0, 0, 1], port).into()).await;
    // The process prices its orders through its own catalog, behind the proxy.
    let app = TestApp::spawn_with(|c| {
        c.http.listen = ([127, 0, 0, 1], port).into();
        c.orders.catalog_url = Some(proxy.url());
        c.tls.ca_file = Some(ca());
    })
    .await;
    let admin = app.admin().await;
    let mug = app.api.product(&admin, "Mug", 990, "EUR", 5).await;
    let (customer, _) = app.api.customer().await;
    let order = app.api.place_order(&customer, &[(mug, 2)]).await;
    assert_eq!(order.ok(201)["totalAmount"], 1980);
    app.stop().await;

    let (mut config, _dir) = fresh();
    config.orders.catalog_url = Some(proxy.url());
    config.tls.ca_file = Some(other_ca());
    let error = refused(config, Duration::from_secs(15)).await;
    assert!(
        error.starts_with("orders.catalog_url: ")
            && error.contains(&proxy.url())
            && error.contains("UnknownIssuer"),
        "{error}"
    );

    // The right CA, but a host the certificate does not name (it names localhost and
    // 127.0.0.1).
    let elsewhere = TlsProxy::start_on([127, 0, 0, 2].into(), ([127, 0, 0, 1], port).into()).await;
    let (mut config, _dir) = fresh();
    config.orders.catalog_url = Some(elsewhere.url());
    config.tls.ca_file = Some(ca());
    let error = refused(config, Duration::from_secs(15)).await;
    assert!(
        error.contains("https://127.0.0.2:") && error.contains("not valid for name \"127.0.0.2\""),
        "{error}"
    );
}

/// Implicit TLS (`smtps://`) with a login, and STARTTLS, each verified; a wrong CA and a
/// wrong password stop the start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs mailpit (.ci/services)"]
async fn smtp_over_implicit_tls_with_a_login() {
    use oxcart_test_util::mailpit::Mailpit;

    let mailpit = Mailpit::smtps();
    let app = TestApp::spawn_with(crate::mail::sending_to(&mailpit)).await;
    let (order_id, email) = crate::mail::paid_order(&app).await;
    let mails = mailpit.wait_for(&email, 1, Duration::from_secs(30)).await;
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].header("X-Oxcart-Order-Id"), order_id);
    app.stop().await;

    for mailpit in [Mailpit::smtps(), Mailpit::starttls()] {
        let (mut config, _dir) = fresh();
        crate::mail::sending_to(&mailpit)(&mut config);
        config.tls.ca_file = Some(other_ca());
        let error = refused(config, Duration::from_secs(15)).await;
        assert!(
            error.starts_with("mail.smtp_url (SMTP_URL): ") && error.contains("UnknownIssuer"),
            "{error}"
        );
        assert!(
            !error.contains(&var("OXCART_TEST_SMTPS_PASSWORD")),
            "{error}"
        );
    }

    let mailpit = Mailpit::smtps();
    let (mut config, _dir) = fresh();
    crate::mail::sending_to(&mailpit)(&mut config);
    let wrong = mailpit
        .smtp_url
        .replace(&var("OXCART_TEST_SMTPS_PASSWORD"), "guessed");
    config.mail.smtp_url = Some(wrong.into());
    let error = refused(config, Duration::from_secs(15)).await;
    assert!(
        error.starts_with("mail.smtp_url (SMTP_URL): ") && error.contains("535"),
        "{error}"
    );
    assert!(!error.contains("guessed"), "{error}");
}

/// Spans exported over `https://`, by HTTP and by gRPC, verified against
/// `OTEL_EXPORTER_OTLP_CERTIFICATE`, and read back from Jaeger.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Jaeger with TLS (.ci/services)"]
async fn otlp_over_tls_reaches_jaeger() {
    use crate::traces::traced_get;
    use oxcart_test_util::jaeger::Jaeger;
    use oxcart_test_util::otlp::Traces as _;

    let jaeger = Jaeger::from_env();
    let ca = ca();
    let ca = ca.to_str().unwrap();
    for (protocol, endpoint) in [
        ("http/protobuf", var("OXCART_TEST_OTLP_HTTPS")),
        ("grpc", var("OXCART_TEST_OTLP_GRPCS")),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let env = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
            ("OTEL_EXPORTER_OTLP_CERTIFICATE", ca),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ];
        let server = Process::start_with_env(Path::new(BIN), dir.path(), &[], &env).await;
        let caller = traced_get(&Api::new(server.addr), "/api/products").await;
        let trace = jaeger
            .whole_trace(
                &caller.trace_id,
                &caller.span_id,
                Duration::from_secs(30),
                |trace| trace.has("GET /api/products"),
            )
            .await;
        let span = trace.one("GET /api/products", |s| s.kind == "SPAN_KIND_SERVER");
        assert_eq!(span.parent_span_id, caller.span_id, "{protocol}");

        let output = process::run_with_env(
            Path::new(BIN),
            &["serve", "--data-dir", dir.path().to_str().unwrap()],
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
                (
                    "OTEL_EXPORTER_OTLP_CERTIFICATE",
                    other_ca().to_str().unwrap(),
                ),
            ],
        )
        .await;
        assert!(!output.status.success(), "{protocol}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
        assert_eq!(errors.len(), 1, "{stderr}");
        assert!(
            errors[0].contains("OTEL_EXPORTER_OTLP_ENDPOINT")
                && errors[0].contains("UnknownIssuer"),
            "{protocol}: {stderr}"
        );
    }
}

/// The order saga over Kafka's SASL_SSL listener (SCRAM-SHA-512, the CA as
/// `ssl.ca.location`), with the properties passed through as a user would set them; a
/// wrong CA and a wrong password stop the start.
#[cfg(feature = "kafka")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL and Apache Kafka with TLS (.ci/services), and --features kafka"]
async fn kafka_over_sasl_ssl() {
    use oxcart_db as db;
    use oxcart_test_util::kafka::Tls;

    let tls = Tls::from_env();
    let database = TestDatabase::create().await;
    let kafka = |config: &mut Config, ca: &Path| {
        config.database.url = Some(database.url.clone());
        config.database.migration_url = Some(database.direct_url.clone());
        config.kafka.brokers = Some(tls.brokers.clone());
        config.kafka.prefix = format!("t{}.", uuid::Uuid::new_v4().simple());
        config.kafka.replication = 3;
        config.kafka.properties = tls.properties(ca).into_iter().collect();
    };
    let mut used = Config::default();
    let app = TestApp::spawn_with(|c| {
        kafka(c, &ca());
        used = c.clone();
    })
    .await;
    let _topics = oxcart_test_util::cleanup::Cleanup::new(move || async move {
        let _ = oxcart_kafka::delete_topics(&used.kafka().unwrap()).await;
    });
    let admin = app.admin().await;
    let mug = app.api.product(&admin, "Mug", 990, "EUR", 5).await;
    let (customer, _) = app.api.customer().await;
    let order = app.api.place_order(&customer, &[(mug, 1)]).await;
    let id = order.ok(201)["id"].as_str().unwrap().to_owned();
    // The saga ran over the TLS listener.
    crate::helpers::order_reaches(&app.api, &customer, &id, "PAID").await;
    let published: i64 =
        db::query_scalar("SELECT position FROM projection_checkpoints WHERE name = 'kafka-relay'")
            .fetch_one(&mut *app.db.read().await.unwrap())
            .await
            .unwrap();
    assert!(published > 0, "the relay published over TLS");
    app.stop().await;

    let (mut config, _dir) = fresh();
    kafka(&mut config, &other_ca());
    let error = refused(config, Duration::from_secs(30)).await;
    assert!(
        error.contains(&format!("cannot reach Kafka at {}", tls.brokers))
            && error.contains("certificate verify failed"),
        "{error}"
    );

    let (mut config, _dir) = fresh();
    kafka(&mut config, &ca());
    config
        .kafka
        .properties
        .insert("sasl.password".to_owned(), "guessed".to_owned());
    let error = refused(config, Duration::from_secs(30)).await;
    assert!(
        error.contains("cannot reach Kafka") && error.contains("Authentication failed"),
        "{error}"
    );
    assert!(!error.contains("guessed"), "{error}");
}
