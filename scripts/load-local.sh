#!/usr/bin/env bash
# Measures pos-local throughput for signed Standard Webhooks sales (10 lines each, every one new):
# capture requests/s and latency, then the end-to-end rate until stock-sync and loyalty-accrual are done.
# Starts a fresh pos-local (profile `local`) on a free port with a temporary store, runs `pos-local load`,
# prints its JSON report and stops the server. Client and server share this machine's cores.
# Beside it: the disk's fsync rate, measured in the same data directory just before the load (4 KiB
# write + fsync in a loop for 1.5 s), and end-to-end sales/s ÷ fsyncs/s: above 1, sales share commits.
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
fsyncs=$(python3 - "$pos_local_data" <<'PY'
import os, sys, time
path = os.path.join(sys.argv[1], "fsync-probe")
fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
block, n, start = b"x" * 4096, 0, time.monotonic()
while time.monotonic() - start < 1.5:
    os.pwrite(fd, block, 0)
    os.fsync(fd)
    n += 1
elapsed = time.monotonic() - start
os.close(fd)
os.unlink(path)
print(f"{n / elapsed:.0f}")
PY
)
echo "pos-local at $url; $requests requests, concurrency $concurrency, $(nproc) cores shared by client and server"
echo "disk: $fsyncs fsyncs/s (write + fsync of 4 KiB in the data directory, 1.5 s)"
report=$("$bin" load --url "$url" --requests "$requests" --concurrency "$concurrency" --lines 10 --pipeline)
echo "$report"
python3 - "$fsyncs" "$report" <<'PY'
import json, sys
fsyncs, report = float(sys.argv[1]), json.loads(sys.argv[2])
sales = report.get("end_to_end_sales_per_s")
if sales:
    print(f"end to end: {sales:.0f} sales/s = {sales / fsyncs:.2f} x the disk's {fsyncs:.0f} fsyncs/s")
PY
