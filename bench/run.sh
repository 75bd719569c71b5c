#!/usr/bin/env bash
# Load-tests the all-in-one release build with wrk: POST /api/orders, then
# GET /api/orders/{id}. Prints wrk's report (requests/s and latency percentiles).
#
#   bench/run.sh                      # 20 s each, 1 wrk thread, 16 connections
#   DURATION=60s CONNECTIONS=32 bench/run.sh
#   OXCART_DATABASE__SQLITE__SYNCHRONOUS=normal bench/run.sh   # fsync at checkpoints only
set -euo pipefail
cd "$(dirname "$0")/.."
duration="${DURATION:-20s}" connections="${CONNECTIONS:-16}" threads="${THREADS:-1}"
. bench/lib.sh

echo "== POST /api/orders (synchronous=${OXCART_DATABASE__SQLITE__SYNCHRONOUS:-full}, $threads thread(s), $connections connections, $duration)"
MODE=place wrk -t"$threads" -c"$connections" -d"$duration" --latency -s bench/orders.lua "$base"

export ORDER="$(curl -sf -X POST "$base/api/orders" -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' \
    -d "{\"items\":[{\"productId\":\"$PRODUCT\",\"quantity\":1}],\"shippingAddress\":{\"name\":\"B\",\"line1\":\"1 Road\",\"city\":\"London\",\"postalCode\":\"N1\",\"country\":\"GB\"},\"paymentToken\":\"tok_success\"}" | json id)"
echo "== GET /api/orders/{id} ($threads thread(s), $connections connections, $duration)"
MODE=get wrk -t"$threads" -c"$connections" -d"$duration" --latency -s bench/orders.lua "$base"
