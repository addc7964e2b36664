#!/usr/bin/env bash
# Property-based tests of the query API (schemathesis, pinned in scripts/requirements-test.txt): REST
# against its own OpenAPI document, then GraphQL by introspection: a fresh pos-local (dev profile, the
# very build `cargo test --workspace` made, see below) on a free port with a temporary store, seeded with a few sales so stock, loyalty and
# sales rows exist, then `schemathesis run` on $url/v1/openapi.json with a token holding every read
# scope. Fails on any server error, any response whose status, media type or body the document does not
# declare, and on the other checks below. Always stops the server.
# Usage: ./scripts/schemathesis.sh [extra schemathesis run options]
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v schemathesis >/dev/null 2>&1; then
  echo "schemathesis not found: python3 -m pip install -r scripts/requirements-test.txt" >&2
  exit 1
fi

# The binary of the test build. `cargo build -p pos-local` would resolve features for pos-local alone,
# without what the other members (pos-tests: aws-sdk-sqs) and the dev-dependencies turn on, and so
# recompile pos-shared and the AWS SDK crates for a second dev build; after `cargo test --workspace`
# (scripts/test.sh) this is a no-op that puts the test build's binary at target/debug/pos-local.
cargo test --workspace --locked --no-run --quiet
bin=target/debug/pos-local
report=$(mktemp -d)
cleanup_paths=$report
# shellcheck source=scripts/lib/pos-local.sh
source scripts/lib/pos-local.sh
start_pos_local "$bin"

# Seed: the events/ samples the document's examples name (sale till-7:4001, store-001, SKU-001,
# member-42) and a small load, then wait until both consumers have applied them.
for f in events/standard/sale.json events/standard/return.json events/shopify/orders-create.json; do
  "$bin" send --url "$url" "$f" >/dev/null
done
"$bin" load --url "$url" --requests 20 --concurrency 4 --lines 3 --pipeline >/dev/null
token=$("$bin" token --scopes "sales:read stock:read loyalty:read deliveries:read" --ttl-seconds 600)

# Checks: every one schemathesis has (`[checks] enabled = true`, the config-file form of `--checks all`),
# with one exception: positive_data_acceptance (a schema-valid request must be accepted) is off for the three
# paginated operations only (store sales, store stock, a member's ledger). There it is a false positive: `cursor` is an opaque HMAC-signed token bound to
# its query, so no schema can describe the valid ones and a made-up one is rightly a 400 (so is a `to` not
# after `from`, a relation between two parameters that OpenAPI cannot express). It stays on for the other
# operations, whose schemas declare everything the server checks (id alphabet and length), and
# negative_data_rejection checks everywhere that what the schema excludes is refused.
# (Per-operation settings only take effect when checks are chosen in the file, not with --checks on the CLI.)
cat >"$report/schemathesis.toml" <<'TOML'
[checks]
enabled = true

[[operations]]
include-path-regex = '^/v1/(stores/\{store_id\}/(sales|stock)|members/\{member_id\}/loyalty/ledger)$'
checks.positive_data_acceptance.enabled = false
TOML

# Bounded for CI on 2 cores: at most 100 generated cases per operation and phase (the run takes ~15 s
# here), a fixed seed so a failure reproduces, and a hard stop at 5 minutes should anything hang.
timeout 300 schemathesis --config-file "$report/schemathesis.toml" run "$url/v1/openapi.json" \
  --header "Authorization: Bearer $token" \
  --max-examples 100 \
  --workers 2 \
  --seed 20261122 \
  --generation-database none \
  --request-timeout 10 \
  --report-dir "$report" \
  --no-color \
  "$@"

# GraphQL (/graphql, schema by introspection, which pos-local enables): generated queries over every root
# field must never make the server fail. Only not_a_server_error: schemathesis reports every GraphQL error
# as a "client error" failure, but a BAD_USER_INPUT for an empty id or a made-up cursor is the right answer
# to values a GraphQL schema cannot constrain (the in-process tests pin those errors).
timeout 300 schemathesis run "$url/graphql" \
  --header "Authorization: Bearer $token" \
  --checks not_a_server_error \
  --max-examples 100 \
  --workers 2 \
  --seed 20261122 \
  --generation-database none \
  --request-timeout 10 \
  --no-color
