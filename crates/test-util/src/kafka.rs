//! The Apache Kafka cluster the suites run against: three KRaft nodes that `.ci/services`
//! starts (each broker and controller), shared by every test.
//!
//! A test keeps to itself with a topic and group prefix of its own. The fault tests stop
//! a node as a crash would and start it again through the files `.ci/services` leaves
//! beside each node: `<OXCART_TEST_SERVICES>/kafka/node-<n>/pid` and `…/start`.
//!
//! | variable | what |
//! | --- | --- |
//! | `OXCART_TEST_KAFKA` | the PLAINTEXT bootstrap list, `127.0.0.1:19091,…` |
//! | `OXCART_TEST_KAFKA_TLS` | the SASL_SSL bootstrap list, `localhost:19191,…` |
//! | `OXCART_TEST_KAFKA_USER`, `…_PASSWORD` | the SCRAM-SHA-512 account of the TLS listener |
//! | `OXCART_TEST_CA` | the CA that signed the brokers' certificate |
//! | `OXCART_TEST_SERVICES` | `.ci/services`' state directory |

use std::path::PathBuf;
use std::time::Duration;

use tokio::process::Command;

use crate::services::{self, var};

/// The cluster, as the environment describes it.
#[derive(Debug, Clone)]
pub struct Cluster {
    brokers: String,
}

impl Cluster {
    /// The cluster `.ci/services` started (`OXCART_TEST_KAFKA`).
    pub fn from_env() -> Self {
        Self {
            brokers: var("OXCART_TEST_KAFKA"),
        }
    }

    /// `host:port,…`, for `KAFKA_BROKERS`.
    pub fn brokers(&self) -> String {
        self.brokers.clone()
    }

    /// The nodes, numbered from 1 as their `node.id`s are.
    pub fn nodes(&self) -> usize {
        self.brokers.split(',').count()
    }

    /// Kills node `n` as a crash would (SIGKILL). It comes back when the returned guard
    /// is [restarted](Down::restart), or dropped: a failing test must not leave the next
    /// one a broker short.
    pub async fn kill(&self, n: usize) -> Down {
        let node = node_dir(n);
        let pid = std::fs::read_to_string(node.join("pid")).unwrap_or_else(|e| {
            panic!("no pid file for Kafka node {n} in {}: {e}", node.display())
        });
        let status = Command::new("kill")
            .args(["-KILL", pid.trim()])
            .status()
            .await
            .expect("kill runs");
        assert!(
            status.success(),
            "Kafka node {n} (pid {}) was not running",
            pid.trim()
        );
        // Gone when its port no longer answers.
        let port = self.port(n);
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_err()
            {
                return Down {
                    node: n,
                    port,
                    up: false,
                };
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "Kafka node {n} still answers on port {port} after SIGKILL to pid {}",
            pid.trim()
        );
    }

    fn port(&self, n: usize) -> u16 {
        let address = self
            .brokers
            .split(',')
            .nth(n - 1)
            .unwrap_or_else(|| panic!("the cluster has no node {n}"));
        let (_, port) = address.rsplit_once(':').expect("host:port");
        port.parse().expect("a port")
    }
}

fn node_dir(n: usize) -> PathBuf {
    services::dir().join("kafka").join(format!("node-{n}"))
}

/// A node killed by [`Cluster::kill`].
#[must_use = "the node restarts when this is dropped"]
pub struct Down {
    node: usize,
    port: u16,
    up: bool,
}

impl Down {
    /// Starts the node again, on its own log directory, and waits until it listens.
    pub async fn restart(mut self) {
        self.start();
        for _ in 0..1200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "Kafka node {} did not listen again within 2 minutes",
            self.node
        );
    }

    fn start(&mut self) {
        if std::mem::replace(&mut self.up, true) {
            return;
        }
        let script = node_dir(self.node).join("start");
        let status = std::process::Command::new(&script)
            .status()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        assert!(status.success(), "{} failed", script.display());
    }
}

impl Drop for Down {
    fn drop(&mut self) {
        self.start();
    }
}

/// The TLS listener: `SASL_SSL` with SCRAM-SHA-512, verified against the test CA.
#[derive(Debug, Clone)]
pub struct Tls {
    pub brokers: String,
    pub user: String,
    pub password: String,
    pub ca: PathBuf,
}

impl Tls {
    pub fn from_env() -> Self {
        Self {
            brokers: var("OXCART_TEST_KAFKA_TLS"),
            user: var("OXCART_TEST_KAFKA_USER"),
            password: var("OXCART_TEST_KAFKA_PASSWORD"),
            ca: services::ca(),
        }
    }

    /// The librdkafka properties that reach it, with the CA file `ca`.
    pub fn properties(&self, ca: &std::path::Path) -> Vec<(String, String)> {
        [
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanisms", "SCRAM-SHA-512"),
            ("sasl.username", self.user.as_str()),
            ("sasl.password", self.password.as_str()),
            ("ssl.ca.location", ca.to_str().expect("a UTF-8 path")),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }
}
