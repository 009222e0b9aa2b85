"""Text-pipeline throughput: read, tokenize and bucket the Multi30k training pairs.

Measured (CPU, wall clock): reading the 29,000 de-en training pairs from their gzip'd files,
encoding both sides with a joint 8k SentencePiece model, and planning one epoch of
length-bucketed 4096-token batches -- once without the encoded-corpus cache (what a first run
pays) and once with it (every later run). The tokenizer is trained first and not timed.

Usage: ``python benchmarks/data_pipeline.py [--from ../shared/data/multi30k] [--json PATH]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from seqattn.data.batching import token_batches
from seqattn.data.corpora import CorpusSpec
from seqattn.data.encoded import encode_corpus
from seqattn.data.tokenizer import Tokenizer, TokenizerConfig

ROOT = Path(__file__).resolve().parents[1]


def run(data_dir: Path) -> list[dict[str, object]]:
    src, tgt = data_dir / "train.de.gz", data_dir / "train.en.gz"
    tokenizer = Tokenizer.train_files(
        [src, tgt], config=TokenizerConfig(vocab_size=8000, model_type="unigram")
    )
    spec = CorpusSpec(src=str(src), tgt=str(tgt))
    rows = []
    with tempfile.TemporaryDirectory() as cache:
        os.environ["SEQATTN_CACHE"] = cache
        for label in ("first run (no cache)", "cached"):
            start = time.perf_counter()
            corpus = encode_corpus(spec, task="translation", tokenizer=tokenizer)
            encoded = time.perf_counter()
            lengths = [max(len(s), len(t)) + 1 for s, t in zip(corpus.first, corpus.second, strict=True)]
            plan = token_batches(lengths, max_tokens=4096, seed=1, epoch=0)
            done = time.perf_counter()
            rows.append(
                {
                    "run": label,
                    "pairs": len(corpus),
                    "read+encode s": round(encoded - start, 3),
                    "bucket s": round(done - encoded, 3),
                    "total s": round(done - start, 3),
                    "batches": len(plan),
                    "padding efficiency": round(plan.padding_efficiency, 4),
                    "target": "< 10 s",
                    "pass": done - start < 10.0,
                }
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--from", dest="data_dir", type=Path, default=ROOT.parent / "shared" / "data" / "multi30k"
    )
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "data_pipeline.json")
    args = parser.parse_args()
    if not (args.data_dir / "train.de.gz").is_file():
        raise SystemExit(f"error: {args.data_dir}/train.de.gz not found (pass --from DIR with Multi30k)")
    rows = run(args.data_dir)
    table = Table(title=f"text pipeline: Multi30k train de-en ({platform.processor() or platform.machine()})")
    for column in rows[0]:
        table.add_column(column)
    for row in rows:
        table.add_row(*(str(value) for value in row.values()))
    Console().print(table)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
