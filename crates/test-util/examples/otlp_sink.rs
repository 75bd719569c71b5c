//! An OTLP receiver on its own, for benchmarks: prints its HTTP and gRPC endpoints, then
//! counts the spans it receives and reports them every few seconds and when stopped.
//!
//!     cargo run --release -p oxcart-test-util --example otlp_sink
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use oxcart_test_util::otlp::Receiver;

#[tokio::main]
async fn main() {
    let receiver = Receiver::start().await;
    println!("http {}", receiver.http_endpoint());
    println!("grpc {}", receiver.grpc_endpoint());
    let mut ticks = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = ticks.tick() => eprintln!("otlp_sink: {} spans received", receiver.spans().len()),
        }
    }
    eprintln!(
        "otlp_sink: {} spans received in all",
        receiver.spans().len()
    );
}
