//! `TestApp`: the real application, in-process, on a free port with its own database.

use oxcart::App;
use oxcart::config::Config;
use oxcart_test_util::api::{Api, PASSWORD};
use oxcart_test_util::postgres::TestDatabase;
use oxcart_users::Users;
use oxcart_users::domain::Registration;
use tempfile::TempDir;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub struct TestApp {
    pub api: Api,
    pub config: Config,
    /// Holds the data directory until the test ends.
    _dir: TempDir,
    /// Holds the PostgreSQL database, when the suite runs on one, until the test ends.
    _postgres: Option<TestDatabase>,
    pub db: oxcart_db::Db,
    shutdown: CancellationToken,
    handle: JoinHandle<anyhow::Result<()>>,
}

/// With `OXCART_TEST_BACKEND=postgres` the suite runs on PostgreSQL: each app gets a
/// database of its own (reached through PgBouncer when `OXCART_TEST_PGBOUNCER` is set).
pub async fn on_postgres(config: &mut Config) -> Option<TestDatabase> {
    if std::env::var("OXCART_TEST_BACKEND").as_deref() != Ok("postgres") {
        return None;
    }
    let database = TestDatabase::create().await;
    config.database.url = Some(database.url.clone());
    config.database.migration_url = Some(database.direct_url.clone());
    Some(database)
}

/// Shares rate limits and ended sessions through the test Redis (over TLS), under
/// `prefix`, so that the processes of one test share them and no others.
pub fn on_redis(config: &mut Config, prefix: &str) {
    config.redis.url = Some(oxcart_test_util::services::var("OXCART_TEST_REDIS_TLS"));
    config.redis.key_prefix = prefix.to_owned();
    config.tls.ca_file = Some(oxcart_test_util::services::ca());
}

/// Creates an admin in `db` the way `oxcart users create-admin` does, and signs it in
/// through `api`.
pub async fn create_admin(config: &Config, db: &oxcart_db::Db, api: &Api) -> String {
    let email = format!("admin-{}@example.com", Uuid::new_v4().simple());
    let key = oxcart::signing_key(config).unwrap();
    let users = Users::new(db.clone(), key, &config.users);
    let registration = Registration::parse(&email, PASSWORD.to_owned(), None).unwrap();
    users.create_admin(registration).await.unwrap();
    api.token(&email, PASSWORD).await
}

/// Waits (up to 30 s) until order `id`, read as `token`, has `status`.
pub async fn order_reaches(api: &Api, token: &str, id: &str, status: &str) {
    for _ in 0..600 {
        let order = api.get(&format!("/api/orders/{id}"), Some(token)).await;
        if order.body["status"] == status {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("order {id} never reached {status}");
}

/// The payment of order `id`, read as `token`.
pub async fn payment(api: &Api, token: &str, id: &str) -> serde_json::Value {
    let reply = api
        .get(&format!("/api/payments?orderId={id}"), Some(token))
        .await;
    reply.ok(200)["items"][0].clone()
}

/// Waits (up to 15 s) until the payment of order `id`, read as `token`, is as `done`
/// says (`what` names it for the failure message); returns it.
pub async fn payment_until(
    api: &Api,
    token: &str,
    id: &str,
    what: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    for _ in 0..300 {
        let payment = payment(api, token, id).await;
        if done(&payment) {
            return payment;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!(
        "the payment of {id} never {what}: {}",
        payment(api, token, id).await
    );
}

/// Waits (up to 5 s) until `check` answers something; returns it, or panics naming `what`.
pub async fn eventually<T, F: std::future::Future<Output = Option<T>>>(
    what: &str,
    check: impl Fn() -> F,
) -> T {
    for _ in 0..100 {
        if let Some(found) = check().await {
            return found;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("never {what}");
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    /// Starts the app with the test defaults changed by `configure`.
    pub async fn spawn_with(configure: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let mut config = Config {
            data_dir: dir.path().to_owned(),
            ..Config::default()
        };
        config.http.listen = "127.0.0.1:0".parse().unwrap();
        let postgres = on_postgres(&mut config).await;
        configure(&mut config);
        let app = App::build(config.clone()).await.expect("app builds");
        let addr = app.local_addr();
        let db = app.db().clone();
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn(app.run(shutdown.clone()));
        Self {
            api: Api::new(addr),
            config,
            _dir: dir,
            _postgres: postgres,
            db,
            shutdown,
            handle,
        }
    }

    /// Creates an admin the way `oxcart users create-admin` does and signs it in.
    pub async fn admin(&self) -> String {
        create_admin(&self.config, &self.db, &self.api).await
    }

    /// Signals shutdown and waits for the app to drain and stop.
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.handle
            .await
            .expect("app task")
            .expect("app stops cleanly");
    }
}

/// The `text/plain` part of a message, decoded (base64 or quoted-printable).
pub fn plain_text(eml: &str) -> String {
    use base64::Engine as _;
    let eml = eml.replace("\r\n", "\n");
    let part = eml
        .split("\n--")
        .find(|part| part.contains("Content-Type: text/plain"))
        .unwrap_or_else(|| panic!("no text/plain part: {eml}"));
    let (headers, body) = part.split_once("\n\n").unwrap_or((part, ""));
    if headers.contains("Content-Transfer-Encoding: base64") {
        let joined: String = body.split_whitespace().collect();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(joined)
            .unwrap();
        String::from_utf8(bytes).unwrap()
    } else if headers.contains("Content-Transfer-Encoding: quoted-printable") {
        let joined = body.replace("=\n", "");
        let mut bytes = Vec::new();
        let mut rest = joined.as_bytes();
        while let Some((&b, tail)) = rest.split_first() {
            match (
                b,
                tail.get(..2)
                    .and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok()),
            ) {
                (b'=', Some(decoded)) => {
                    bytes.push(decoded);
                    rest = &tail[2..];
                }
                _ => {
                    bytes.push(b);
                    rest = tail;
                }
            }
        }
        String::from_utf8(bytes).unwrap()
    } else {
        body.to_owned()
    }
}

/// A port nothing listens on (yet).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
