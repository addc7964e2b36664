#!/usr/bin/env bash
# Measures read latency of the query API on pos-local: GET /v1/stores/{store_id}/stock/{sku} (bearer JWT
# checked on every request) over every store + SKU pair with a stock row.
# Starts a fresh pos-local (profile `local`) on a free port with a temporary store, seeds it with signed
# sales (`pos-local load --pipeline`, waiting until stock-sync has applied them), then runs
# `pos-local load-read` and prints its JSON report (requests, errors, req/s, p50/p90/p99/max in ms).
# Fails if any read did not answer 2xx. Stops the server. Client and server share this machine's cores.
# Usage: ./scripts/load-read.sh [REQUESTS] [CONCURRENCY] [SEED_SALES]
set -euo pipefail
cd "$(dirname "$0")/.."
requests="${1:-5000}"
concurrency="${2:-16}"
seed_sales="${3:-500}"
cargo build --locked --profile local -p pos-local >/dev/null
bin=target/local/pos-local
# shellcheck source=scripts/lib/pos-local.sh
source scripts/lib/pos-local.sh
start_pos_local "$bin"
# 20 stores x 10 SKUs: 200 stock rows.
"$bin" load --url "$url" --requests "$seed_sales" --concurrency 8 --lines 10 --pipeline >/dev/null
echo "pos-local at $url; $requests reads, concurrency $concurrency, $(nproc) cores shared by client and server"
"$bin" load-read --url "$url" --requests "$requests" --concurrency "$concurrency"
