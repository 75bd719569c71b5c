#!/usr/bin/env bash
# oxcart beside its anchors, in one run on one machine, as a table of ratios.
#
# The anchors are what this machine does without oxcart, measured minutes apart from it:
#   - a bare axum handler answering an order's JSON (bench/anchors), for the read path;
#   - raw SQLite (WAL, synchronous=FULL), durable transactions of 1 and of 64 rows, for
#     the write path and the saga (a paid order writes about a dozen rows);
#   - pgbench, single-row inserts at the same 16 clients, when PostgreSQL is running
#     (.ci/services start), the anchor of the distributed figures.
# oxcart's figures: POST /api/orders at saturation with the saga running, paid orders/s
# sustained, created->paid at fixed offered rates of 500/s and 1,000/s (oha, open loop:
# a slow response does not slow the offered rate, so queueing shows as latency), GET
# /api/orders/{id}, and the resident memory idle and at saturation.
#
#   bench/compare.sh                          # all-in-one, 10 s per phase
#   SECONDS_PER_PHASE=30 bench/compare.sh
#   BENCH_MODE=distributed bench/compare.sh   # four processes, PostgreSQL, Kafka
set -euo pipefail
cd "$(dirname "$0")/.."
phase="${SECONDS_PER_PHASE:-10}"
cache="${OXCART_CACHE:-$HOME/.cache/oxcart}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$cache/target}"
# oha: an open-loop load generator (crates.io), installed once into the cache.
oha="$cache/tools/bin/oha"
[ -x "$oha" ] || cargo install --locked --quiet --root "$cache/tools" oha --version 1.16.0
cargo build --release --locked --quiet -p oxcart-bench-anchors
anchors="$CARGO_TARGET_DIR/release/oxcart-bench-anchors"

results="$(mktemp)"
record() { echo "{\"label\":\"$1\",\"value\":$2}" >>"$results"; }
rate() { awk '/Requests\/sec/ {print $2}'; }
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

echo "== anchors"
anchor_port="$(free_port)"
"$anchors" serve --listen "127.0.0.1:$anchor_port" &
anchor_pid=$!
until curl -sf "http://127.0.0.1:$anchor_port/api/orders/00000000-0000-0000-0000-000000000001" >/dev/null; do sleep 0.1; done
record axum "$(wrk -t1 -c16 -d"${phase}s" "http://127.0.0.1:$anchor_port/api/orders/00000000-0000-0000-0000-000000000001" | rate)"
kill "$anchor_pid"
scratch="$(mktemp -d)"
for rows in 1 64; do
    "$anchors" sqlite --path "$scratch/anchor.db" --rows "$rows" --seconds "$phase" |
        python3 -c "import json, sys; r = json.load(sys.stdin); print('{\"label\":\"sqlite-$rows\",\"value\":%s,\"tx\":%s}' % (r['rowsPerSecond'], r['transactionsPerSecond']))" >>"$results"
done
rm -rf "$scratch"
services="${OXCART_SERVICES_DIR:-/tmp/oxcart-services}"
if [ -f "$services/env" ] && pg_isready -q -h 127.0.0.1 -p 5432; then
    psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS anchor WITH (FORCE)" -c "CREATE DATABASE anchor"
    psql -h 127.0.0.1 -U postgres -d anchor -qc "CREATE TABLE rows (id uuid PRIMARY KEY, body text NOT NULL)"
    echo "INSERT INTO rows VALUES (gen_random_uuid(), repeat('x', 200));" >"$results.sql"
    record pgbench "$(pgbench -h 127.0.0.1 -U postgres -n -c 16 -j 2 -T "$phase" -f "$results.sql" anchor 2>/dev/null |
        awk '/^tps/ {print $3}')"
    psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE anchor WITH (FORCE)"
fi

echo "== oxcart (${BENCH_MODE:-all-in-one})"
. bench/lib.sh
rss() { local kb=0; for p in "${pids[@]}"; do kb=$((kb + $(awk '/VmRSS/ {print $2}' "/proc/$p/status"))); done; echo $((kb / 1024)); }
# Idle: once the set-up's sign-ins are over and the allocator has handed back what they
# freed (jemalloc returns unused pages to the system within about twenty seconds).
sleep 25
record rss-idle "$(rss)"
# Every phase's orders paid, then every consumer group caught up (e-mails, invoices), so
# that the next phase starts on an idle system.
saga() { python3 bench/saga_report.py "$DATABASE" "$1" "$work/bench-mark" "$results"; settle; }

# Saturation: as fast as 16 connections go, the saga running behind; the highest
# resident memory seen meanwhile.
( while sleep 0.5; do rss; done ) >"$work/rss" &
sampler=$!
post="$(MODE=place wrk -t1 -c16 -d"${phase}s" -s bench/orders.lua "$base" | rate)"
kill "$sampler"
record post "$post"
saga saturation
peak="$(sort -n "$work/rss" | tail -1)"
record rss-saturation "$peak"

body="{\"items\":[{\"productId\":\"$PRODUCT\",\"quantity\":1}],\"shippingAddress\":{\"name\":\"Bench\",\"line1\":\"1 Road\",\"city\":\"London\",\"postalCode\":\"N1\",\"country\":\"GB\"},\"paymentToken\":\"tok_success\"}"
for offered in 500 1000; do
    "$oha" --no-tui -z "${phase}s" -q "$offered" -c 64 --latency-correction -m POST \
        -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' -d "$body" \
        "$base/api/orders" | grep -E "Success rate|Requests/sec" || true
    saga "offered-$offered"
done

export ORDER="$(curl -sf -X POST "$base/api/orders" -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' -d "$body" | json id)"
record get "$(MODE=get wrk -t1 -c16 -d"${phase}s" -s bench/orders.lua "$base" | rate)"

python3 bench/compare_table.py "$results" "${BENCH_MODE:-all-in-one}"
rm -f "$results" "$results.sql"
