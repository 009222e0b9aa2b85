"""How far the matrix-multiply kernels alone let training MFU go: the bound behind the MFU figures.

Model-FLOPs utilisation (MFU) counts only the FLOPs of the model's matrix products (see
``translation.py``: ``train_flops``) against the fp32 matrix-multiply peak (best of 20
``2048 x 2048`` products, measured in this process). Even a step that ran nothing but its
matrix-multiply kernels could not reach more than

    bound = model FLOPs / (self time of the matrix-multiply kernels x peak)

so when the kernels, at the shapes this model gives them, run below a target's share of the
peak, the target cannot be met by removing overhead. This script trains the benchmark model on
the Multi30k workload of ``translation.py`` (the same data, tokenizer, sizes and batches), times
``--steps`` updates unprofiled (tokens/s and MFU), then profiles as many more and sums the self
CPU time of the kernels that do the model's products: ``mm``, ``addmm`` (and ``addmm_``, which
accumulates the output projection's weight gradient block by block), ``bmm``, ``baddbmm``,
the fused attention kernels (which also softmax and mask) and, for the RNN, oneDNN's LSTM layers
(which also apply the gates). The table prints the unprofiled MFU, the kernels' share of the
profiled time, their rate, and the bound; the JSON has the product rates per shape.

    .venv/bin/python benchmarks/training_floor.py                     # the Transformer, ~3 minutes
    .venv/bin/python benchmarks/training_floor.py --models transformer rnn --steps 20
"""

from __future__ import annotations

import argparse
import collections
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from _timing import describe_machine, write_report
from rich.console import Console
from rich.table import Table
from torch.profiler import ProfilerActivity, profile
from translation import (
    DEFAULT_DATA,
    DEFAULT_PEER_SPM,
    ROOT,
    batches_forever,
    matmul_peak,
    prepare_tokenizer,
    set_threads,
    train_flops,
    training_run,
)

from seqattn.allocator import keep_freed_memory
from seqattn.data.tokenizer import Tokenizer

PRODUCTS = ("aten::mm", "aten::addmm", "aten::addmm_", "aten::bmm", "aten::baddbmm")
KERNELS = (
    *PRODUCTS,
    "aten::_scaled_dot_product_flash_attention_for_cpu",
    "aten::_scaled_dot_product_flash_attention_for_cpu_backward",
    "aten::mkldnn_rnn_layer",
    "aten::mkldnn_rnn_layer_backward",
)
"""The kernels that do the model's matrix products (the last four also do some elementwise work,
which makes the bound below generous rather than strict)."""


def product_flops(name: str, shapes: list[Any]) -> float:
    """FLOPs of one ``mm``/``addmm``/``addmm_``/``bmm``/``baddbmm`` call from its recorded input
    shapes."""
    a, b = (shapes[0], shapes[1]) if name in ("aten::mm", "aten::bmm") else (shapes[1], shapes[2])
    batch = a[0] if len(a) == 3 else 1
    return 2.0 * batch * a[-2] * a[-1] * b[-1]


