//! Distributed mode end to end: four oxcart processes, one per group of services, on
//! PostgreSQL (through PgBouncer when the suite runs behind one) and Apache Kafka (the
//! three-node cluster `.ci/services` starts), placing the backbone's 200 orders.
//!
//! Runs: undisturbed; with the payments process killed (SIGKILL) in the middle of its
//! backlog and started again; with one payments process of two, the consumer group's
//! leader, killed and not replaced; with one Kafka node of three killed while orders are
//! on their way and started again 10 s later; and with PostgreSQL restarted under them.
//! Each must end with the same exactly-once effects, with no hand on it.

use std::path::Path;
use std::time::Duration;

use oxcart::config::Config;
use oxcart_db::{self as db, Db};
use oxcart_test_util::api::Api;
use oxcart_test_util::cleanup::Cleanup;
use oxcart_test_util::kafka::Cluster as Kafka;
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

/// A migrated database, a broker and the four processes, with the scenario's shop set up.
struct Run {
    _database: TestDatabase,
    kafka: Kafka,
    /// Deletes the run's topics when it is over.
    _topics: Cleanup,
    cluster: Cluster,
    web: Process,
    payments: Process,
    mail: Process,
    analytics: Process,
    api: Api,
    db: Db,
    scenario: Scenario,
}

