//! Runs the real `oxcart` binary as a child process, for tests that must kill it.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::oneshot;

pub struct Process {
    child: Child,
    pub addr: SocketAddr,
    logs: Arc<Mutex<Vec<Value>>>,
}

impl Process {
    /// Starts `bin serve` on a free port with JSON logs and waits until it listens.
    pub async fn start(bin: &Path, data_dir: &Path, extra: &[&str]) -> Self {
        Self::start_with_env(bin, data_dir, extra, &[]).await
    }

    /// [`start`](Self::start), with settings given as environment variables.
    pub async fn start_with_env(
        bin: &Path,
        data_dir: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        // A free port unless the test chose one.
        let listen = if extra.contains(&"--listen") {
            &[][..]
        } else {
            &["--listen", "127.0.0.1:0"][..]
        };
        let mut child = Command::new(bin)
            .arg("serve")
            .args(listen)
            .args(["--log-format", "json"])
            .arg("--data-dir")
            .arg(data_dir)
            .args(extra)
            .env("OXCART_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("oxcart starts");
        let stderr = child.stderr.take().expect("stderr piped");
        let (ready, listening) = oneshot::channel();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let kept = Arc::clone(&logs);
        tokio::spawn(async move {
            let mut ready = Some(ready);
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let Ok(log) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                kept.lock().expect("log lock").push(log.clone());
                if log["message"] == "listening"
                    && let (Some(tx), Some(addr)) = (ready.take(), log["address"].as_str())
                {
                    let _ = tx.send(addr.parse::<SocketAddr>().expect("address"));
                }
            }
        });
        let addr = tokio::time::timeout(Duration::from_secs(60), listening)
            .await
            .expect("oxcart listens within a minute")
            .expect("oxcart exited before listening");
        Self { child, addr, logs }
    }

    /// Every JSON log line the process has written so far.
    pub fn logs(&self) -> Vec<Value> {
        self.logs.lock().expect("log lock").clone()
    }

    /// The first log line `matches`, waiting up to ten seconds for it: a request's line
    /// is written as its response goes out, and may reach the pipe after the client has
    /// read the response.
    pub async fn log_line(&self, matches: impl Fn(&Value) -> bool) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(line) = self.logs().into_iter().find(|line| matches(line)) {
                return Some(line);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILL: no chance to flush or drain.
    pub async fn kill(&mut self) {
        self.child.kill().await.expect("killed");
    }

    /// SIGTERM, then waits for a clean exit.
    pub async fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().expect("running").to_string();
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill runs");
        assert!(status.success());
        tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("exits")
            .expect("status")
    }
}

/// Runs `bin` with `args` to completion, feeding it `stdin`; returns its output.
pub async fn run(bin: &Path, args: &[&str], stdin: Option<&str>) -> std::process::Output {
    run_in(bin, args, stdin, &[]).await
}

/// Runs `bin` with `args` and the variables `env` to completion; returns its output.
pub async fn run_with_env(bin: &Path, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    run_in(bin, args, None, env).await
}

async fn run_in(
    bin: &Path,
    args: &[&str],
    stdin: Option<&str>,
    env: &[(&str, &str)],
) -> std::process::Output {
    use tokio::io::AsyncWriteExt;
    let mut child = Command::new(bin)
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("command starts");
    let mut input = child.stdin.take().expect("stdin piped");
    if let Some(text) = stdin {
        input
            .write_all(text.as_bytes())
            .await
            .expect("stdin written");
    }
    drop(input);
    tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("finishes")
        .expect("output")
}

/// Asserts that a command succeeded, showing what it wrote to stderr if it did not.
pub fn succeeded(output: std::process::Output) -> std::process::Output {
    assert!(
        output.status.success(),
        "{}: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    output
}
