#!/usr/bin/env python
"""Prepare the built-in ``dates`` dataset into a directory and print its summary.

Usage: ``python data_scripts/dates.py --output-dir DIR [--force]``
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from seqattn.data.builtin import dates
from seqattn.errors import SeqattnError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=dates.DESCRIPTION)
    parser.add_argument("--output-dir", required=True, type=Path, help="directory to write")
    parser.add_argument("--force", action="store_true", help="rebuild even if already prepared")
    args = parser.parse_args(argv)
    reused = not args.force and dates.is_prepared(args.output_dir)
    start = time.perf_counter()
    try:
        meta = dates.prepare(args.output_dir, force=args.force)
    except SeqattnError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(dates.summary(meta))
    state = "already prepared, left as is (--force rebuilds)" if reused else "written"
    print(f"{args.output_dir}: {state} in {time.perf_counter() - start:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
