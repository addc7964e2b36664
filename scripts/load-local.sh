#!/usr/bin/env bash
# Measures pos-local throughput for signed Standard Webhooks sales (10 lines each, every one new):
# capture requests/s and latency, then the end-to-end rate until stock-sync and loyalty-accrual are done.
# Starts a fresh pos-local (profile `local`) on a free port with a temporary store, runs `pos-local load`,
# prints its JSON report and stops the server. Client and server share this machine's cores.
# Usage: ./scripts/load-local.sh [REQUESTS] [CONCURRENCY]
set -euo pipefail
cd "$(dirname "$0")/.."
requests="${1:-5000}"
concurrency="${2:-16}"
cargo build --locked --profile local -p pos-local >/dev/null
bin=target/local/pos-local
# shellcheck source=scripts/lib/pos-local.sh
source scripts/lib/pos-local.sh
start_pos_local "$bin"
echo "pos-local at $url; $requests requests, concurrency $concurrency, $(nproc) cores shared by client and server"
"$bin" load --url "$url" --requests "$requests" --concurrency "$concurrency" --lines 10 --pipeline
