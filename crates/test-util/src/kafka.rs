//! A Kafka-protocol broker for tests: tansu, started by the test itself on a free port,
//! and killed when the test drops it.
//!
//! `OXCART_TEST_TANSU` is the tansu binary (`.ci/run` installs it with `cargo install
//! tansu --locked --features dynostore,postgres,libsql`). Its storage is a SQLite file
//! (`sqlite://`); tansu's in-memory engine reports high watermarks that lag.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::process::{Child, Command};

pub struct Broker {
    bin: PathBuf,
    storage: String,
    dir: PathBuf,
    pub addr: SocketAddr,
    child: Option<Child>,
}

/// The tansu binary the tests run.
pub fn tansu() -> PathBuf {
    std::env::var_os("OXCART_TEST_TANSU")
        .map(PathBuf::from)
        .expect("OXCART_TEST_TANSU names the tansu binary (.ci/run installs it)")
}

impl Broker {
    /// Starts tansu on a free port with its log in `dir`.
    pub async fn start(dir: &Path) -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut broker = Self {
            bin: tansu(),
            // tansu reads the path relative to its working directory. (Its in-memory
            // engine is no stand-in: its log dies with it, and its high watermarks lag.)
            storage: "sqlite://tansu.db".to_owned(),
            dir: dir.to_owned(),
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            child: None,
        };
        broker.run().await;
        broker
    }

    /// `host:port`, for `KAFKA_BROKERS`.
    pub fn brokers(&self) -> String {
        self.addr.to_string()
    }

    /// Kills the broker as a crash would (SIGKILL).
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.expect("kill tansu");
        }
    }

    /// Starts a killed broker again, on the same port and storage.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "the broker is running");
        self.run().await;
    }

    async fn run(&mut self) {
        let url = format!("tcp://{}", self.addr);
        // Its log goes to `tansu.log` beside its storage; `OXCART_TEST_TANSU_LOG` sets
        // the level (`RUST_LOG` syntax) when a test needs to see the group coordinator.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("tansu.log"))
            .expect("open tansu.log");
        let level = std::env::var("OXCART_TEST_TANSU_LOG").unwrap_or_else(|_| "warn".to_owned());
        let child = Command::new(&self.bin)
            .arg("broker")
            .args(["--listener-url", &url])
            .args(["--advertised-listener-url", &url])
            .args(["--storage-engine", &self.storage])
            .current_dir(&self.dir)
            .env("RUST_LOG", level)
            .stdout(log.try_clone().expect("tansu.log"))
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.bin.display()));
        self.child = Some(child);
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(self.addr).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("tansu did not listen on {}", self.addr);
    }
}
