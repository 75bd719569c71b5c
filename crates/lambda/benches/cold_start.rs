//! Cold start of each function binary: from process start to its first request to the
//! Lambda Runtime API (`GET /2018-06-01/runtime/invocation/next`), which is when the
//! runtime is ready for an invocation. Lambda's own init (downloading and unpacking the
//! zip, starting the micro-VM) comes on top and is not measured here.
//!
//! A local socket stands in for the Runtime API: it answers nothing, so each run is only
//! the init. `cargo bench -p oxcart-lambda --bench cold_start` prints, per function, the
//! minimum, median and 95th percentile of 30 starts, and the binary's size.

use std::io::{BufRead as _, BufReader};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const RUNS: usize = 30;

fn start(binary: &str, function: &str) -> Duration {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
    let api = listener.local_addr().expect("bound").to_string();
    let began = Instant::now();
    let mut child = Command::new(binary)
        .env_clear()
        .envs([
            ("AWS_LAMBDA_RUNTIME_API", api.as_str()),
            ("AWS_LAMBDA_FUNCTION_NAME", function),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256"),
            ("AWS_LAMBDA_FUNCTION_VERSION", "1"),
            ("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/bench"),
            ("AWS_LAMBDA_LOG_STREAM_NAME", "bench"),
            ("AWS_REGION", "eu-west-1"),
            ("AWS_ACCESS_KEY_ID", "bench"),
            ("AWS_SECRET_ACCESS_KEY", "bench"),
            ("EVENTS_TABLE", "oxcart-events"),
            ("STATE_TABLE", "oxcart-state"),
            ("ORDERS_TABLE", "oxcart-orders"),
            (
                "ORDER_QUEUE_URL",
                "https://sqs.eu-west-1.amazonaws.com/123456789012/oxcart-process-order.fifo",
            ),
            ("OXCART_ORDERS__CATALOG_URL", "http://127.0.0.1:9"),
            (
                "OXCART_JWT_PUBLIC_KEY",
                "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo",
            ),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the function binary starts");
    let (stream, _) = listener.accept().expect("the runtime polls");
    let elapsed = began.elapsed();
    let mut line = String::new();
    BufReader::new(&stream)
        .read_line(&mut line)
        .expect("a request line");
    assert!(
        line.starts_with("GET /2018-06-01/runtime/invocation/next"),
        "{function}: first request was {line:?}"
    );
    // Stopped while its request is still open, so it exits without complaint.
    child.kill().ok();
    child.wait().ok();
    drop(stream);
    elapsed
}

fn main() {
    // `cargo bench` passes `--bench`; a filter selects functions by name.
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let functions = [
        ("create-order", env!("CARGO_BIN_EXE_create-order")),
        ("get-order", env!("CARGO_BIN_EXE_get-order")),
        ("relay", env!("CARGO_BIN_EXE_relay")),
        ("process-order", env!("CARGO_BIN_EXE_process-order")),
    ];
    println!("function        min      median   p95      binary");
    for (name, binary) in functions {
        if !filter.is_empty() && !filter.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        start(binary, name); // warm the page cache, as Lambda's is after download
        let mut times: Vec<Duration> = (0..RUNS).map(|_| start(binary, name)).collect();
        times.sort_unstable();
        let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1000.0);
        let size = std::fs::metadata(binary).map(|m| m.len()).unwrap_or(0);
        println!(
            "{name:<15} {:<8} {:<8} {:<8} {:.1} MB",
            ms(times[0]),
            ms(times[RUNS / 2]),
            ms(times[RUNS * 95 / 100]),
            size as f64 / 1e6
        );
    }
}
