#!/usr/bin/env bash
# Fuzzing (cargo-fuzz / libFuzzer; bodies in shared/src/fuzzing.rs, wrappers in fuzz/).
#   ./scripts/fuzz.sh seed              extract seeds from events/*.json into fuzz/corpus/<target>/
#   ./scripts/fuzz.sh run <target> [RUNS]   one campaign (default 10000000 executions), prints execs and the command
#   ./scripts/fuzz.sh all [RUNS]        every target, one after the other
#   ./scripts/fuzz.sh list              the targets
# Needs nightly and cargo-fuzz (`cargo install cargo-fuzz --locked`). New inputs go to fuzz/work/<target>/
# (gitignored); the committed corpus stays the seeds. Crashes land in fuzz/artifacts/<target>/: fix them and
# copy the input to fuzz/regressions/<target>/ (replayed on stable by shared/tests/fuzz_corpus.rs).
# Env: FUZZ_SECONDS (stop after this long even below RUNS), FUZZ_TIMEOUT (seconds per input, default 10),
# FUZZ_NICE (default 10).
set -euo pipefail
cd "$(dirname "$0")/.."

TARGETS=(vendor_shopify vendor_square vendor_lightspeed vendor_standard
  signature_shopify signature_square signature_lightspeed signature_standard
  apigw_event cursor jwt graphql)

seed() {
  python3 - <<'PY'
import base64, hashlib, hmac, json, os, pathlib

root = pathlib.Path("fuzz/corpus")
def put(target, name, data):
    d = root / target
    d.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    (d / name).write_bytes(data)

def header_input(headers, body):
    lines = "".join(f"{k}: {v}\n" for k, v in headers.items())
    return lines.encode() + b"\n" + body

count = 0
for vendor in ("shopify", "square", "lightspeed", "standard"):
    for path in sorted(pathlib.Path("events", vendor).glob("*.json")):
        event = json.loads(path.read_text())
        raw = event.get("body") or ""
        body = base64.b64decode(raw) if event.get("isBase64Encoded") else raw.encode()
        data = header_input(event.get("headers") or {}, body)
        put(f"vendor_{vendor}", path.stem, data)
        put(f"signature_{vendor}", path.stem, data)
        put("apigw_event", f"{vendor}-{path.stem}", path.read_bytes())
        count += 3

for path in sorted(pathlib.Path("events/query-api").glob("*.json")):
    event = json.loads(path.read_text())
    if not isinstance(event, dict):  # the manifest
        continue
    put("apigw_event", f"query-api-{path.stem}", path.read_bytes())
    auth = (event.get("headers") or {}).get("authorization", "")
    if auth.startswith("Bearer "):
        put("jwt", f"token-{path.stem}", b"\x00" + auth[len("Bearer "):].encode())
    body = event.get("body") or ""
    if event.get("rawPath") == "/graphql" and body:
        try:
            query = json.loads(body).get("query", "")
        except (ValueError, AttributeError):
            query = body
        put("graphql", path.stem, query)
    count += 1

# JWT: header + claims (signed by the target with the dev key), valid at the samples' time and not.
now, iss, aud = 1768471200, "https://pos-local.invalid/dev-issuer", "pos-platform"
hdr = json.dumps({"alg": "ES256", "kid": "pos-local-dev", "typ": "JWT"})
for name, claims in {
    "valid": {"iss": iss, "aud": aud, "sub": "c", "scope": "sales:read", "exp": now + 600, "nbf": now},
    "scp-list": {"iss": iss, "aud": [aud, "x"], "sub": "c", "scp": ["a", "b"], "exp": now + 600},
    "expired": {"iss": iss, "aud": aud, "sub": "c", "exp": now - 3600},
    "future": {"iss": iss, "aud": aud, "sub": "c", "exp": now + 600, "nbf": now + 3600},
    "huge-exp": {"iss": iss, "aud": aud, "sub": "c", "exp": 9223372036854775807},
}.items():
    put("jwt", f"claims-{name}", b"\x01" + hdr.encode() + b"\x00" + json.dumps(claims).encode())
    count += 1

# Cursors issued with the target's key for a store-sales query (`query \n cursor`).
key = b"0123456789abcdef0123456789abcdef"
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
query = "store-sales\nstore-a\n2026-01-15T00:00:00+00:00\n2026-01-16T00:00:00+00:00"
for i, at in enumerate(["2026-01-15T09:00:00Z", "2026-01-15T09:10:00.123456789Z"]):
    body = json.dumps({"p": {"occurred_at": at, "key": f"sale#dev-till:s-{i}"}, "q": query},
                      separators=(",", ":")).encode()
    mac = hmac.new(key, body, hashlib.sha256).digest()
    put("cursor", f"issued-{i}", f"{query}\n{b64(body)}.{b64(mac)}")
    count += 1

# GraphQL: a few shapes around the limits besides the query-api events.
for name, q in {
    "store-sales": '{ storeSales(storeId: "store-a", from: "2026-01-01T00:00:00Z", to: "2026-02-01T00:00:00Z", first: 100) { sales { saleId lines { sku quantity } } nextCursor } }',
    "nested": "{ a: sale(saleId: \"dev-till:s-1\") { saleId } b: sale(saleId: \"dev-till:s-2\") { saleId lines { sku } } }",
    "fragment": "query Q { ...F } fragment F on QueryRoot { sale(saleId: \"x\") { saleId } }",
}.items():
    put("graphql", f"seed-{name}", q)
    count += 1
print(f"seeded {count} files under {root}/")
PY
}

