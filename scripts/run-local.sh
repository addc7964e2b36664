#!/usr/bin/env bash
# Runs the whole platform on this machine (no AWS account): pos-local on the embedded store.
# Extra arguments go to `pos-local serve` (e.g. --addr 127.0.0.1:8080 --secrets my-secrets.json).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo not found: install Rust with rustup (https://rustup.rs) first" >&2
  exit 1
fi
exec cargo run --locked --profile local -p pos-local -- serve "$@"
