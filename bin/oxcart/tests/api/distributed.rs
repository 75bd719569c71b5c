//! Distributed mode end to end: four oxcart processes, one per group of services, on
//! PostgreSQL and a Kafka-protocol broker (tansu), placing the backbone's 200 orders
//! while the payments process is killed and the broker is restarted.

use std::path::Path;
use std::time::Duration;

use oxcart::config::Config;
use oxcart_platform::db::{self, Db};
use oxcart_test_util::api::Api;
use oxcart_test_util::kafka::Broker;
use oxcart_test_util::postgres::TestDatabase;
use oxcart_test_util::process::{self, Process};

use crate::saga::{Audit, FAST, Scenario, audit};

const BIN: &str = env!("CARGO_BIN_EXE_oxcart");

/// The four processes of the test, as a deployment would split them.
const WEB: &str = "users,catalog,orders";
const PAYMENTS: &str = "payments";
const MAIL: &str = "notifications,invoices";
const ANALYTICS: &str = "analytics";

struct Cluster {
    data: tempfile::TempDir,
    env: Vec<(String, String)>,
}

impl Cluster {
    async fn start(&self, services: &str) -> Process {
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        Process::start_with_env(
            Path::new(BIN),
            self.data.path(),
            &["--services", services],
            &env,
        )
        .await
    }
}

/// Waits until every order has its every effect, and the analytics have seen each
/// order's final state; then waits a little more, so that a duplicate on its way would
/// be counted, and returns what happened.
async fn settle(db: &Db, ids: &[String], mail: &Path) -> Audit {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    loop {
        let audit = audit(db, mail).await;
        let missing = ids
            .iter()
            .filter(|id| match audit.status.get(*id).map(String::as_str) {
                Some("PAID") => {
                    audit.mails(id, "order-confirmation") == 0
                        || !audit.invoices.iter().any(|(_, order)| order == *id)
                }
                Some("PAYMENT_FAILED") => audit.mails(id, "payment-failed") == 0,
                Some("CANCELLED") => audit.mails(id, "order-cancelled") == 0,
                _ => true,
            })
            .count();
        let analysed: i64 = db::query_scalar(
            "SELECT COUNT(*) FROM analytics_orders a JOIN order_read_model o \
             ON o.order_id = a.order_id AND o.status = a.status",
        )
        .fetch_one(&mut *db.read().await.unwrap())
        .await
        .unwrap();
        if missing == 0 && analysed == ids.len() as i64 {
            tokio::time::sleep(Duration::from_secs(3)).await;
            return crate::saga::audit(db, mail).await;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not settled: {missing} orders lack an effect, analytics agree on {analysed}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn count(db: &Db, sql: &str) -> i64 {
    db::query_scalar(sql)
        .fetch_one(&mut *db.read().await.unwrap())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs tansu (OXCART_TEST_TANSU) and a build with --features kafka; .ci/run provides both"]
async fn four_processes_on_postgres_and_kafka_survive_a_crash_and_a_broker_restart() {
    let database = TestDatabase::create().await;
    let logs = tempfile::tempdir().unwrap();
    let mut broker = Broker::start(logs.path()).await;
    let cluster = Cluster {
        data: tempfile::tempdir().unwrap(),
        env: [
            ("DATABASE_URL", database.url.as_str()),
            ("DATABASE_MIGRATION_URL", database.direct_url.as_str()),
            ("KAFKA_BROKERS", &broker.brokers()),
            ("OXCART_KAFKA_RELAY_INTERVAL", "50ms"),
            ("OXCART_MIGRATE", "false"),
        ]
        .into_iter()
        .chain(FAST)
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect(),
    };
    let data = cluster.data.path().to_str().unwrap();
    let migrated = process::run(
        Path::new(BIN),
        &[
            "migrate",
            "--data-dir",
            data,
            "--database-url",
            &database.direct_url,
        ],
        None,
    )
    .await;
    assert!(
        migrated.status.success(),
        "{}",
        String::from_utf8_lossy(&migrated.stderr)
    );

    // The web process first: it makes the signing key the others share.
    let web = cluster.start(WEB).await;
    let payments = cluster.start(PAYMENTS).await;
    let _mail = cluster.start(MAIL).await;
    let analytics = cluster.start(ANALYTICS).await;
    let api = Api::new(web.addr);
    let db = oxcart_postgres::connect(&database.direct_url, &[], &Default::default())
        .await
        .unwrap();
    let config = Config {
        data_dir: cluster.data.path().to_owned(),
        ..Config::default()
    };
    let admin = crate::helpers::create_admin(&config, &db, &api).await;
    let mut scenario = Scenario::set_up(&api, admin).await;

    // Half the orders; the payments process dies as soon as it has charged one.
    scenario.place(&api, 0..100).await;
    let charges = "SELECT COUNT(*) FROM simulated_provider_operations WHERE kind = 'charge'";
    while count(&db, charges).await == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    payments.kill().await;
    let waiting = count(
        &db,
        "SELECT COUNT(*) FROM order_read_model WHERE status = 'CREATED'",
    )
    .await;
    // More orders while payments is down; then the broker goes down too, and orders
    // are still taken (the log holds them), then it comes back.
    scenario.place(&api, 100..150).await;
    broker.stop().await;
    scenario.place(&api, 150..175).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    broker.resume().await;
    scenario.place(&api, 175..200).await;
    let _payments = cluster.start(PAYMENTS).await;

    let ids = scenario.ids();
    assert_eq!(ids.len(), 200);
    let audit = settle(&db, &ids, &cluster.data.path().join("mail")).await;
    assert!(
        waiting > 0 || audit.status.values().all(|s| s != "CREATED"),
        "the payments process was killed before the saga had finished"
    );
    audit.assert_exactly_once(&ids);
    scenario
        .assert_outcome(&api, &Api::new(analytics.addr), &audit)
        .await;
    // The relay published everything: its checkpoint is the log's head.
    let head = count(&db, "SELECT COALESCE(MAX(position), 0) FROM events").await;
    let published = count(
        &db,
        "SELECT position FROM projection_checkpoints WHERE name = 'kafka-relay'",
    )
    .await;
    assert_eq!(published, head);
}
