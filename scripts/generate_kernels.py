#!/usr/bin/env python
"""Regenerate symdl/kernels/, symdl/optim/_generated.py and derivations/ from the catalog.

Usage:
    python scripts/generate_kernels.py          # write the kernel modules
    python scripts/generate_kernels.py --check  # exit 1 if any checked-in file is stale
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# The kernels of the repository this script lives in, whichever symdl is installed (an editable
# install of another clone would otherwise be regenerated instead).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from symdl.codegen import generate, stale_files  # noqa: E402 - after choosing the repository


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report stale files; exit 1 if any")
    args = parser.parse_args()
    if args.check:
        stale = stale_files()
        for path in stale:
            print(f"stale generated file: {path}", file=sys.stderr)
        return 1 if stale else 0
    for path in generate():
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
