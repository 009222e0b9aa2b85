"""int8 inference benchmark: what :mod:`seqattn.quantization` buys on this CPU, layer by layer
and for whole decoder steps.

Run ``python benchmarks/int8.py`` (``make bench``; ``--quick`` for fewer repeats). Two tables,
both fp32 against int8 (``Int8Linear``: per-row input quantization + ``torch._int_mm`` +
rescaling, everything included), timed round-robin in one process (``benchmarks/_timing.py``);
each ratio is the median of per-round ratios of samples taken moments apart:

**Linear layers** at decoding shapes: ``M`` rows (64 = greedy over a batch of 64 sentences,
320 = beam 5) times the weight shapes of the benchmark Transformer (d 256, FFN 1,024, 8k
vocabulary) and of a Transformer-base (d 512, FFN 2,048, 32k vocabulary). The relative error
``|y_int8 - y_fp32| / |y_fp32|`` is recorded for each (random inputs and weights).

**Decoder steps**: a seeded, randomly initialised Transformer (benchmark size and base size)
and the benchmark RNN (biLSTM 2 x 128 per direction, LSTM 2 x 256, additive attention,
input feeding: the configurations of ``benchmarks/translation.py``) encode 64 (or 320) sources of 20 pieces, then run 30 incremental decoding steps
on fixed inputs; the int8 copy (:func:`~seqattn.quantization.quantize_int8`, default size
threshold) runs the same. This isolates the per-step cost from output lengths, which differ
between checkpoints; ``benchmarks/translation.py`` measures whole decodes of a trained model.

Results go to ``benchmarks/results/int8.json``.
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from _timing import describe_machine, measure, paired_ratio
from rich.console import Console
from rich.table import Table
from translation import model_config

from seqattn.config import RNNConfig, TransformerConfig
from seqattn.models.build import build_seq2seq
from seqattn.quantization import Int8Linear, native_int8, quantize_int8

RESULTS = Path(__file__).parent / "results" / "int8.json"
CPU = torch.device("cpu")
LAYERS = {
    "d256": [(256, 768), (256, 256), (256, 1024), (1024, 256), (256, 8000)],
    "d512": [(512, 1536), (512, 512), (512, 2048), (2048, 512), (512, 32000)],
}
MODELS: dict[str, tuple[RNNConfig | TransformerConfig, int]] = {
    "Transformer d256 (benchmark)": (model_config("transformer"), 8000),
    "Transformer-base d512": (
        TransformerConfig(
            d_model=512, num_heads=8, ffn_dim=2048, encoder_layers=6, decoder_layers=6, tie="decoder"
        ),
        32000,
    ),
    "RNN (benchmark)": (model_config("rnn"), 8000),
}
SOURCE_LEN = 20
STEPS = 30


def linear_rows(repeats: int) -> list[dict[str, Any]]:
    rows = []
    for size, shapes in LAYERS.items():
        for m in (64, 320):
            for k, n in shapes:
                generator = torch.Generator().manual_seed(0)
                x = torch.randn(m, k, generator=generator)
                weight = torch.randn(n, k, generator=generator) / k**0.5
                bias = torch.randn(n, generator=generator)
                layer = Int8Linear.from_weight(weight, bias)
                timings = measure(
                    {
                        "fp32": functools.partial(F.linear, x, weight, bias),
                        "int8": functools.partial(layer, x),
                    },
                    device=CPU,
                    warmup=3,
                    repeats=repeats,
                )
                want = F.linear(x, weight, bias)
                rows.append(
                    {
                        "model": size,
                        "rows": m,
                        "shape": f"{k}x{n}",
                        "fp32_ms": timings["fp32"].median_ms,
                        "int8_ms": timings["int8"].median_ms,
                        "speedup": paired_ratio(timings["fp32"], timings["int8"]),
                        "relative_error": float((layer(x) - want).norm() / want.norm()),
                    }
                )
    return rows


def _decode(
    model: torch.nn.Module, *, src: torch.Tensor, lengths: torch.Tensor, inputs: torch.Tensor
) -> torch.Tensor:
    """Encode ``src``, then one step per row of ``inputs`` ``(STEPS, B)``; the last logits."""
    with torch.no_grad():
        state = model.encode(src, lengths)
        for tokens in inputs:
            out, state = model.step(tokens, state)
    return out.logits


def step_rows(repeats: int, quick: bool) -> list[dict[str, Any]]:
    rows = []
    for name, (config, vocab) in MODELS.items():
        torch.manual_seed(0)
        model = build_seq2seq(config, src_vocab=vocab, tgt_vocab=vocab).eval()
        quantized = quantize_int8(copy.deepcopy(model))
        for batch in (64,) if quick else (64, 320):
            generator = torch.Generator().manual_seed(1)
            src = torch.randint(4, vocab, (batch, SOURCE_LEN), generator=generator)
            lengths = torch.full((batch,), SOURCE_LEN)
            inputs = torch.randint(4, vocab, (STEPS, batch), generator=generator)

            decode = functools.partial(_decode, src=src, lengths=lengths, inputs=inputs)
            timings = measure(
                {"fp32": functools.partial(decode, model), "int8": functools.partial(decode, quantized)},
                device=CPU,
                warmup=1,
                repeats=repeats,
            )
            want, got = decode(model), decode(quantized)
            rows.append(
                {
                    "model": name,
                    "rows": batch,
                    "fp32_ms_per_step": timings["fp32"].median_ms / STEPS,
                    "int8_ms_per_step": timings["int8"].median_ms / STEPS,
                    "speedup": paired_ratio(timings["fp32"], timings["int8"]),
                    "logits_relative_error": float((got - want).norm() / want.norm()),
                }
            )
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, batch 64 only for the steps")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    console = Console()
    machine = describe_machine(CPU)
    vnni = native_int8()
    console.print(
        f"[bold]machine[/]: {machine['cpu']}, torch {machine['torch']}, {args.threads} threads, VNNI {vnni}"
    )

    layers = linear_rows(5 if args.quick else 15)
    table = Table(
        title="linear layers: fp32 F.linear vs Int8Linear (quantize + int8 mm + rescale)",
        title_justify="left",
    )
    for column in ("model", "rows", "in x out", "fp32 ms", "int8 ms", "speedup", "rel. error"):
        table.add_column(column, justify="left" if column == "model" else "right", no_wrap=column == "model")
    for row in layers:
        table.add_row(
            row["model"],
            str(row["rows"]),
            row["shape"],
            f"{row['fp32_ms']:.3f}",
            f"{row['int8_ms']:.3f}",
            f"{row['speedup']:.2f}x",
            f"{row['relative_error']:.4f}",
        )
    console.print(table)

    steps = step_rows(3 if args.quick else 7, args.quick)
    table = Table(
        title=f"decoder steps: encode {SOURCE_LEN}-piece sources + {STEPS} incremental steps, fp32 vs int8",
        title_justify="left",
    )
    for column in ("model", "rows", "fp32 ms/step", "int8 ms/step", "speedup", "logits rel. error"):
        table.add_column(column, justify="left" if column == "model" else "right", no_wrap=column == "model")
    for row in steps:
        table.add_row(
            row["model"],
            str(row["rows"]),
            f"{row['fp32_ms_per_step']:.2f}",
            f"{row['int8_ms_per_step']:.2f}",
            f"{row['speedup']:.2f}x",
            f"{row['logits_relative_error']:.4f}",
        )
    console.print(table)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    payload = {"machine": machine, "vnni": vnni, "linear": layers, "steps": steps}
    args.json.write_text(json.dumps(payload, indent=2) + "\n")
    console.print(f"wrote {args.json} ({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