run() {
  local target=$1 runs=${2:-10000000}
  mkdir -p "fuzz/work/$target" "fuzz/corpus/$target" fuzz/logs
  # Run in fuzz/: the corpus paths are relative to it.
  local cmd=(cargo +nightly fuzz run -O -a -s none "$target" "work/$target" "corpus/$target"
    -- -fork=1 -jobs=1 -runs="$runs" -timeout="${FUZZ_TIMEOUT:-10}" -rss_limit_mb=4096 -print_final_stats=1
    ${FUZZ_SECONDS:+-max_total_time=$FUZZ_SECONDS})
  echo "$(date -u +%FT%TZ) (cd fuzz && ${cmd[*]})"
  # With -jobs, libFuzzer writes the job's own log (the execution counts) to fuzz-0.log in its working
  # directory; one left by an interrupted run is kept aside, not mixed into this one.
  if [ -f fuzz/fuzz-0.log ]; then mv fuzz/fuzz-0.log "fuzz/logs/interrupted-$(date +%s).log"; fi
  local started=$SECONDS
  (cd fuzz && nice -n "${FUZZ_NICE:-10}" "${cmd[@]}") >"fuzz/logs/$target.log" 2>&1 || true
  if [ -f fuzz/fuzz-0.log ]; then cat fuzz/fuzz-0.log >>"fuzz/logs/$target.log" && rm fuzz/fuzz-0.log; fi
  local secs=$((SECONDS - started))
  local execs
  execs=$(grep -oE '^#[0-9]+' "fuzz/logs/$target.log" | tail -1 | tr -d '#')
  local crashes
  crashes=$(find "fuzz/artifacts/$target" -type f 2>/dev/null | wc -l)
  echo "$target: ${execs:-0} execs in ${secs}s, crash artifacts: $crashes (log fuzz/logs/$target.log)"
}

case ${1:-} in
  seed) seed ;;
  run) [ -n "${2:-}" ] || { echo "usage: $0 run <target> [RUNS]" >&2; exit 2; }; run "$2" "${3:-}" ;;
  all) for t in "${TARGETS[@]}"; do run "$t" "${2:-}"; done ;;
  list) printf '%s\n' "${TARGETS[@]}" ;;
  *) echo "usage: $0 seed | run <target> [RUNS] | all [RUNS] | list" >&2; exit 2 ;;
esac
