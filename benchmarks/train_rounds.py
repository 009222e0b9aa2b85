"""Training throughput against OpenNMT-py in alternating rounds: medians instead of one run.

One ``make bench-peers`` measures each toolkit once, one after the other; on a shared 2-vCPU
machine a toolkit's rate moves by up to 25% between runs half an hour apart, so a single
same-run ratio can land on either side of a target. This script repeats the training
measurement ``--repeats`` times per model, alternating which toolkit goes first (seqattn first
in even rounds, OpenNMT-py first in odd ones), and reports each toolkit's median tokens/s, the
ratio of the medians and the range of the per-round ratios.

Each round is the same measurement as the main table: OpenNMT-py 3.5.1 trains from the peers'
rendered config (``$PEERS_WORK/runs/onmt_{rnn,transformer}/train.yaml``, only ``train_steps``
lowered to ``warmup + steps + 1`` and no checkpoint saved) through the harness's timing hook,
and its tokens/s is computed as the harness's ``summarize.py`` does (step entries ``warmup + 1``
to ``warmup + steps + 1``); seqattn trains in a fresh process through ``translation.py``'s
worker (the Trainer's update, length-bucketed 4,096-token batches, no decoding). Both use the
peers' SentencePiece model and the same 2 threads.

Usage (after ``make bench-peers`` has installed the peers and rendered their configs)::

    python benchmarks/train_rounds.py                 # 3 rounds, both models: about 30 minutes
    python benchmarks/train_rounds.py --models rnn --repeats 5

Results go to ``benchmarks/results/train_rounds.json`` (``--json``).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from _peers import DEFAULT_HARNESS, DEFAULT_PEERS_WORK, logger, run_onmt
from _timing import describe_machine, write_report
from rich.console import Console
from rich.table import Table
from translation import DEFAULT_DATA, DEFAULT_PEER_SPM, LABELS, MODELS, ROOT, run_subprocess, set_threads

from seqattn.data.tokenizer import Tokenizer

log = logger("train_rounds")


def peer_config(rendered: Path, *, steps: int, model_dir: Path) -> str:
    """The peers' rendered OpenNMT-py config, training ``steps`` steps and saving nothing."""
    text = rendered.read_text(encoding="utf-8")
    for key, value in (
        ("train_steps", str(steps)),
        ("save_checkpoint_steps", str(steps + 1000)),
        ("save_model", str(model_dir / "model")),
    ):
        text, count = re.subn(rf"^{key}:.*$", f"{key}: {value}", text, flags=re.MULTILINE)
        if count != 1:
            raise SystemExit(f"error: {rendered}: expected one '{key}:' line, found {count}")
    return text


def onmt_tokens_per_s(record: Path, *, warmup: int, steps: int) -> float:
    """Tokens/s over steps ``warmup + 1 .. warmup + steps``, as the harness's summarize.py counts."""
    entries = [json.loads(line) for line in record.read_text().splitlines()]
    step_entries = [e for e in entries if e.get("ev") == "step"]
    if len(step_entries) < warmup + steps + 1:
        raise SystemExit(f"error: {record}: {len(step_entries)} steps recorded, need {warmup + steps + 1}")
    window = step_entries[warmup : warmup + steps]
    seconds = step_entries[warmup + steps]["t"] - step_entries[warmup]["t"]
    return sum(e["src_pieces"] + e["tgt_pieces"] for e in window) / seconds


def run_opennmt(name: str, args: argparse.Namespace, scratch: Path) -> float:
    rendered = args.peers_work / "runs" / f"onmt_{name}" / "train.yaml"
    if not rendered.is_file():
        raise SystemExit(f"error: {rendered} is missing (run make bench-peers first)")
    (scratch / "onmt_model").mkdir(exist_ok=True)
    config = scratch / f"onmt_{name}.yaml"
    config.write_text(
        peer_config(rendered, steps=args.warmup + args.steps + 1, model_dir=scratch / "onmt_model"),
        encoding="utf-8",
    )
    record = scratch / f"onmt_{name}.jsonl"
    run_onmt(
        "train",
        ["-config", str(config)],
        peers_work=args.peers_work,
        harness=args.harness,
        threads=args.threads,
        record=record,
        what=f"training ({name})",
    )
    return onmt_tokens_per_s(record, warmup=args.warmup, steps=args.steps)


