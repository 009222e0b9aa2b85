"""Attention benchmark: what the attention core costs next to the raw PyTorch kernel.

Run ``python benchmarks/attention.py`` (``make bench``) or ``--quick`` (``make demo``). Two
sections, each timed on CPU and, when a GPU is present, on CUDA in fp32 and bf16 autocast:

**Training step** (self-attention forward + backward, key padding mask). ``MultiHeadAttention``
(need_weights=False) with each score -- ``scaled_dot`` (the default), ``dot``, ``general``,
``concat``, ``additive``, ``location`` -- is timed against a baseline written directly here: one
fused ``nn.Linear(D, 3D)`` for Q, K and V, ``torch.nn.functional.scaled_dot_product_attention``
and an ``nn.Linear(D, D)`` output projection, i.e. exactly the FLOPs of the default
``MultiHeadAttention``. Both get the same inputs, weights and mask (``B x T`` tokens, about 10%
of them padding). The gap between the two is what the abstraction costs; the target is a
ratio MHA / baseline <= 1.10. The dot-type scores run on the fused SDPA path; concat, additive
and location materialise their ``(B, H, T, T)`` scores (additive and concat even a
``(B, H, T, T, A)`` elementwise hidden tensor, skipped where that would exceed ``--max-intermediate-gib``), so
they are shown for scale, not held to the target.

**Decoding** (no_grad, 50 steps, a fresh ``(B, 1, D)`` query per step, all inputs made before
the clock starts):

* Bahdanau additive attention (B=64, source length 40, hidden 256): keys projected once with
  ``prepare_keys`` and then ``attend`` each step, versus raw keys passed to ``attend`` each step
  (so ``U k`` is recomputed 50 times). Target: speedup >= 3x.
* ``MultiHeadAttention`` cross-attention: ``project_memory`` once versus raw memory every step.
* ``MultiHeadAttention`` causal self-attention: a ``KVCache`` (each step projects only its own
  position) versus recomputing causal attention over the whole prefix each step.
* The same under beam search (64 sentences x 5 beams, a seeded beam reorder after every step,
  each hypothesis continuing one of its own sentence's): the ``KVCache``'s pool per sentence
  (``reorder(index, group=5)``: only membership masks move) versus copying every row's cache to
  its new place (``KVCache(grouped=False)``).
* On CPU in fp32, where the few-query kernel (:mod:`seqattn.attention.native`) is built: whole
  decoding steps of a 3-layer decoder's cross-attention over 200-piece sources, greedy and
  beam 5, with the kernel against the eager path (two batched matrix multiplies and a softmax).

The cached variant's loop includes its one-off preparation. Both variants of a pair compute the
same result; their maximum absolute difference is recorded (as is MHA's against the baseline),
so a speedup cannot silently come from skipped work.

Timing: warm-up calls, then the median of several repeats, all cases of one group (one ``T`` of
the training table, one pair of the decoding table) measured round-robin in the same process.
A ratio or speedup is the median of the per-round ratios of samples taken moments apart, so
every ratio compares numbers measured side by side (see ``benchmarks/_timing.py``); the JSON
also keeps the ratio of the medians. Times are milliseconds per call: per forward+backward step in
the training table, per 50-step decode loop (and per step) in the decoding table. The machine
description and every row go to a JSON file (default ``benchmarks/results/attention.json``).
Each group also records how many CPU cores other processes kept busy while it ran: on a shared
machine that, not the code, can decide a close call, and the tables say so.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
import torch.nn.functional as F
from _timing import OtherLoad, Timing, describe_machine, measure, paired_ratio, resolve_device
from rich.console import Console
from rich.table import Table
from torch import Tensor, nn

from seqattn.attention import (
    Additive,
    KVCache,
    MultiHeadAttention,
    attend,
    build_score,
    key_mask,
    native,
    padding_mask,
    prepare_keys,
)

D_MODEL = 256
NUM_HEADS = 4
SCORES = ("scaled_dot", "dot", "general", "concat", "additive", "location")
TANH_SCORES = ("concat", "additive")  # build a (B, H, Tq, Tk, A) hidden tensor
PADDING_FRACTION = 0.10
MHA_TARGET = 1.10  # MHA (default score) / baseline, per training row
DECODE_STEPS = 50
DECODE_BATCH = 64
BEAM = 5
SOURCE_LENGTH = 40
KERNEL_SOURCE_LENGTH = 200  # the decode-growth case: the kernel against the eager path
KERNEL_LAYERS = 3
ADDITIVE_HIDDEN = 256
ADDITIVE_TARGET = 3.0  # speedup of prepared keys over re-projected keys
NOISY_LOAD_CORES = 0.25  # other processes' CPU use above which the report warns
DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "attention.json"


# -- settings ---------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and 2048-token batches")
    parser.add_argument("--device", choices=("cpu", "cuda", "auto"), default="auto")
    parser.add_argument(
        "--json", type=Path, default=DEFAULT_JSON, help="output file (benchmarks/results/attention.json)"
    )
    parser.add_argument(
        "--lengths", type=int, nargs="+", default=[32, 128, 512], help="sequence lengths T (training table)"
    )
    parser.add_argument("--tokens", type=int, default=None, help="B*T per training batch (16384; quick 2048)")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats per case (11; quick 5)")
    parser.add_argument("--warmup", type=int, default=None, help="warm-up calls per case (2; quick 1)")
    parser.add_argument(
        "--max-intermediate-gib",
        type=float,
        default=None,
        help="skip concat/additive rows whose (B,H,T,T,A) hidden tensor exceeds this "
        "(default: 1/8 of RAM or GPU memory; quick: at most 0.3)",
    )
    args = parser.parse_args(argv)
    args.tokens = args.tokens or (2048 if args.quick else 16384)
    args.repeats = args.repeats or (5 if args.quick else 11)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.quick else 2)
    # Slow cases (the tanh scores) are cut to fewer repeats past this many seconds each.
    args.case_budget_s = 4.0 if args.quick else 12.0
    return args


def precisions(device: torch.device) -> list[str]:
    return ["fp32", "bf16-autocast"] if device.type == "cuda" else ["fp32"]


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager[object]:
    if precision == "bf16-autocast":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def memory_limit_bytes(device: torch.device, args: argparse.Namespace) -> float:
    if args.max_intermediate_gib is not None:
        return args.max_intermediate_gib * 2**30
    if device.type == "cuda":
        total = torch.cuda.get_device_properties(device).total_memory
    else:
        try:
            total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            total = 8 * 2**30
    limit = total / 8
    return min(limit, 0.3 * 2**30) if args.quick else limit


# -- training step ----------------------------------------------------------------------------


class RawSDPASelfAttention(nn.Module):
    """The baseline: fused QKV projection, ``F.scaled_dot_product_attention``, output projection."""

    def __init__(self, d_model: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        b, t, d = x.shape
        qkv = self.qkv(x).view(b, t, 3, self.num_heads, d // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # (B, H, T, Dh) each
        context = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.out(context.transpose(1, 2).reshape(b, t, d))


def training_batch(
    seq_len: int, tokens: int, device: torch.device, generator: torch.Generator
) -> tuple[Tensor, Tensor, Tensor, float]:
    """Inputs ``(B, T, D)`` (requiring grad), key mask ``(B, 1, 1, T)``, output grad, pad fraction."""
    batch = max(1, round(tokens / seq_len))
    shortest = max(1, round((1.0 - 2 * PADDING_FRACTION) * seq_len))  # lengths ~ U[0.8T, T]
    lengths = torch.randint(shortest, seq_len + 1, (batch,), generator=generator)
    lengths[0] = seq_len
    padding = padding_mask(lengths, max_len=seq_len)  # (B, T)
    x = torch.randn(batch, seq_len, D_MODEL, generator=generator).to(device).requires_grad_()
    grad_out = torch.randn(batch, seq_len, D_MODEL, generator=generator).to(device)
    pad_fraction = 1.0 - padding.float().mean().item()
    return x, key_mask(padding.to(device)), grad_out, pad_fraction


def training_step(
    forward: Callable[[Tensor, Tensor], Tensor],
    params: list[Tensor],
    x: Tensor,
    mask: Tensor,
    grad_out: Tensor,
    ctx: Callable[[], contextlib.AbstractContextManager[object]],
) -> Callable[[], None]:
    """One optimiser-free training step: clear grads, forward, backward with a fixed output grad."""

    def step() -> None:
        for p in [x, *params]:
            p.grad = None
        with ctx():
            out = forward(x, mask)
        out.backward(grad_out)

    return step


def mha_output(module: MultiHeadAttention, x: Tensor, mask: Tensor) -> Tensor:
    return module(x, mask=mask)[0]


def tanh_intermediate_bytes(batch: int, seq_len: int, element_size: int) -> int:
    head_dim = D_MODEL // NUM_HEADS  # the tanh scores' hidden size A defaults to the head size
    return batch * NUM_HEADS * seq_len * seq_len * head_dim * element_size


def run_training(
    device: torch.device, precision: str, args: argparse.Namespace, log: Console
) -> Iterator[dict[str, object]]:
    generator = torch.Generator().manual_seed(1234)
    limit = memory_limit_bytes(device, args)
    for seq_len in args.lengths:
        torch.manual_seed(seq_len)
        x, mask, grad_out, pad_fraction = training_batch(seq_len, args.tokens, device, generator)
        batch = x.size(0)
        ctx = functools.partial(autocast, device, precision)  # a fresh context per call
        reference = MultiHeadAttention(D_MODEL, NUM_HEADS).to(device)
        baseline = RawSDPASelfAttention(D_MODEL, NUM_HEADS).to(device)
        baseline.qkv.load_state_dict(reference.in_proj.state_dict())
        baseline.out.load_state_dict(reference.out_proj.state_dict())
        with torch.no_grad(), ctx():
            grad_out = grad_out.to(baseline(x, mask).dtype)
        with torch.no_grad():
            max_diff = (baseline(x, mask) - reference(x, mask=mask)[0]).abs().max().item()

        cases = {"baseline": training_step(baseline, list(baseline.parameters()), x, mask, grad_out, ctx)}
        skipped: dict[str, str] = {}
        paths: dict[str, str] = {}
        element_size = 2 if precision == "bf16-autocast" else 4
        for name in SCORES:
            if name == "scaled_dot":
                module = reference
            else:
                score = build_score(name, query_dim=D_MODEL // NUM_HEADS, max_len=seq_len)
                module = MultiHeadAttention(D_MODEL, NUM_HEADS, score=score).to(device)
                module.in_proj.load_state_dict(reference.in_proj.state_dict())
                module.out_proj.load_state_dict(reference.out_proj.state_dict())
            fused = module.score.dot_scale(D_MODEL // NUM_HEADS) is not None
            paths[name] = "fused SDPA" if fused else "explicit"
            need = tanh_intermediate_bytes(batch, seq_len, element_size) if name in TANH_SCORES else 0
            if need > limit:
                skipped[name] = f"hidden (B,H,T,T,A) {need / 2**30:.1f} GiB > {limit / 2**30:.1f} GiB"
                continue
            forward = functools.partial(mha_output, module)
            cases[name] = training_step(forward, list(module.parameters()), x, mask, grad_out, ctx)

        log.print(f"[dim]{device.type} {precision}: training step, T={seq_len}, B={batch} ...[/dim]")
        with OtherLoad() as load:
            timings = measure(
                cases,
                device=device,
                warmup=args.warmup,
                repeats=args.repeats,
                max_seconds_per_case=args.case_budget_s,
                min_sample_s=0.05,
            )
        base = timings["baseline"]
        common = {
            "section": "training",
            "device": device.type,
            "precision": precision,
            "seq_len": seq_len,
            "batch": batch,
            "tokens": batch * seq_len,
            "d_model": D_MODEL,
            "heads": NUM_HEADS,
            "padding_fraction": round(pad_fraction, 4),
            "unit": "ms per forward+backward step",
            "other_processes_cores": _round(load.other_cores),
        }
        yield {**common, "variant": "baseline", "label": "raw SDPA + projections", **base.as_dict()}
        for name in SCORES:
            row: dict[str, object] = {
                **common,
                "variant": f"mha/{name}",
                "label": f"MHA {name}" + (" (default)" if name == "scaled_dot" else ""),
                "path": paths[name],
            }
            if name in skipped:
                yield {**row, "skipped": skipped[name]}
                continue
            timing = timings[name]
            ratio = paired_ratio(timing, base)
            row.update(
                timing.as_dict(),
                ratio_vs_baseline=round(ratio, 4),
                ratio_of_medians=round(timing.median_ms / base.median_ms, 4),
            )
            if name == "scaled_dot":
                row.update(
                    target=f"ratio <= {MHA_TARGET:.2f}",
                    passed=ratio <= MHA_TARGET,
                    max_abs_diff_vs_baseline=max_diff,
                )
            yield row


# -- decoding ---------------------------------------------------------------------------------


def _source_lengths(generator: torch.Generator) -> Tensor:
    shortest = round((1.0 - 2 * PADDING_FRACTION) * SOURCE_LENGTH)
    lengths = torch.randint(shortest, SOURCE_LENGTH + 1, (DECODE_BATCH,), generator=generator)
    lengths[0] = SOURCE_LENGTH
    return lengths


def _decode_pair(
    title: str,
    fast: tuple[str, Callable[[], Tensor]],
    slow: tuple[str, Callable[[], Tensor]],
    device: torch.device,
    precision: str,
    args: argparse.Namespace,
    log: Console,
) -> list[dict[str, object]]:
    """Time a cached / uncached decode loop pair and check that they compute the same thing."""
    ctx = autocast(device, precision)

    def wrap(loop: Callable[[], Tensor]) -> Callable[[], Tensor]:
        def run() -> Tensor:
            with torch.no_grad(), autocast(device, precision):
                return loop()

        return run

    with torch.no_grad(), ctx:
        max_diff = (fast[1]() - slow[1]()).float().abs().max().item()
    log.print(f"[dim]{device.type} {precision}: decoding, {title} ...[/dim]")
    with OtherLoad() as load:
        timings: dict[str, Timing] = measure(
            {fast[0]: wrap(fast[1]), slow[0]: wrap(slow[1])},
            device=device,
            warmup=args.warmup,
            repeats=args.repeats,
            min_sample_s=0.05,
        )
    speedup = paired_ratio(timings[slow[0]], timings[fast[0]])
    common = {
        "section": "decoding",
        "device": device.type,
        "precision": precision,
        "case": title,
        "steps": DECODE_STEPS,
        "batch": DECODE_BATCH,
        "source_length": SOURCE_LENGTH,
        "unit": f"ms per {DECODE_STEPS}-step decode loop",
        "other_processes_cores": _round(load.other_cores),
    }
    rows = []
    for label, _ in (fast, slow):
        timing = timings[label]
        rows.append(
            {
                **common,
                "variant": label,
                **timing.as_dict(),
                "ms_per_step": round(timing.median_ms / DECODE_STEPS, 4),
            }
        )
    rows[0].update(speedup=round(speedup, 3), max_abs_diff=max_diff)
    return rows


def run_decoding(
    device: torch.device, precision: str, args: argparse.Namespace, log: Console
) -> Iterator[dict[str, object]]:
    generator = torch.Generator().manual_seed(4321)
    torch.manual_seed(0)

    def randn(*shape: int) -> Tensor:
        return torch.randn(*shape, generator=generator).to(device)

    source_padding = padding_mask(_source_lengths(generator).to(device), max_len=SOURCE_LENGTH)

    # Bahdanau: a decoder state (B, 1, hidden) queries encoder states (B, S, hidden).
    score = Additive(ADDITIVE_HIDDEN, ADDITIVE_HIDDEN, hidden_dim=ADDITIVE_HIDDEN).to(device).eval()
    encoder_states = randn(DECODE_BATCH, SOURCE_LENGTH, ADDITIVE_HIDDEN)
    states = [randn(DECODE_BATCH, 1, ADDITIVE_HIDDEN) for _ in range(DECODE_STEPS)]
    additive_mask = key_mask(source_padding, heads=False)  # (B, 1, S)

    def additive_prepared() -> Tensor:
        keys = prepare_keys(encoder_states, score=score)
        for state in states:
            context, _ = attend(state, keys, encoder_states, score=score, mask=additive_mask)
        return context

    def additive_raw() -> Tensor:
        for state in states:
            context, _ = attend(state, encoder_states, encoder_states, score=score, mask=additive_mask)
        return context

    rows = _decode_pair(
        f"Bahdanau additive (hidden {ADDITIVE_HIDDEN})",
        ("keys prepared once (prepare_keys)", additive_prepared),
        ("keys re-projected every step", additive_raw),
        device,
        precision,
        args,
        log,
    )
    speedup = float(rows[0]["speedup"])
    rows[0].update(target=f"speedup >= {ADDITIVE_TARGET:.0f}x", passed=speedup >= ADDITIVE_TARGET)
    yield from rows

    # Transformer cross-attention: memory (B, S, D) projected once or every step.
    mha = MultiHeadAttention(D_MODEL, NUM_HEADS).to(device).eval()
    memory = randn(DECODE_BATCH, SOURCE_LENGTH, D_MODEL)
    queries = [randn(DECODE_BATCH, 1, D_MODEL) for _ in range(DECODE_STEPS)]
    memory_mask = key_mask(source_padding)  # (B, 1, 1, S)

    def cross_projected() -> Tensor:
        projected = mha.project_memory(memory)
        for query in queries:
            out, _ = mha(query, projected, mask=memory_mask)
        return out

    def cross_raw() -> Tensor:
        for query in queries:
            out, _ = mha(query, memory, mask=memory_mask)
        return out

    yield from _decode_pair(
        f"MHA cross-attention (D {D_MODEL}, {NUM_HEADS} heads)",
        ("memory projected once (project_memory)", cross_projected),
        ("memory projected every step", cross_raw),
        device,
        precision,
        args,
        log,
    )

    # Transformer causal self-attention: one new position per step.
    def self_cached() -> Tensor:
        cache = KVCache()
        for query in queries:
            out, _ = mha(query, causal=True, cache=cache)
        return out

    def self_recomputed() -> Tensor:
        prefix = queries[0][:, :0]
        for query in queries:
            prefix = torch.cat([prefix, query], dim=1)  # (B, t, D)
            out, _ = mha(prefix, causal=True)
        return out[:, -1:]

    yield from _decode_pair(
        f"MHA causal self-attention (D {D_MODEL}, {NUM_HEADS} heads)",
        ("KVCache", self_cached),
        ("full causal recompute over the prefix", self_recomputed),
        device,
        precision,
        args,
        log,
    )

    # The same under beam search: K hypotheses per sentence, reordered within it after each step.
    rows = DECODE_BATCH * BEAM
    beam_queries = [randn(rows, 1, D_MODEL) for _ in range(DECODE_STEPS)]
    parents = [
        (
            torch.arange(DECODE_BATCH).repeat_interleave(BEAM) * BEAM
            + torch.randint(0, BEAM, (rows,), generator=generator)
        ).to(device)
        for _ in range(DECODE_STEPS)
    ]

    def beam_loop(cache: KVCache, group: int) -> Tensor:
        for query, index in zip(beam_queries, parents, strict=True):
            out, _ = mha(query, causal=True, cache=cache)
            cache.reorder(index, group=group)
        return out

    yield from _decode_pair(
        f"MHA causal self-attention under beam reorders ({DECODE_BATCH} x {BEAM} rows)",
        ("KVCache, one pool per sentence", lambda: beam_loop(KVCache(), BEAM)),
        ("KVCache copying every reorder", lambda: beam_loop(KVCache(grouped=False), 1)),
        device,
        precision,
        args,
        log,
    )

    if device.type == "cpu" and precision == "fp32" and native.enabled():
        yield from _kernel_pairs(device, precision, args, log, generator)


def _kernel_pairs(
    device: torch.device, precision: str, args: argparse.Namespace, log: Console, generator: torch.Generator
) -> Iterator[dict[str, object]]:
    """The few-query kernel against the eager path, inside whole decoding steps of a 3-layer
    decoder's cross-attention over 200-piece sources (the case where decoding slowed with
    source length): greedy (one query per sentence) and beam search (the 5 hypotheses of a
    sentence as 5 queries over its source). Three layers' keys and values (26 MB each at beam
    5's 64 sentences) do not fit the last-level cache, as in a real decode."""
    length = KERNEL_SOURCE_LENGTH
    lengths = torch.randint(round(0.8 * length), length + 1, (DECODE_BATCH,), generator=generator)
    lengths[0] = length
    mask = key_mask(padding_mask(lengths.to(device), max_len=length))  # (B, 1, 1, S)
    layers = [MultiHeadAttention(D_MODEL, NUM_HEADS).to(device).eval() for _ in range(KERNEL_LAYERS)]
    with torch.no_grad():
        memories = [
            layer.project_memory(torch.randn(DECODE_BATCH, length, D_MODEL, generator=generator).to(device))
            for layer in layers
        ]
    for group, name in ((1, "greedy"), (BEAM, f"beam {BEAM}")):
        queries = [
            torch.randn(DECODE_BATCH, group, D_MODEL, generator=generator).to(device)
            for _ in range(DECODE_STEPS)
        ]

        def loop(on: bool, queries: list[Tensor] = queries) -> Tensor:
            with native.use_native(on):
                for query in queries:
                    for layer, memory in zip(layers, memories, strict=True):
                        out, _ = layer(query, memory, mask=mask)
            return out

        yield from _decode_pair(
            f"cross-attention, {name}, {KERNEL_LAYERS} layers over {length}-piece sources",
            ("few-query kernel (seqattn.attention.native)", functools.partial(loop, True)),
            ("eager: two batched matmuls and a softmax", functools.partial(loop, False)),
            device,
            precision,
            args,
            log,
        )


