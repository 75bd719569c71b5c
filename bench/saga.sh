#!/usr/bin/env bash
# End-to-end benchmark of the order saga on the all-in-one release build: wrk places
# orders (every one paid with the always-approved test card), then bench/saga_report.py
# reads the event log and reports
#   - latency from order.created to order.paid (p50/p90/p99/max): the whole saga, stock
#     reservation, charge and the order's own update, through the log and the consumers;
#   - sustained throughput: paid orders per second from the first order placed to the
#     last one paid, and the time the consumers needed to drain after the load stopped.
#
#   bench/saga.sh                       # 30 s at 16 connections, then 30 s at ~35 orders/s
#   DURATION=60s CONNECTIONS=32 bench/saga.sh
#   OXCART_DATABASE__SQLITE__SYNCHRONOUS=normal bench/saga.sh   # fsync at checkpoints only
#   BENCH_MODE=distributed bench/saga.sh              # four processes, PostgreSQL, Kafka
set -euo pipefail
cd "$(dirname "$0")/.."
duration="${DURATION:-30s}" connections="${CONNECTIONS:-16}"
. bench/lib.sh

report() {
    # Wait until every placed order is paid, then read the log.
    python3 bench/saga_report.py "$DATABASE" "$1" "$work/bench-mark"
}

echo "== saturation: POST /api/orders at $connections connections for $duration"
MODE=place wrk -t1 -c"$connections" -d"$duration" --latency -s bench/orders.lua "$base" | grep -E "Requests/sec|responses other"
report saturation

echo "== light load: 1 connection, 25 ms between orders, for $duration (latency without queueing)"
DELAY_MS=25 MODE=place wrk -t1 -c1 -d"$duration" -s bench/orders.lua "$base" | grep -E "Requests/sec|responses other"
report light