def run_seqattn(name: str, args: argparse.Namespace, tokenizer: Path, scratch: Path) -> float:
    spec = {
        "model": name,
        "precision": "fp32",
        "device": "cpu",
        "threads": args.threads,
        "warmup": args.warmup,
        "steps": args.steps,
        "decode_after": 0,
        "decode_sentences": 0,
        "decode_batch": 64,
        "beam": 5,
        "rnn_style": "luong",
        "data_dir": str(args.data_dir),
        "tokenizer": str(tokenizer),
    }
    return float(run_subprocess(spec, scratch)["tok_per_s"])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--repeats", type=int, default=3, help="alternating rounds per model")
    parser.add_argument("--steps", type=int, default=100, help="timed steps")
    parser.add_argument("--warmup", type=int, default=20, help="untimed warm-up steps")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--peers-work", type=Path, default=DEFAULT_PEERS_WORK, help="the peers' WORK_DIR")
    parser.add_argument("--harness", type=Path, default=DEFAULT_HARNESS, help="the peers' harness directory")
    parser.add_argument(
        "--peer-spm", type=Path, default=DEFAULT_PEER_SPM, help="the peers' SentencePiece model"
    )
    parser.add_argument("--from", dest="data_dir", type=Path, default=DEFAULT_DATA, help="Multi30k directory")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "train_rounds.json")
    args = parser.parse_args(argv)
    for path in (args.peers_work / "onmt" / "bin" / "python", args.peer_spm, args.harness / "bench_hook.py"):
        if not path.exists():
            raise SystemExit(f"error: {path} is missing (run make bench-peers first)")

    start = time.perf_counter()
    set_threads(args.threads)
    console = Console() if sys.stdout.isatty() else Console(width=160)
    machine = describe_machine(torch.device("cpu"))
    console.print(
        f"[bold]machine[/]: {machine['cpu']} ({machine['cpu_count']} logical cores), torch {machine['torch']}"
    )
    rates: dict[str, dict[str, list[float]]] = {name: {"onmt": [], "seqattn": []} for name in args.models}
    with tempfile.TemporaryDirectory(prefix="seqattn-rounds-") as scratch_name:
        scratch = Path(scratch_name)
        tokenizer = scratch / "spm.model"
        Tokenizer.adopt(args.peer_spm).save(tokenizer)
        for name in args.models:
            for round_ in range(args.repeats):
                order = ("onmt", "seqattn") if round_ % 2 else ("seqattn", "onmt")
                for who in order:
                    log(f"{name}, round {round_ + 1}/{args.repeats}: {who}")
                    rate = (
                        run_opennmt(name, args, scratch)
                        if who == "onmt"
                        else run_seqattn(name, args, tokenizer, scratch)
                    )
                    rates[name][who].append(rate)
                    log(f"{name}, round {round_ + 1}: {who} {rate:,.0f} tokens/s")

    table = Table(
        title=f"Training src+tgt tokens/s, {args.repeats} alternating rounds (steps {args.warmup + 1}-{args.warmup + args.steps})"
    )
    for column in (
        "model",
        "OpenNMT-py (median)",
        "seqattn (median)",
        "ratio of medians",
        "round ratios",
        "OpenNMT-py rounds",
        "seqattn rounds",
    ):
        table.add_column(column, justify="left" if column == "model" else "right")
    results: dict[str, Any] = {}
    for name in args.models:
        onmt, mine = rates[name]["onmt"], rates[name]["seqattn"]
        ratios = [m / o for m, o in zip(mine, onmt, strict=True)]
        results[name] = {
            "onmt_tok_per_s": onmt,
            "seqattn_tok_per_s": mine,
            "onmt_median": statistics.median(onmt),
            "seqattn_median": statistics.median(mine),
            "ratio_of_medians": statistics.median(mine) / statistics.median(onmt),
            "round_ratios": ratios,
        }
        table.add_row(
            LABELS[name],
            f"{statistics.median(onmt):,.0f}",
            f"{statistics.median(mine):,.0f}",
            f"{results[name]['ratio_of_medians']:.2f}x",
            f"{min(ratios):.2f}-{max(ratios):.2f}x",
            " / ".join(f"{r:,.0f}" for r in onmt),
            " / ".join(f"{r:,.0f}" for r in mine),
        )
    console.print(table)
    write_report(args, {"machine": machine, "results": results}, start=start, console=console)


if __name__ == "__main__":
    main()
