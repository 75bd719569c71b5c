# Shared by the benchmark scripts: builds the release binary, starts the all-in-one on a
# fresh data directory, and creates a customer (TOKEN) and a well-stocked product (PRODUCT).
# Sets: bin, base, work, pid, TOKEN, PRODUCT. Source it; the caller's EXIT trap cleans up.
command -v wrk >/dev/null || { echo "install wrk (apt-get install wrk)"; exit 1; }
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${OXCART_CACHE:-$HOME/.cache/oxcart}/target}"
cargo build --release --locked --bin oxcart
bin="$CARGO_TARGET_DIR/release/oxcart"

work="$(mktemp -d)"
pid=""
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"' EXIT
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
base="http://127.0.0.1:$port"
# Request logging is turned down so the benchmark measures the API, not the terminal.
OXCART_LOG=warn "$bin" serve --listen "127.0.0.1:$port" --data-dir "$work/data" --log-format json 2>"$work/server.log" &
pid=$!
until curl -sf "$base/health/ready" >/dev/null; do sleep 0.2; done

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
