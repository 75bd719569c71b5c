#!/usr/bin/env bash
# The cost of tracing: POST /api/orders, then GET /api/orders/{id}, on the all-in-one
# release build with OTLP export off, then on (every span exported over OTLP/HTTP to a
# receiver that decodes them, as a collector would). The saga runs behind the requests.
#
#   bench/export.sh                       # 20 s per run at 16 connections
#   DURATION=30s PROTOCOL=grpc bench/export.sh
set -euo pipefail
cd "$(dirname "$0")/.."
duration="${DURATION:-20s}" connections="${CONNECTIONS:-16}" protocol="${PROTOCOL:-http/protobuf}"
cache="${OXCART_CACHE:-$HOME/.cache/oxcart}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$cache/target}"
cargo build --release --locked -p oxcart-test-util --example otlp_sink

for export in off on; do
    (
        if [ "$export" = on ]; then
            sink_out="$(mktemp)"
            "$CARGO_TARGET_DIR/release/examples/otlp_sink" >"$sink_out" 2>"$sink_out.log" &
            sink=$!
            until [ "$(wc -l <"$sink_out")" -ge 2 ]; do sleep 0.1; done
            if [ "$protocol" = grpc ]; then endpoint="$(awk '/^grpc/ {print $2}' "$sink_out")"
            else endpoint="$(awk '/^http/ {print $2}' "$sink_out")"; fi
            export OTEL_EXPORTER_OTLP_ENDPOINT="$endpoint" OTEL_EXPORTER_OTLP_PROTOCOL="$protocol"
        fi
        . bench/lib.sh
        echo "== OTLP export $export${OTEL_EXPORTER_OTLP_ENDPOINT:+ ($protocol)}: POST /api/orders, $connections connections, $duration"
        MODE=place wrk -t1 -c"$connections" -d"$duration" --latency -s bench/orders.lua "$base" |
            grep -E "Requests/sec|^ +(50|90|99)%|responses other"
        # A read, bound by CPU rather than by the SQLite writer: where tracing's own cost shows.
        export ORDER="$(curl -sf -X POST "$base/api/orders" -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' \
            -d "{\"items\":[{\"productId\":\"$PRODUCT\",\"quantity\":1}],\"shippingAddress\":{\"name\":\"B\",\"line1\":\"1 Road\",\"city\":\"London\",\"postalCode\":\"N1\",\"country\":\"GB\"},\"paymentToken\":\"tok_success\"}" | json id)"
        echo "== OTLP export $export: GET /api/orders/{id}, $connections connections, $duration"
        MODE=get wrk -t1 -c"$connections" -d"$duration" --latency -s bench/orders.lua "$base" |
            grep -E "Requests/sec|^ +(50|90|99)%|responses other"
        if [ "$export" = on ]; then
            sleep 2
            kill -INT "$sink"; wait "$sink" || true
            tail -1 "$sink_out.log"
        fi
    )
done
