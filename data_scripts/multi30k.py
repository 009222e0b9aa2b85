#!/usr/bin/env python
"""Prepare the built-in ``multi30k`` dataset into a directory and print its summary.

Usage: ``python data_scripts/multi30k.py --output-dir DIR [--from DIR] [--force]
[--src-lang de] [--tgt-lang en]``

Without ``--from`` the raw files are downloaded from the Multi30k repository (and cached); with
``--from DIR``, DIR holds ``{train,val,test_2016_flickr}.{de,en,fr}.gz``. The pair defaults to
the one already in DIR's ``meta.json``, else German -> English.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from seqattn.data.builtin import multi30k
from seqattn.errors import SeqattnError


def main(argv: list[str] | None = None) -> int:
    """Parse the options, prepare the dataset and print its summary; returns the exit status."""
    parser = argparse.ArgumentParser(description=multi30k.DESCRIPTION)
    parser.add_argument("--output-dir", required=True, type=Path, help="directory to write")
    parser.add_argument(
        "--from", dest="from_dir", type=Path, help="read local .gz files instead of downloading"
    )
    parser.add_argument("--force", action="store_true", help="rebuild even if already prepared")
    parser.add_argument("--src-lang", choices=multi30k.LANGUAGES, help="source language (default de)")
    parser.add_argument("--tgt-lang", choices=multi30k.LANGUAGES, help="target language (default en)")
    args = parser.parse_args(argv)
    reused = not args.force and multi30k.is_prepared(
        args.output_dir, src_lang=args.src_lang, tgt_lang=args.tgt_lang
    )
    start = time.perf_counter()
    try:
        meta = multi30k.prepare(
            args.output_dir,
            from_dir=args.from_dir,
            force=args.force,
            src_lang=args.src_lang,
            tgt_lang=args.tgt_lang,
        )
    except SeqattnError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(multi30k.summary(meta))
    state = "already prepared, left as is (--force rebuilds)" if reused else "written"
    print(f"{args.output_dir}: {state} in {time.perf_counter() - start:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
