//! Distributed mode end to end: four oxcart processes, one per group of services, on
//! PostgreSQL (through PgBouncer when the suite runs behind one) and a Kafka-protocol
//! broker (tansu), placing the backbone's 200 orders.
//!
//! Not here yet: killing the payments process mid-run, and restarting the broker. Both
//! were tried and neither settled. After a SIGKILL in the middle of a batch, the
//! replacement member of `payment-service` received nothing for four minutes (its lag
//! gauge stood at the backlog, no error was logged, the database held no lock); a kill
//! between batches recovered in about 15 s. The cause, in oxcart or in tansu 0.6's group
//! coordinator, is not yet isolated; issue 4 keeps both open.

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
async fn settle(db: &Db, ids: &[String], mail: &Path, processes: &[&Process]) -> Audit {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(240);
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
        if tokio::time::Instant::now() >= deadline {
            for process in processes {
                for line in process.logs() {
                    if line["level"] != "INFO" {
                        eprintln!("{line}");
                    }
                }
            }
            let mut statuses: Vec<_> = audit.status.values().cloned().collect();
            statuses.sort();
            statuses.dedup();
            let counts: Vec<_> = statuses
                .iter()
                .map(|s| (s, audit.status.values().filter(|v| *v == s).count()))
                .collect();
            panic!(
                "not settled: {missing} orders lack an effect, analytics agree on {analysed}; \
                 statuses {counts:?}, {} e-mails, {} invoices",
                audit.mails.len(),
                audit.invoices.len()
            );
        }
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
async fn four_processes_on_postgres_and_kafka_settle_two_hundred_orders_exactly_once() {
    let database = TestDatabase::create().await;
    let logs = tempfile::tempdir().unwrap();
    let broker = Broker::start(logs.path()).await;
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
    let mail = cluster.start(MAIL).await;
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

    scenario.place(&api, 0..200).await;

    let ids = scenario.ids();
    assert_eq!(ids.len(), 200);
    let processes = [&web, &payments, &mail, &analytics];
    let audit = settle(&db, &ids, &cluster.data.path().join("mail"), &processes).await;
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
