//! moto's server, standing in for DynamoDB and SQS: started by the test itself on a free
//! port and killed when the test drops it, so every test has empty tables and queues.
//!
//! `OXCART_TEST_PYTHON` is a Python with `moto[server]` installed (`.ci/run` puts one in
//! its virtualenv).

use std::net::TcpListener;
use std::time::Duration;

use tokio::process::{Child, Command};

pub struct Moto {
    /// `http://127.0.0.1:<port>`, the endpoint for every AWS client.
    pub endpoint: String,
    _child: Child,
}

/// moto's server as `python -m moto.server` runs it, but answering one request at a time.
const ONE_AT_A_TIME: &str = "\
import sys
from werkzeug.serving import run_simple
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
run_simple('127.0.0.1', int(sys.argv[1]), DomainDispatcherApplication(create_backend_app),
           threaded=False, request_handler=MotoRequestHandler)
";

impl Moto {
    /// moto as it ships: a thread per request.
    pub async fn start() -> Self {
        Self::run(&["-m", "moto.server", "--host", "127.0.0.1", "--port"]).await
    }

    /// moto answering one request at a time, for DynamoDB alone. moto checks a
    /// `TransactWriteItems`' conditions and then writes, so two transactions under the
    /// same condition on two threads can both succeed, where DynamoDB lets one; the event
    /// store's contract races appends on purpose. (Not for SQS: a long poll would hold
    /// every other request.)
    pub async fn start_one_at_a_time() -> Self {
        Self::run(&["-c", ONE_AT_A_TIME]).await
    }

    async fn run(args: &[&str]) -> Self {
        let python = std::env::var("OXCART_TEST_PYTHON")
            .expect("OXCART_TEST_PYTHON names a Python with moto[server] (.ci/run provides it)");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new(&python)
            .args(args)
            .arg(port.to_string())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start moto with {python}: {e}"));
        let endpoint = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        for _ in 0..300 {
            // moto answers its own dashboard once every service is loaded.
            if client
                .get(format!("{endpoint}/moto-api/"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return Self {
                    endpoint,
                    _child: child,
                };
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("moto did not answer on {endpoint}");
    }
}
