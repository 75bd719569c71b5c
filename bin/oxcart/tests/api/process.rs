//! The real binary as a child process: crash recovery, graceful shutdown, the CLI.

use oxcart_db as db;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use oxcart_test_util::api::{Api, PASSWORD};
use oxcart_test_util::process::{self, Process};

use crate::saga;
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_oxcart");

/// An admin made with the CLI, on the process's data directory; returns the e-mail.
pub async fn create_admin(data_dir: &Path) -> String {
    let email = format!("admin-{}@example.com", uuid::Uuid::new_v4().simple());
    let dir = data_dir.to_str().unwrap();
    let output = process::run(
        Path::new(BIN),
        &[
            "users",
            "create-admin",
            "--data-dir",
            dir,
            "--email",
            &email,
            "--password-stdin",
        ],
        Some(&format!("{PASSWORD}\n")),
    )
    .await;
    let output = process::succeeded(output);
    assert!(String::from_utf8_lossy(&output.stdout).contains("created admin"));
    email
}

/// Eight customers placing orders (one of each item, the card by the order's number)
/// until `limit` are placed or the server stops answering; each order the server
/// acknowledged (201) is recorded.
fn customers(
    api: &Api,
    customer: &str,
    product: uuid::Uuid,
    limit: usize,
    placed: &Arc<AtomicUsize>,
    acknowledged: &Arc<Mutex<Vec<String>>>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..8)
        .map(|_| {
            let (api, customer, acknowledged, placed) = (
                api.clone(),
                customer.to_owned(),
                Arc::clone(acknowledged),
                Arc::clone(placed),
            );
            tokio::spawn(async move {
                loop {
                    let n = placed.fetch_add(1, Ordering::SeqCst);
                    if n >= limit {
                        break;
                    }
                    let mut body = oxcart_test_util::api::order_body(&[(product, 1)]);
                    body["paymentToken"] = json!(saga::token(n));
                    let request = api
                        .client()
                        .post(api.url("/api/orders"))
                        .bearer_auth(&customer)
                        .json(&body);
                    let Ok(response) = request.send().await else {
                        break;
                    };
                    if response.status() != 201 {
                        break;
                    }
                    let Ok(order) = response.json::<serde_json::Value>().await else {
                        break;
                    };
                    acknowledged
                        .lock()
                        .unwrap()
                        .push(order["id"].as_str().unwrap().to_owned());
                }
            })
        })
        .collect()
}

/// The crash test: SIGKILL with hundreds of orders in flight through the saga. After a
/// restart every acknowledged order reaches a terminal state, with no double charge, no
/// duplicate e-mail and no gap in the invoice numbers.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_mid_saga_loses_and_doubles_nothing() {
    const ORDERS: usize = 500;
    let dir = tempfile::tempdir().unwrap();
    let mut server = Process::start_with_env(Path::new(BIN), dir.path(), &[], &saga::FAST).await;
    let api = Api::new(server.addr);
    let admin = api.token(&create_admin(dir.path()).await, PASSWORD).await;
    let product = api.product(&admin, "Mug", 990, "EUR", 100_000).await;
    let (customer, _) = api.customer().await;

    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let placed = Arc::new(AtomicUsize::new(0));
    let workers = customers(&api, &customer, product, ORDERS, &placed, &acknowledged);
    for worker in workers {
        worker.await.unwrap();
    }
    // All placed, most still on their way through stock, payment, e-mail and invoice.
    server.kill().await;
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert_eq!(acknowledged.len(), ORDERS);

    let db = oxcart_sqlite::connect(
        &dir.path().join("oxcart.db"),
        &oxcart_sqlite::SqliteConfig::default(),
    )
    .await
    .unwrap();
    let invoiced: i64 = db::query_scalar("SELECT COUNT(*) FROM invoices")
        .fetch_one(&mut *db.read().await.unwrap())
        .await
        .unwrap();
    let paid = ORDERS * 6 / 10 + ORDERS / 10 * 2;
    assert!(
        (invoiced as usize) < paid,
        "the kill came too late to test anything: {invoiced} of {paid} invoices were out"
    );

    let server = Process::start_with_env(Path::new(BIN), dir.path(), &[], &saga::FAST).await;
    saga::settle(&db, &acknowledged, &saga::GROUPS).await;
    let audit = saga::audit(&db, &dir.path().join("mail")).await;
    audit.assert_exactly_once(&acknowledged);
    db.close().await;
    server.terminate().await;
}

