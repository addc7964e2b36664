#!/usr/bin/env python3
"""Validates the Standard Webhooks samples in events/ against events/schemas/standard-webhook.schema.json:
samples the handler accepts must be valid, samples it quarantines (422) must be invalid."""
import json
import sys
from pathlib import Path

from jsonschema import Draft202012Validator

ROOT = Path(__file__).resolve().parent.parent
EVENTS = ROOT / "events"


def main() -> int:
    schema = json.loads((EVENTS / "schemas" / "standard-webhook.schema.json").read_text())
    Draft202012Validator.check_schema(schema)
    validator = Draft202012Validator(schema)
    manifest = json.loads((EVENTS / "manifest.json").read_text())
    checked, failures = 0, []
    for entry in manifest:
        if not entry["file"].startswith("standard/"):
            continue
        body = json.loads(json.loads((EVENTS / entry["file"]).read_text())["body"])
        valid = validator.is_valid(body)
        expect_valid = entry["status"] != 422
        checked += 1
        if valid != expect_valid:
            failures.append(f"{entry['file']}: schema says {'valid' if valid else 'invalid'}, handler answers {entry['status']}")
    for f in failures:
        print(f, file=sys.stderr)
    print(f"schema check: {checked} Standard Webhooks samples, {len(failures)} disagreements")
    return 1 if failures or checked == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
