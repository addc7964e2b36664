#!/usr/bin/env bash
# Cold start, CPU and size of every function binary against the empty Rust Lambda, in one run.
# Builds ../shared/bench/hello-lambda (into /tmp/hello-target) and the release binaries, starts moto_server
# on a free loopback port, creates the tables, bus, queues and secrets from infra/ (`bench-rig`), writes
# new signed 10-line Shopify sales (and the SQS events carrying them) for every run, then runs
# ../shared/bench/lambda_harness.py for hello-lambda and each function. Prints one line per function:
# init median and its ratio to hello's, warm invoke median, CPU per warm invocation (median), peak RSS,
# stripped size. Raw harness JSON goes to $OUT/results.jsonl.
# Usage: ./scripts/bench-lambda.sh [RUNS] [EVENTS_PER_RUN]   (defaults 9 and 8)
#   BENCH_FUNCTIONS="sale-capture stock-sync" to measure a subset; BENCH_NO_BUILD=1 to reuse binaries;
#   BENCH_BIN_DIR=/some/dir to measure other builds of the functions (default target/release).
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-9}"
events="${2:-8}"
bench=../shared/bench
functions="${BENCH_FUNCTIONS:-sale-capture outbox-publisher stock-sync loyalty-accrual outbox-relay query-api commercetools-sync dynamics-sync webhooks-sync}"
out="$(mktemp -d /tmp/bench-lambda.XXXXXX)"
bin_dir="${BENCH_BIN_DIR:-target/release}"

python3 -c 'import moto' 2>/dev/null || python3 -m pip install -q 'moto[server]'
if [[ -z "${BENCH_NO_BUILD:-}" ]]; then
  cargo build --release --quiet --manifest-path "$bench/hello-lambda/Cargo.toml" --target-dir /tmp/hello-target
  # shellcheck disable=SC2046
  cargo build --release --locked --quiet $(printf -- '-p %s ' $functions)
  cargo build --locked --quiet -p pos-tests --bin bench-rig
fi

port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
moto_server -H 127.0.0.1 -p "$port" >"$out/moto.log" 2>&1 &
moto_pid=$!
trap 'kill "$moto_pid" 2>/dev/null || true' EXIT
for _ in $(seq 300); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.1
done
endpoint="http://127.0.0.1:$port"
target/debug/bench-rig "$endpoint" "$out" "$runs" "$events"

harness() { python3 "$bench/lambda_harness.py" "$@"; }
echo "# $(date -u +%FT%TZ), $(nproc) cores, $runs runs x $events events, moto at $endpoint" | tee "$out/summary.txt"
hello_events=()
for n in "$out"/sale-capture/run-0/*.json; do hello_events+=(--events "$n"); done
harness --runs "$runs" "${hello_events[@]}" -- /tmp/hello-target/release/hello-lambda \
  | tee -a "$out/results.jsonl" >/dev/null
for f in $functions; do
  args=()
  while IFS= read -r kv; do args+=(--env "$kv"); done <"$out/$f.env"
  for k in $(seq 0 $((runs - 1))); do args+=(--sets "$out/$f/run-$k"); done
  harness "${args[@]}" --env "AWS_ENDPOINT_URL=$endpoint" --env AWS_ACCESS_KEY_ID=test \
    --env AWS_SECRET_ACCESS_KEY=test --env AWS_REGION=eu-west-1 -- "$bin_dir/$f" \
    | tee -a "$out/results.jsonl" >/dev/null
done

python3 - "$out/results.jsonl" "$bin_dir" <<'PY' | tee -a "$out/summary.txt"
import json, os, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
hello = rows[0]
print(f"{'function':20} {'init ms':>8} {'x hello':>8} {'init cpu':>9} {'warm ms':>8} {'cpu/inv ms':>10} {'rss MB':>7} {'size MB':>8}  answers")
for r in rows:
    path = "/tmp/hello-target/release/hello-lambda" if r is hello else f"{sys.argv[2]}/{r['cmd']}"
    size = os.path.getsize(path) / 1e6
    kinds = sorted(set(r["kinds"]))
    print(f"{r['cmd']:20} {r['init_ms_median']:8.2f} {r['init_ms_median'] / hello['init_ms_median']:8.2f}"
          f" {r['init_cpu_ms_median']:9.2f} {r['warm_invoke_ms_median']:8.3f} {r['invoke_cpu_ms_median']:10.3f}"
          f" {r['rss_mb_max']:7.1f} {size:8.2f}  {','.join(kinds)}")
PY
echo "raw: $out/results.jsonl"