def measure(name: str, tokenizer: Tokenizer, data_dir: Path, *, warmup: int, steps: int) -> dict[str, Any]:
    """Unprofiled then profiled training steps of the benchmark model ``name``."""
    device = torch.device("cpu")
    with tempfile.TemporaryDirectory(prefix="seqattn-floor-") as scratch:
        run = training_run(name, tokenizer, data_dir, Path(scratch), precision="fp32", device=device)
        batches = batches_forever(run.task)

        def update() -> tuple[float, int]:
            batch = next(batches)
            run.trainer.update([batch])
            src = [len(run.train_src[i]) for i in batch]
            tgt = [len(run.train_tgt[i]) for i in batch]
            return train_flops(src, tgt, run.config, tokenizer.vocab_size), sum(src) + sum(tgt)

        for _ in range(warmup):
            update()
        start = time.perf_counter()
        timed = [update() for _ in range(steps)]
        seconds = time.perf_counter() - start
        with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as profiler:
            profiled = [update() for _ in range(steps)]
    peak = matmul_peak(device, torch.float32, 2048, 20)["gflops"]
    averages = profiler.key_averages()
    total = sum(e.self_cpu_time_total for e in averages) / 1e6
    kernels = sum(e.self_cpu_time_total for e in averages if e.key in KERNELS) / 1e6
    by_shape: dict[str, list[float]] = collections.defaultdict(lambda: [0, 0.0, 0.0])
    for event in profiler.events():
        if event.name in PRODUCTS and event.input_shapes:
            key = f"{event.name} {event.input_shapes}"
            by_shape[key][0] += 1
            by_shape[key][1] += event.self_cpu_time_total / 1e6
            by_shape[key][2] += product_flops(event.name, event.input_shapes)
    products_s = sum(v[1] for v in by_shape.values())
    products_flops = sum(v[2] for v in by_shape.values())
    flops = sum(f for f, _ in profiled)
    return {
        "model": name,
        "steps": steps,
        "peak_gflops": peak,
        "tok_per_s": sum(n for _, n in timed) / seconds,
        "mfu": sum(f for f, _ in timed) / seconds / 1e9 / peak,
        "profiled_self_s": total,
        "kernel_s": kernels,
        "kernel_share": kernels / total,
        "kernel_gflops": flops / kernels / 1e9,
        "mfu_bound": flops / kernels / 1e9 / peak,
        "products_gflops": products_flops / products_s / 1e9,
        "shapes": sorted(
            (
                {"call": k, "count": int(c), "s": s, "gflops": f / s / 1e9}
                for k, (c, s, f) in by_shape.items()
            ),
            key=lambda row: -row["s"],
        )[:40],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="+", choices=("transformer", "rnn"), default=["transformer"])
    parser.add_argument("--from", dest="data_dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--peer-spm", type=Path, default=DEFAULT_PEER_SPM)
    parser.add_argument("--tokenizer", type=Path, default=None, help="a seqattn tokenizer to load instead")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--steps", type=int, default=20, help="timed steps, then as many profiled")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "training_floor.json")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.warmup < 0:
        parser.error("--steps must be at least 1 and --warmup at least 0")
    start = time.perf_counter()
    set_threads(args.threads)
    keep_freed_memory()  # as the Trainer does
    console = Console()
    with tempfile.TemporaryDirectory(prefix="seqattn-floor-") as scratch:
        path, info = prepare_tokenizer(args, Path(scratch))
        tokenizer = Tokenizer.load(path)
    console.print(f"tokenizer: {info['origin']}")
    rows = []
    for name in args.models:
        console.print(
            f"[bold]{name}[/]: {args.warmup} warm-up, {args.steps} timed and {args.steps} profiled steps"
        )
        rows.append(measure(name, tokenizer, args.data_dir, warmup=args.warmup, steps=args.steps))
    table = Table(
        title="Training MFU and the bound its matrix-multiply kernels set (fp32, CPU)", title_justify="left"
    )
    for column in ("model", "tok/s", "MFU", "kernels' share of the step", "kernel rate", "MFU bound"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for row in rows:
        table.add_row(
            row["model"],
            f"{row['tok_per_s']:,.0f}",
            f"{row['mfu']:.1%}",
            f"{row['kernel_share']:.1%}",
            f"{row['kernel_gflops']:.1f} GFLOP/s ({row['kernel_gflops'] / row['peak_gflops']:.1%} of peak)",
            f"{row['mfu_bound']:.1%}",
        )
    console.print(table)
    console.print(
        f"matmul peak {rows[-1]['peak_gflops']:.1f} GFLOP/s (fp32, 2048 x 2048, best of 20, after the last model). "
        "MFU bound: the MFU of a step that ran only these kernels, at the rate they ran here."
    )
    machine = describe_machine(torch.device("cpu"))
    write_report(args, {"machine": machine, "results": rows}, start=start, console=console)


if __name__ == "__main__":
    sys.exit(main())