/// Twenty SIGKILLs at random moments while eight customers place orders, each followed
/// by a restart that takes up where the last left off. Afterwards every acknowledged order
/// exists and settles, and every order in the log (some were taken by a server killed
/// before it could answer) settles exactly once: one charge, one e-mail, one invoice
/// number without a gap, and the stock down by exactly the orders paid.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_sigkills_under_load_lose_and_double_nothing() {
    use std::hash::{BuildHasher, Hasher};
    const STOCK: i64 = 1_000_000;

    let dir = tempfile::tempdir().unwrap();
    let start = || Process::start_with_env(Path::new(BIN), dir.path(), &[], &saga::FAST);
    let mut server = start().await;
    let api = Api::new(server.addr);
    let admin = api.token(&create_admin(dir.path()).await, PASSWORD).await;
    let product = api.product(&admin, "Mug", 990, "EUR", STOCK).await;
    let (customer, _) = api.customer().await;
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let placed = Arc::new(AtomicUsize::new(0));
    for _ in 0..20 {
        let api = Api::new(server.addr);
        let workers = customers(&api, &customer, product, usize::MAX, &placed, &acknowledged);
        // Somewhere between 50 and 550 ms into the load.
        let moment = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish()
            % 500;
        tokio::time::sleep(Duration::from_millis(50 + moment)).await;
        server.kill().await;
        for worker in workers {
            worker.await.unwrap();
        }
        server = start().await;
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(
        acknowledged.len() >= 20,
        "only {} orders placed",
        acknowledged.len()
    );

    let db = oxcart_sqlite::connect(
        &dir.path().join("oxcart.db"),
        &oxcart_sqlite::SqliteConfig::default(),
    )
    .await
    .unwrap();
    let in_log: Vec<String> =
        db::query_scalar("SELECT aggregate_id FROM events WHERE event_type = 'order.created'")
            .fetch_all(&mut *db.read().await.unwrap())
            .await
            .unwrap();
    for id in &acknowledged {
        assert!(in_log.contains(id), "acknowledged order {id} was lost");
    }
    saga::settle(&db, &in_log, &saga::GROUPS).await;
    let audit = saga::audit(&db, &dir.path().join("mail")).await;
    audit.assert_exactly_once(&in_log);
    let paid = in_log
        .iter()
        .filter(|id| audit.status[*id] == "PAID")
        .count() as i64;
    let stock: i64 = db::query_scalar("SELECT stock FROM products WHERE id = $1")
        .bind(product.to_string())
        .fetch_one(&mut *db.read().await.unwrap())
        .await
        .unwrap();
    assert_eq!(stock, STOCK - paid, "stock after {paid} paid orders");
    db.close().await;
    server.terminate().await;
}

#[tokio::test]
async fn sigterm_finishes_in_flight_requests_and_closes_cleanly() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    let dir = tempfile::tempdir().unwrap();
    let server = Process::start(Path::new(BIN), dir.path(), &[]).await;
    let addr = server.addr;

    // A registration whose headers have arrived but whose body is still on its way.
    let body = json!({ "email": "late@example.com", "password": PASSWORD }).to_string();
    let (first, rest) = body.split_at(12);
    let mut client = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /api/users HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    client.write_all(head.as_bytes()).await.unwrap();
    client.write_all(first.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let stopping = tokio::spawn(server.terminate());
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Draining: no new connections...
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "still accepting after SIGTERM"
    );
    // ...but the request in flight completes.
    client.write_all(rest.as_bytes()).await.unwrap();
    let mut response = String::new();
    client.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 201"), "{response}");

    let status = stopping.await.unwrap();
    assert!(status.success(), "{status:?}");
    // The write-ahead log was folded back into the database on close.
    let wal = dir.path().join("oxcart.db-wal");
    assert!(
        !wal.exists() || std::fs::metadata(&wal).unwrap().len() == 0,
        "WAL left behind"
    );
}