# -- report -----------------------------------------------------------------------------------


def _round(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


def load_caption(rows: list[dict[str, object]]) -> str | None:
    """Table caption: how busy other processes kept the CPU while the table was measured."""
    loads = [
        float(row["other_processes_cores"]) for row in rows if row.get("other_processes_cores") is not None
    ]
    if not loads:
        return None
    low, high = min(loads), max(loads)
    span = f"{low:.1f}" if f"{low:.1f}" == f"{high:.1f}" else f"{low:.1f}-{high:.1f}"
    caption = f"CPU cores kept busy by other processes while measuring: {span}"
    if high > NOISY_LOAD_CORES:
        caption += " (the machine was not idle: timings and ratios are noisier than usual)"
    return caption


def _ms(row: dict[str, object]) -> str:
    return f"{row['median_ms']:.2f}"


def _spread(row: dict[str, object]) -> str:
    return f"{row['q1_ms']:.2f}-{row['q3_ms']:.2f}"


def _verdict(row: dict[str, object]) -> str:
    if "passed" not in row:
        return ""
    return "[bold green]PASS[/]" if row["passed"] else "[bold red]FAIL[/]"


def training_table(rows: list[dict[str, object]], title: str) -> Table:
    caption = load_caption(rows)
    table = Table(title=title, title_justify="left", caption=caption, caption_justify="left")
    for column, justify in (
        ("T", "right"),
        ("B", "right"),
        ("pad", "right"),
        ("variant", "left"),
        ("path", "left"),
        ("ms / step (median)", "right"),
        ("IQR ms", "right"),
        ("x baseline", "right"),
        (f"target <= {MHA_TARGET:.2f}", "center"),
    ):
        table.add_column(column, justify=justify)
    previous = None
    for row in rows:
        if previous is not None and row["seq_len"] != previous:
            table.add_section()
        previous = row["seq_len"]
        first = row["variant"] == "baseline"
        cells = [
            str(row["seq_len"]) if first else "",
            str(row["batch"]) if first else "",
            f"{100 * float(row['padding_fraction']):.1f}%" if first else "",
            str(row["label"]),
            str(row.get("path", "")),
        ]
        if "skipped" in row:
            table.add_row(*cells, f"[dim]skipped: {row['skipped']}[/]", "", "", "")
            continue
        ratio = "1.00" if first else f"{row['ratio_vs_baseline']:.2f}"
        table.add_row(*cells, _ms(row), _spread(row), ratio, _verdict(row))
    return table


def decoding_table(rows: list[dict[str, object]], title: str) -> Table:
    caption = load_caption(rows)
    table = Table(title=title, title_justify="left", caption=caption, caption_justify="left")
    for column, justify in (
        ("case", "left"),
        ("variant", "left"),
        (f"ms / {DECODE_STEPS} steps (median)", "right"),
        ("IQR ms", "right"),
        ("ms / step", "right"),
        ("speedup", "right"),
        ("target", "center"),
    ):
        table.add_column(column, justify=justify)
    for index, row in enumerate(rows):
        first = index % 2 == 0
        if first and index:
            table.add_section()
        speedup = f"{row['speedup']:.2f}x" if "speedup" in row else ""
        target = f"{row['target']} {_verdict(row)}" if "target" in row else ""
        table.add_row(
            str(row["case"]) if first else "",
            str(row["variant"]),
            _ms(row),
            _spread(row),
            f"{row['ms_per_step']:.3f}",
            speedup,
            target,
        )
    return table


def machine_table(info: dict[str, object], args: argparse.Namespace) -> Table:
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("cpu", f"{info['cpu']} ({info['cpu_count']} logical cores, {info['cpu_capability']})")
    table.add_row("torch", f"{info['torch']}, {info['torch_threads']} threads (get_num_threads)")
    device = str(info["device"])
    if "gpu" in info:
        device += f": {info['gpu']} ({info['gpu_memory_gib']} GiB, sm {info['gpu_capability']}, CUDA {info['cuda']})"
    table.add_row("device", device)
    table.add_row("kernels", f"compiled CPU kernels (seqattn.native): {info['cpu_kernels']}")
    table.add_row("python", f"{info['python']} on {info['platform']}")
    mode = "quick" if args.quick else "full"
    table.add_row(
        "mode",
        f"{mode}: warm-up {args.warmup}, median of up to {args.repeats} repeats; "
        f"training B*T ~ {args.tokens}, D={D_MODEL}, H={NUM_HEADS}",
    )
    return table


def run_all(device: torch.device, args: argparse.Namespace, console: Console, log: Console) -> list[dict]:
    """Measure and print both tables for every precision; return all rows."""
    rows: list[dict[str, object]] = []
    for precision in precisions(device):
        training = list(run_training(device, precision, args, log))
        console.print(
            training_table(
                training,
                f"Training step, self-attention with key padding mask: {device.type} {precision}, "
                f"ms per forward+backward of a (B, T, {D_MODEL}) batch",
            )
        )
        decoding = list(run_decoding(device, precision, args, log))
        console.print(
            decoding_table(
                decoding,
                f"Decoding under no_grad: {device.type} {precision}, B={DECODE_BATCH}, "
                f"source length {SOURCE_LENGTH}, {DECODE_STEPS} steps of a (B, 1, D) query",
            )
        )
        rows += training + decoding
    return rows


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    device = resolve_device(args.device)
    console = Console(width=None if Console().is_terminal else 150)
    log = Console(stderr=True)
    info = describe_machine(device)
    console.print("[bold]seqattn attention benchmark[/]")
    console.print(machine_table(info, args))

    with OtherLoad() as whole_run:
        rows = run_all(device, args, console, log)
    info["other_processes_cores"] = _round(whole_run.other_cores)
    checked = [row for row in rows if "passed" in row]
    failed = [row for row in checked if not row["passed"]]
    wall_s = time.perf_counter() - started
    for row in checked:
        where = f"{row['device']} {row['precision']}"
        if row["section"] == "training":
            what = f"MHA/baseline at T={row['seq_len']}: {row['ratio_vs_baseline']:.3f} ({row['target']})"
        else:
            what = f"additive decode speedup: {row['speedup']:.2f}x ({row['target']})"
        console.print(f"{_verdict(row)} {where}: {what}")
    console.print(f"{len(checked) - len(failed)}/{len(checked)} targets met; wall time {wall_s:.1f} s")
    if whole_run.other_cores is not None and whole_run.other_cores > NOISY_LOAD_CORES:
        console.print(
            f"[yellow]note: other processes kept {whole_run.other_cores:.1f} of {os.cpu_count()} CPU "
            "cores busy during this run; rerun on an idle machine before trusting close calls[/]"
        )

    args.json.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "benchmark": "attention",
        "mode": "quick" if args.quick else "full",
        "machine": info,
        "settings": {
            "tokens_per_batch": args.tokens,
            "lengths": args.lengths,
            "warmup": args.warmup,
            "repeats": args.repeats,
            "d_model": D_MODEL,
            "heads": NUM_HEADS,
            "decode_steps": DECODE_STEPS,
            "decode_batch": DECODE_BATCH,
            "source_length": SOURCE_LENGTH,
            "additive_hidden": ADDITIVE_HIDDEN,
        },
        "targets": {"mha_over_baseline_max": MHA_TARGET, "additive_decode_speedup_min": ADDITIVE_TARGET},
        "rows": rows,
        "targets_met": len(checked) - len(failed),
        "targets_checked": len(checked),
        "wall_s": round(wall_s, 1),
    }
    args.json.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    console.print(f"results written to {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
