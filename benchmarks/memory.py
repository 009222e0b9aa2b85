"""Memory bounds of ``seqattn translate``: peak RSS must not grow with the input length.

``seqattn translate`` reads its input in chunks and writes each chunk's translations before
reading the next, so its memory should be the same for 10,000 and 100,000 lines. This script
runs ``python -m seqattn translate`` in a fresh subprocess on a 1-line input (the cost of
starting: Python, torch, the model) and on N-line inputs (default 10,000 and 100,000), and reads
each child's own peak resident set size from ``os.wait4`` (``ru_maxrss``). It prints one row
per input and the ratio of the largest input's peak to the smallest N-line input's.

Nothing is trained: without ``-m`` the model is a seeded, randomly initialised Transformer
(d_model 64, 2+2 layers) in a temporary model directory, with a 400-piece SentencePiece model
trained on the synthetic sentences the inputs are made of (1 to 20 words of a 400-word
vocabulary, plus 3% empty lines). With ``-m MODEL_DIR`` a trained translation model is used
instead (the inputs are then the same synthetic words, which such a model does not know; only
the memory matters here).

Usage: ``python benchmarks/memory.py [-m MODEL_DIR] [--lines 10000 100000] [--beam 5]
[--threads 1] [--json PATH]``. Results go to ``benchmarks/results/memory.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from seqattn.config import DataConfig, ExperimentConfig, TokenizerSection, TransformerConfig, save_config
from seqattn.data.corpora import CorpusSpec
from seqattn.data.tokenizer import Tokenizer
from seqattn.models.build import build_seq2seq
from seqattn.training.checkpoint import save_checkpoint

ROOT = Path(__file__).resolve().parents[1]
WORDS = [f"word{i}" for i in range(400)]


def synthetic_lines(count: int, *, seed: int) -> list[str]:
    """``count`` sentences of 1-20 words from ``WORDS``; about 3% are empty."""
    rng = random.Random(seed)
    return [
        "" if rng.random() < 0.03 else " ".join(rng.choices(WORDS, k=rng.randint(1, 20)))
        for _ in range(count)
    ]


def build_model_dir(directory: Path) -> Path:
    """A translation model directory (config.yaml, spm.model, model.pt) with random weights."""
    corpus = directory / "corpus.txt"
    corpus.write_text("\n".join(synthetic_lines(5000, seed=0)) + "\n", encoding="utf-8")
    spec = CorpusSpec(src=str(corpus), tgt=str(corpus))
    config = ExperimentConfig(
        task="translation",
        model=TransformerConfig(
            d_model=64, num_heads=4, ffn_dim=128, encoder_layers=2, decoder_layers=2, tie="all"
        ),
        data=DataConfig(train=spec, valid=spec),
        tokenizer=TokenizerSection(vocab_size=400),
    )
    model_dir = directory / "model"
    model_dir.mkdir()
    save_config(config, model_dir / "config.yaml")
    tokenizer = Tokenizer.train(
        corpus.read_text(encoding="utf-8").splitlines(), config=config.tokenizer.settings()
    )
    tokenizer.save(model_dir / "spm.model")
    torch.manual_seed(0)
    model = build_seq2seq(config.model, src_vocab=tokenizer.vocab_size, tgt_vocab=tokenizer.vocab_size)
    save_checkpoint(model_dir / "model.pt", {"model": model.state_dict()})
    return model_dir


def measure(model_dir: Path, source: Path, output: Path, *, beam: int, threads: int) -> dict[str, float]:
    """Run ``seqattn translate`` on ``source`` in a fresh process: its peak RSS and wall time."""
    command = [sys.executable, "-m", "seqattn", "translate", "-m", str(model_dir)]
    command += ["-i", str(source), "-o", str(output), "--beam", str(beam), "--device", "cpu"]
    env = os.environ | {"OMP_NUM_THREADS": str(threads), "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}
    start = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert process.stderr is not None
    errors = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)  # this child's own rusage, not all children's
    process.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - start
    if process.returncode != 0:
        raise SystemExit(
            f"seqattn translate failed ({process.returncode}):\n{errors.decode(errors='replace')}"
        )
    # ru_maxrss is in KiB on Linux, in bytes on macOS.
    peak = usage.ru_maxrss / (1 << 20 if sys.platform == "darwin" else 1 << 10)
    return {"peak_rss_mib": round(peak, 1), "seconds": round(seconds, 2)}


def run(model_dir: Path, sizes: list[int], *, beam: int, threads: int, work: Path) -> list[dict[str, object]]:
    rows = []
    for count in [1, *sizes]:
        source = work / f"input-{count}.txt"
        lines = synthetic_lines(count, seed=count)
        source.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        output = work / f"output-{count}.txt"
        result = measure(model_dir, source, output, beam=beam, threads=threads)
        written = output.read_text(encoding="utf-8").count("\n")
        if written != count:
            raise SystemExit(f"{count} input lines gave {written} output lines")
        rows.append(
            {
                "lines": count,
                "input_mib": round(source.stat().st_size / (1 << 20), 2),
                "output_lines": written,
                "seconds": result["seconds"],
                "lines_per_s": round(count / result["seconds"], 1),
                "peak_rss_mib": result["peak_rss_mib"],
            }
        )
        output.unlink()
        source.unlink()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-m", "--model", type=Path, default=None, help="a translation model directory")
    parser.add_argument("--lines", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--beam", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of the translate process")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "memory.json")
    args = parser.parse_args()
    sizes = sorted(set(args.lines))
    with tempfile.TemporaryDirectory() as temporary:
        work = Path(temporary)
        model_dir = args.model or build_model_dir(work)
        rows = run(model_dir, sizes, beam=args.beam, threads=args.threads, work=work)
    start, base = rows[0]["peak_rss_mib"], rows[1]["peak_rss_mib"]
    ratio = round(float(rows[-1]["peak_rss_mib"]) / float(base), 3)
    table = Table(
        title=f"seqattn translate, beam {args.beam}, {args.threads} thread(s): peak RSS "
        f"({platform.processor() or platform.machine()})"
    )
    for column in rows[0]:
        table.add_column(column.replace("_", " "), justify="right")
    for row in rows:
        table.add_row(*(f"{value:,}" if isinstance(value, int) else str(value) for value in row.values()))
    console = Console()
    console.print(table)
    console.print(
        f"peak RSS {rows[-1]['lines']:,} lines / {rows[1]['lines']:,} lines: {ratio} "
        f"(a 1-line run peaks at {start} MiB: Python, torch and the model)"
    )
    document = {
        "model": str(args.model) if args.model else "random Transformer d_model 64, 2+2 layers, 400 pieces",
        "beam": args.beam,
        "threads": args.threads,
        "machine": platform.platform(),
        "torch": torch.__version__,
        "rows": rows,
        "ratio_largest_to_smallest": ratio,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(document, indent=2) + "\n")


if __name__ == "__main__":
    main()