#[tokio::test]
async fn admin_commands_work_on_the_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let migrated = process::run(Path::new(BIN), &["migrate", "--data-dir", data], None).await;
    process::succeeded(migrated);

    let admin_email = create_admin(dir.path()).await;
    let duplicate = process::run(
        Path::new(BIN),
        &[
            "users",
            "create-admin",
            "--data-dir",
            data,
            "--email",
            &admin_email,
            "--password-stdin",
        ],
        Some(PASSWORD),
    )
    .await;
    assert!(!duplicate.status.success());
    assert!(String::from_utf8_lossy(&duplicate.stderr).contains("already exists"));
    let weak = process::run(
        Path::new(BIN),
        &[
            "users",
            "create-admin",
            "--data-dir",
            data,
            "--email",
            "x@example.com",
            "--password",
            "short",
        ],
        None,
    )
    .await;
    assert!(
        String::from_utf8_lossy(&weak.stderr).contains("password must be at least 8 characters")
    );

    let server = Process::start(Path::new(BIN), dir.path(), &[]).await;
    let api = Api::new(server.addr);
    let admin = api.token(&admin_email, PASSWORD).await;
    let product = api.product(&admin, "Mug", 990, "EUR", 10).await;
    let order = api.place_order(&admin, &[(product, 2)]).await;
    let id = order.ok(201)["id"].as_str().unwrap().to_owned();
    api.post(
        &format!("/api/orders/{id}/cancel"),
        Some(&admin),
        &json!({}),
    )
    .await
    .ok(200);
    server.terminate().await;

    let rebuilt = process::run(
        Path::new(BIN),
        &["projections", "rebuild", "--data-dir", data],
        None,
    )
    .await;
    let rebuilt = process::succeeded(rebuilt);
    assert!(
        String::from_utf8_lossy(&rebuilt.stdout).contains(" events, 1 orders"),
        "{}",
        String::from_utf8_lossy(&rebuilt.stdout)
    );

    let document = process::run(Path::new(BIN), &["openapi", "--services", "catalog"], None).await;
    let document: serde_json::Value = serde_json::from_slice(&document.stdout).unwrap();
    assert!(
        document["paths"].get("/api/products").is_some()
            && document["paths"].get("/api/orders").is_none()
    );

    let bad = process::run(
        Path::new(BIN),
        &["serve", "--data-dir", data, "--services", "billing"],
        None,
    )
    .await;
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown service `billing`"));
}

/// `oxcart config check` prints the settings in effect, secrets hidden; a misspelt key in
/// the file stops it and `serve` alike, naming the key and the setting it meant.
#[tokio::test]
async fn config_check_shows_the_settings_and_a_misspelt_key_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("oxcart.toml");
    std::fs::write(
        &file,
        "[http]\nlisten = \"127.0.0.1:9123\"\n\
         [database]\nurl = \"postgres://shop:hunter2@db:5432/shop\"\n\
         [mail]\nsmtp_url = \"smtps://mailer:s3cret@relay:465\"\n\
         [kafka.properties]\n\"sasl.password\" = \"kafka-pw\"\n",
    )
    .unwrap();
    let file = file.to_str().unwrap();
    let checked = process::run(Path::new(BIN), &["config", "check", "--config", file], None).await;
    let shown = String::from_utf8_lossy(&checked.stdout).into_owned();
    process::succeeded(checked);
    // Each setting under its section's header, as the file would have it.
    let settings: toml::Table = toml::from_str(&shown).unwrap();
    for (section, key, value) in [
        ("http", "listen", "127.0.0.1:9123"),
        ("database", "url", "postgres://shop:***@db:5432/shop"),
        ("mail", "smtp_url", "***"),
        ("users", "token_ttl", "15m"),
    ] {
        assert_eq!(
            settings[section][key].as_str(),
            Some(value),
            "{section}.{key} in:\n{shown}"
        );
    }
    assert_eq!(
        settings["kafka"]["properties"]["sasl.password"].as_str(),
        Some("***"),
        "{shown}"
    );
    for secret in ["hunter2", "s3cret", "kafka-pw"] {
        assert!(!shown.contains(secret), "{secret} shown:\n{shown}");
    }

    std::fs::write(
        dir.path().join("typo.toml"),
        "[http]\nlistne = \"127.0.0.1:9123\"\n",
    )
    .unwrap();
    let typo = dir.path().join("typo.toml");
    let typo = typo.to_str().unwrap();
    let data = dir.path().to_str().unwrap();
    for args in [
        vec!["config", "check", "--config", typo],
        vec!["--config", typo, "--data-dir", data],
    ] {
        let refused = process::run(Path::new(BIN), &args, None).await;
        assert!(!refused.status.success(), "{args:?} started");
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(
            stderr.contains("`http.listne` is not a setting (did you mean `http.listen`?)"),
            "{args:?}: {stderr}"
        );
    }
}

