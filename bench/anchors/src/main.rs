//! The anchors `bench/anchors.sh` measures beside oxcart, in the same run, so that every
//! figure can be read as a ratio to what the machine does without oxcart:
//!
//! - `serve`: a bare axum handler answering `GET /api/orders/{id}` with an order's JSON of
//!   the same shape and size as oxcart's, and no middleware, authentication or storage;
//! - `sqlite`: raw SQLite (rusqlite, WAL, `synchronous=FULL`, as oxcart's default) taking
//!   durable transactions of a given number of rows, one after another, for a while.
//!
//! pgbench is the PostgreSQL anchor; the script runs it.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use axum::extract::Path;
use axum::routing::get;
use axum::{Json, Router};
use clap::{Parser, Subcommand};
use serde::Serialize;
use uuid::Uuid;

#[derive(Parser)]
#[command(about = "The benchmark's anchors: this machine without oxcart")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serves `GET /api/orders/{id}` from a bare axum handler until killed.
    Serve {
        #[arg(long, default_value = "127.0.0.1:8090")]
        listen: String,
    },
    /// Inserts rows into a fresh SQLite file in durable transactions and prints the rate.
    Sqlite {
        /// The database file (replaced).
        #[arg(long)]
        path: PathBuf,
        /// Rows per transaction.
        #[arg(long, default_value_t = 1)]
        rows: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Serve { listen } => serve(&listen),
        Command::Sqlite {
            path,
            rows,
            seconds,
        } => sqlite(&path, rows, Duration::from_secs(seconds)),
    }
}

/// What oxcart answers for an order with one line (the fields, not the values, matter).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Order {
    id: Uuid,
    customer_id: Uuid,
    status: &'static str,
    currency: &'static str,
    total_amount: i64,
    items: Vec<Line>,
    shipping_address: Address,
    version: u64,
    created_at: &'static str,
    updated_at: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Line {
    product_id: Uuid,
    sku: &'static str,
    name: &'static str,
    quantity: u32,
    unit_price: i64,
    line_total: i64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Address {
    name: &'static str,
    line1: &'static str,
    city: &'static str,
    postal_code: &'static str,
    country: &'static str,
}

async fn order(Path(id): Path<Uuid>) -> Json<Order> {
    Json(Order {
        id,
        customer_id: Uuid::nil(),
        status: "PAID",
        currency: "EUR",
        total_amount: 2900,
        items: vec![Line {
            product_id: Uuid::nil(),
            sku: "BENCH-1",
            name: "Bench mug",
            quantity: 2,
            unit_price: 1450,
            line_total: 2900,
        }],
        shipping_address: Address {
            name: "Bench",
            line1: "1 Road",
            city: "London",
            postal_code: "N1",
            country: "GB",
        },
        version: 4,
        created_at: "2026-11-29T08:00:00.000000Z",
        updated_at: "2026-11-29T08:00:00.012345Z",
    })
}

#[tokio::main]
async fn serve(listen: &str) -> anyhow::Result<()> {
    let app = Router::new().route("/api/orders/{id}", get(order));
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    axum::serve(listener, app).await?;
    Ok(())
}

/// One writer, one transaction after another, each durable before the next begins: the
/// most a single SQLite writer commits on this disk.
fn sqlite(path: &std::path::Path, rows: usize, run_for: Duration) -> anyhow::Result<()> {
    for suffix in ["", "-wal", "-shm"] {
        let mut file = path.as_os_str().to_owned();
        file.push(suffix);
        let _ = std::fs::remove_file(file);
    }
    let mut db = rusqlite::Connection::open(path)?;
    db.pragma_update(None, "journal_mode", "WAL")?;
    db.pragma_update(None, "synchronous", "FULL")?;
    db.execute_batch("CREATE TABLE rows (id TEXT PRIMARY KEY, body TEXT NOT NULL)")?;
    let body = "x".repeat(200);
    let (mut transactions, mut written) = (0u64, 0u64);
    let started = Instant::now();
    while started.elapsed() < run_for {
        let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        {
            let mut insert = tx.prepare_cached("INSERT INTO rows (id, body) VALUES (?1, ?2)")?;
            for _ in 0..rows {
                insert.execute((Uuid::new_v4().to_string(), &body))?;
            }
        }
        tx.commit()?;
        transactions += 1;
        written += rows as u64;
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{{\"rowsPerTransaction\":{rows},\"transactionsPerSecond\":{:.0},\"rowsPerSecond\":{:.0}}}",
        transactions as f64 / seconds,
        written as f64 / seconds
    );
    Ok(())
}
