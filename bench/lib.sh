# Shared by the benchmark scripts: builds the release binary, starts oxcart on a fresh
# data directory, and creates a customer (TOKEN) and a well-stocked product (PRODUCT).
# Sets: bin, base, work, pids, DATABASE, TOKEN, PRODUCT. Source it; its EXIT trap cleans up.
# OXCART_BIN=path uses that binary instead of building one.
#
# BENCH_MODE=all-in-one (the default): one process on SQLite.
# BENCH_MODE=distributed: PostgreSQL (a fresh database `oxcart_bench`, directly or through
# $BENCH_PGBOUNCER), the three-node Apache Kafka cluster (topics of the run's own,
# replicated three times), both as `.ci/services` starts them, and four processes:
# users/catalog/orders (the one the load hits), payments, notifications/invoices and
# analytics.
command -v wrk >/dev/null || { echo "install wrk (apt-get install wrk)"; exit 1; }
cache="${OXCART_CACHE:-$HOME/.cache/oxcart}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$cache/target}"
mode="${BENCH_MODE:-all-in-one}"
features=()
[ "$mode" = distributed ] && features=(--features kafka)
# OXCART_BIN: a binary built elsewhere (an older release, to compare), used as it is.
if [ -n "${OXCART_BIN:-}" ]; then
    bin="$OXCART_BIN"
else
    cargo build --release --locked --bin oxcart "${features[@]}"
    bin="$CARGO_TARGET_DIR/release/oxcart"
fi

work="$(mktemp -d)"
pids=()
# Each server is waited for before its directory goes: one still draining writes into it.
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done; rm -rf "$work"' EXIT
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
port="$(free_port)"
base="http://127.0.0.1:$port"
# Request logging is turned down so the benchmark measures the API, not the terminal.
export OXCART_LOG=warn
# A few callers make all the load: their rate limit is set far above it, so that the
# limiter's cost is measured but nothing is refused (0 turns it off, to measure that cost).
export OXCART_RATE_LIMIT__REQUESTS_PER_SECOND="${OXCART_RATE_LIMIT__REQUESTS_PER_SECOND:-1000000}"
export OXCART_RATE_LIMIT__BURST="${OXCART_RATE_LIMIT__BURST:-1000000}"
serve() {
    "$bin" serve --data-dir "$work/data" --log-format json "$@" 2>>"$work/server.log" &
    pids+=($!)
}
if [ "$mode" = distributed ]; then
    services="${OXCART_SERVICES_DIR:-/tmp/oxcart-services}"
    [ -f "$services/env" ] || { echo "needs the servers: run .ci/services first"; exit 1; }
    # shellcheck disable=SC1091
    . "$services/env"
    psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS oxcart_bench WITH (FORCE)" -c "CREATE DATABASE oxcart_bench"
    export DATABASE="postgres://postgres@127.0.0.1:5432/oxcart_bench"
    export DATABASE_URL="${BENCH_PGBOUNCER:-postgres://postgres@127.0.0.1:5432}/oxcart_bench"
    export DATABASE_MIGRATION_URL="$DATABASE"
    export KAFKA_BROKERS="$OXCART_TEST_KAFKA" OXCART_MIGRATE=false
    export OXCART_KAFKA__PREFIX="bench$(date +%s)." OXCART_KAFKA__REPLICATION=3
    "$bin" migrate --data-dir "$work/data" >/dev/null
    serve --listen "127.0.0.1:$port" --services users,catalog,orders
    until curl -sf "$base/health/ready" >/dev/null; do sleep 0.2; done
    for services in payments notifications,invoices analytics; do
        serve --listen "127.0.0.1:$(free_port)" --services "$services"
    done
else
    export DATABASE="$work/data/oxcart.db"
    serve --listen "127.0.0.1:$port"
    until curl -sf "$base/health/ready" >/dev/null; do sleep 0.2; done
fi

password="benchmark password"
echo "$password" | OXCART_LOG=warn "$bin" users create-admin --data-dir "$work/data" --email admin@example.com --password-stdin >/dev/null
json() { python3 -c "import json, sys; print(json.load(sys.stdin)[\"$1\"])"; }
token() {
    curl -sf -X POST "$base/api/auth/token" -H 'content-type: application/json' \
        -d "{\"email\":\"$1\",\"password\":\"$password\"}" | json accessToken
}
curl -sf -X POST "$base/api/users" -H 'content-type: application/json' \
    -d "{\"email\":\"bench@example.com\",\"password\":\"$password\"}" >/dev/null
export TOKEN="$(token bench@example.com)"
admin="$(token admin@example.com)"
export PRODUCT="$(curl -sf -X POST "$base/api/products" -H "authorization: Bearer $admin" -H 'content-type: application/json' \
    -d '{"sku":"BENCH-1","name":"Bench mug","price":1450,"currency":"EUR","stock":100000000}' | json id)"

# Waits (up to 3 minutes) until the consumer groups and the relay of the process under
# load have caught up with the log, so that one phase's leftovers do not load the next.
settle() {
    local deadline=$((SECONDS + 180)) lag=
    while [ "$SECONDS" -lt "$deadline" ]; do
        lag="$(curl -sf "$base/metrics" | awk '/^(consumer_lag|outbox_backlog)[{ ]/ {s += $NF} END {print s + 0}')"
        [ "$lag" = 0 ] && return
        sleep 0.5
    done
    echo "  (still $lag events behind after 3 minutes)"
}