#[tokio::test]
async fn log_lines_are_json_carrying_the_request_id_and_route() {
    let dir = tempfile::tempdir().unwrap();
    let server = Process::start(Path::new(BIN), dir.path(), &[]).await;
    let api = Api::new(server.addr);
    let (customer, _) = api.customer().await;
    let reply = api
        .get(
            &format!("/api/orders/{}", uuid::Uuid::now_v7()),
            Some(&customer),
        )
        .await;
    reply.problem(404);
    let request_id = reply.headers["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(reply.body["requestId"], request_id.as_str());

    let line = server
        .log_line(|l| {
            l["spans"]
                .as_array()
                .is_some_and(|s| s.iter().any(|s| s["request_id"] == request_id.as_str()))
        })
        .await
        .unwrap_or_else(|| panic!("no log line for request {request_id}: {:?}", server.logs()));
    let span = &line["spans"][0];
    assert_eq!(
        (
            span["http.route"].as_str(),
            span["http.request.method"].as_str()
        ),
        (Some("/api/orders/{id}"), Some("GET"))
    );
    assert_eq!(line["message"], "request completed");
    assert_eq!(line["status"], 404);
    // Without an OTLP endpoint nothing is exported, but the line still names its trace.
    let trace_id = line["trace_id"].as_str().expect("a trace id");
    assert_eq!(trace_id.len(), 32);
    assert_eq!(line["span_id"].as_str().map(str::len), Some(16));
    server.terminate().await;
}

#[tokio::test]
async fn the_banner_says_where_everything_is() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let mut child = tokio::process::Command::new(BIN)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--log-format",
            "pretty",
            "--data-dir",
        ])
        .arg(dir.path())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut banner = Vec::new();
    let read = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let done = line.starts_with("Ctrl-C");
            banner.push(line);
            if done {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), read)
        .await
        .expect("banner within a minute");
    let banner = banner.join("\n");
    for (label, path) in [
        ("API", "/api"),
        ("Docs", "/docs"),
        ("OpenAPI", "/openapi.json"),
        ("Metrics", "/metrics"),
    ] {
        let shown = banner
            .lines()
            .find(|l| l.trim_start().starts_with(label))
            .unwrap_or_else(|| panic!("{label}: {banner}"));
        assert!(
            shown.contains("http://127.0.0.1:") && shown.ends_with(path),
            "{shown}"
        );
    }
    let data = banner
        .lines()
        .find(|l| l.trim_start().starts_with("Data"))
        .unwrap();
    assert!(
        data.contains(dir.path().to_str().unwrap()) && data.contains("sqlite:"),
        "{data}"
    );
    child.kill().await.unwrap();
}

/// `oxcart keys init` makes the signing key once: a second run, and a server started on
/// the directory afterwards, use the same key (the one the JWKS publishes).
#[tokio::test]
async fn keys_init_makes_the_signing_key_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let init = || async {
        let output =
            process::run(Path::new(BIN), &["keys", "init", "--data-dir", data], None).await;
        let stdout = String::from_utf8_lossy(&process::succeeded(output).stdout).into_owned();
        stdout
            .trim()
            .rsplit_once("(kid ")
            .map(|(_, kid)| kid.trim_end_matches(')').to_owned())
            .unwrap_or_else(|| panic!("no kid in {stdout:?}"))
    };
    let first = init().await;
    assert_eq!(init().await, first, "a second run keeps the key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("jwt-ed25519.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let server = Process::start_with_env(Path::new(BIN), dir.path(), &[], &[]).await;
    let jwks = Api::new(server.addr)
        .get("/.well-known/jwks.json", None)
        .await;
    assert_eq!(jwks.ok(200)["keys"][0]["kid"], first.as_str());
}