impl Run {
    async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// [`start`](Self::start), with more settings for every process.
    async fn start_with(extra: &[(&str, String)]) -> Self {
        let database = TestDatabase::create().await;
        let kafka = Kafka::from_env();
        // Topics and groups of this run's own, replicated as in production.
        let prefix = format!("t{}.", uuid::Uuid::new_v4().simple());
        let doomed = oxcart_kafka::KafkaConfig {
            brokers: kafka.brokers(),
            prefix: prefix.clone(),
            ..oxcart_kafka::KafkaConfig::default()
        };
        let topics = Cleanup::new(move || async move {
            let _ = oxcart_kafka::delete_topics(&doomed).await;
        });
        let cluster = Cluster {
            data: tempfile::tempdir().unwrap(),
            env: [
                ("DATABASE_URL", database.url.as_str()),
                ("DATABASE_MIGRATION_URL", database.direct_url.as_str()),
                ("KAFKA_BROKERS", &kafka.brokers()),
                ("OXCART_KAFKA__PREFIX", &prefix),
                ("OXCART_KAFKA__REPLICATION", "3"),
                ("OXCART_KAFKA__RELAY_INTERVAL", "50ms"),
                ("OXCART_MIGRATE", "false"),
            ]
            .into_iter()
            .chain(FAST)
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .chain(extra.iter().map(|(k, v)| ((*k).to_owned(), v.clone())))
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
        process::succeeded(migrated);

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
        let scenario = Scenario::set_up(&api, admin).await;
        Self {
            _database: database,
            kafka,
            _topics: topics,
            cluster,
            web,
            payments,
            mail,
            analytics,
            api,
            db,
            scenario,
        }
    }

    /// Places the first 100 orders and waits until the provider has approved 10 charges:
    /// the payments process is then in the middle of its backlog.
    async fn halfway(&mut self) {
        self.scenario.place(&self.api, 0..100).await;
        self.wait_for_charges(10).await;
    }

    /// Waits until the provider has approved `n` charges.
    async fn wait_for_charges(&self, n: i64) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        loop {
            if count(&self.db, CHARGED).await >= n {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "payments approved fewer than {n} charges in 2 minutes"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Settles the 200 orders and checks every effect happened exactly once, the stock
    /// and the analytics agree, and the relay published the whole log.
    async fn assert_settled_exactly_once(&self) -> Audit {
        self.assert_settled_exactly_once_with(&[]).await
    }

    /// [`assert_settled_exactly_once`](Self::assert_settled_exactly_once), with more
    /// processes whose logs to show if it fails.
    async fn assert_settled_exactly_once_with(&self, more: &[&Process]) -> Audit {
        let ids = self.scenario.ids();
        assert_eq!(ids.len(), 200);
        let mut processes = vec![&self.web, &self.payments, &self.mail, &self.analytics];
        processes.extend(more);
        let mail = self.cluster.data.path().join("mail");
        let audit = settle(&self.db, &ids, &mail, &processes).await;
        audit.assert_exactly_once(&ids);
        self.scenario
            .assert_outcome(&self.api, &Api::new(self.analytics.addr), &audit)
            .await;
        let head = crate::saga::head(&self.db).await;
        let published = count(
            &self.db,
            "SELECT position FROM projection_checkpoints WHERE name = 'kafka-relay'",
        )
        .await;
        assert_eq!(published, head, "the relay's checkpoint is the log's head");
        audit
    }
}

/// Approved charges at the provider.
const CHARGED: &str =
    "SELECT COUNT(*) FROM simulated_provider_operations WHERE kind = 'charge' AND approved = 1";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs PostgreSQL and Apache Kafka (.ci/services) and a build with --features kafka"]
async fn four_processes_on_postgres_and_kafka_settle_two_hundred_orders_exactly_once() {
    let mut run = Run::start().await;
    run.scenario.place(&run.api, 0..200).await;
    run.assert_settled_exactly_once().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs PostgreSQL and Apache Kafka (.ci/services) and a build with --features kafka"]
async fn payments_killed_mid_run_and_restarted_loses_and_doubles_nothing() {
    let mut run = Run::start().await;
    run.halfway().await;
    // SIGKILL: no drain, no commit, no leaving the group. Whatever it had in hand is
    // redelivered to the next member, which must not charge or publish it twice.
    run.payments.kill().await;
    let charged_before_the_kill = count(&run.db, CHARGED).await;
    run.scenario.place(&run.api, 100..200).await;
    run.payments = run.cluster.start(PAYMENTS).await;
    let audit = run.assert_settled_exactly_once().await;
    // The first hundred's backlog was unfinished at the kill: the new process took over
    // the dead one's partitions, and not only the orders placed after it.
    let first_hundred: i64 = run.scenario.ids()[..100]
        .iter()
        .filter_map(|id| audit.charges.get(id))
        .sum();
    assert!(
        first_hundred > charged_before_the_kill,
        "the kill came after the first hundred were all charged ({first_hundred})"
    );
}

/// The consumer group's leader (in Kafka's classic protocol, the member that assigns
/// partitions: the first to join, kept while it stays) dies mid-backlog and nobody
/// replaces it: the coordinator notices its silence after the session timeout, the
/// other member rejoins as leader of a group of one, and takes over every partition.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs PostgreSQL and Apache Kafka (.ci/services) and a build with --features kafka"]
async fn the_group_leader_killed_leaves_the_backlog_to_the_other_member() {
    let mut run = Run::start().await;
    // The first payments process has the group to itself, and so leads it; the second
    // joins a group that has a leader.
    run.scenario.place(&run.api, 0..10).await;
    run.wait_for_charges(5).await;
    let second = run.cluster.start(PAYMENTS).await;
    run.scenario.place(&run.api, 10..200).await;
    run.wait_for_charges(30).await;
    run.payments.kill().await;
    let charged_at_the_kill = count(&run.db, CHARGED).await;
    let audit = run.assert_settled_exactly_once_with(&[&second]).await;
    let charged: i64 = audit.charges.values().sum();
    // Only the survivor was left to make the charges after the kill.
    assert!(
        charged > charged_at_the_kill,
        "the backlog was drained before the kill ({charged_at_the_kill} of {charged})"
    );
}

/// One Kafka node of three dies in the middle of 200 orders and comes back 10 s later.
/// With three replicas and two in sync required, writes go on without it; the consumer
/// groups it coordinated move to another node; the relay's idempotent producer resends
/// what was in flight without a duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs PostgreSQL and Apache Kafka (.ci/services) and a build with --features kafka"]
async fn a_kafka_node_killed_mid_run_and_restarted_loses_and_doubles_nothing() {
    let mut run = Run::start().await;
    run.halfway().await;
    let down = run.kafka.kill(2).await;
    run.scenario.place(&run.api, 100..200).await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    down.restart().await;
    run.assert_settled_exactly_once().await;
}

/// PostgreSQL restarted (`pg_ctl restart -m fast`: every session cut) under the four
/// processes: each notices (readiness 503), reconnects by itself (readiness 200 again),
/// and every order still settles exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs PostgreSQL and Apache Kafka (.ci/services) and a build with --features kafka"]
async fn postgres_restarted_mid_run_every_process_reconnects() {
    let mut run = Run::start().await;
    run.halfway().await;
    let processes = [&run.web, &run.payments, &run.mail, &run.analytics];
    let watch: Vec<_> = processes
        .iter()
        .map(|process| Readiness::watch(process.addr))
        .collect();
    oxcart_test_util::postgres::restart_server().await;
    run.scenario.place(&run.api, 100..200).await;
    run.assert_settled_exactly_once().await;
    for (readiness, process) in watch.into_iter().zip(processes) {
        let seen = readiness.stop().await;
        assert!(
            seen.contains(&503),
            "{} never reported itself unready while the database was down: {seen:?}",
            process.addr
        );
        assert_eq!(
            seen.last(),
            Some(&200),
            "{} is ready again at the end",
            process.addr
        );
    }
}

/// The readiness answers of one process, asked every 50 ms until [`stop`](Self::stop),
/// with repeats folded: `[200, 503, 200]`.
struct Readiness {
    task: tokio::task::JoinHandle<Vec<u16>>,
    stop: tokio::sync::oneshot::Sender<()>,
}

impl Readiness {
    fn watch(addr: std::net::SocketAddr) -> Self {
        let (stop, mut stopped) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let api = Api::new(addr);
            let mut seen: Vec<u16> = Vec::new();
            loop {
                let request = api
                    .client()
                    .get(api.url("/health/ready"))
                    .timeout(Duration::from_secs(10));
                let status = request.send().await.map_or(0, |r| r.status().as_u16());
                if seen.last() != Some(&status) {
                    seen.push(status);
                }
                tokio::select! {
                    _ = &mut stopped => return seen,
                    () = tokio::time::sleep(Duration::from_millis(50)) => {}
                }
            }
        });
        Self { task, stop }
    }

    async fn stop(self) -> Vec<u16> {
        let _ = self.stop.send(());
        self.task.await.unwrap()
    }
}

/// One trace across the four processes, read back from Jaeger: the context crosses Kafka
/// in the `traceparent` header the relay sets, and each process reports under its own
/// service name.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs PostgreSQL, Apache Kafka and Jaeger (.ci/services) and a build with --features kafka"]
async fn one_trace_crosses_the_processes_through_kafka_headers() {
    use crate::traces::{
        Caller, SAGA_WITHIN, Services, assert_saga_trace, exporting_to, place_traced_order,
        saga_done,
    };
    use oxcart_test_util::jaeger::Jaeger;
    use oxcart_test_util::otlp::Traces as _;
    use oxcart_test_util::services::var;

    let jaeger = Jaeger::from_env();
    let run = Run::start_with(&exporting_to(&var("OXCART_TEST_OTLP_HTTP"))).await;
    let (customer, _) = run.api.customer().await;
    let product = run.scenario.mug;
    let caller = Caller::new();
    place_traced_order(&run.api, &customer, product, &caller).await;
    let trace = jaeger
        .whole_trace(&caller.trace_id, &caller.span_id, SAGA_WITHIN, saga_done)
        .await;
    let services = Services {
        orders: "oxcart-users-catalog-orders",
        payments: "oxcart-payments",
        mail: "oxcart-notifications-invoices",
    };
    assert_saga_trace(&trace, &caller, &services, true);

    // The relay's metrics, which a process on the embedded log does not have, are there
    // for the rules and dashboards that query them.
    let mut exposed = String::new();
    for process in [&run.web, &run.payments, &run.mail, &run.analytics] {
        exposed += &Api::new(process.addr).get("/metrics", None).await.text;
    }
    for name in crate::metrics::KAFKA_ONLY {
        assert!(
            exposed.lines().any(|line| line.starts_with(name)),
            "no process exposes {name}"
        );
    }
}
