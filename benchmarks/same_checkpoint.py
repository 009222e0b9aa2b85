"""One checkpoint, two toolkits: seqattn's benchmark Transformer decoded by seqattn and by OpenNMT-py.

The main table of ``translation.py`` decodes each toolkit's *own* 200-step checkpoint. Those
models differ (BLEU 11 against 6 on the same test set, different output lengths), so their
decoding ratios compare different amounts of work. Here both toolkits decode the same weights:
the Transformer that ``translation.py --save-models DIR`` wrote is converted into an OpenNMT-py
3.5.1 checkpoint and translated by the peers' harness command, alternately with seqattn.

**Conversion** (:func:`to_opennmt`). Both are pre-norm Transformers with sinusoidal positions
(interleaved sin/cos; the conversion checks OpenNMT-py's table against seqattn's), embeddings scaled by sqrt(d) and
the decoder embedding tied to the output layer. Parameter by parameter: the fused ``in_proj``
rows ``[W_q; W_k; W_v]`` become ``linear_query``/``linear_keys``/``linear_values``,
``out_proj`` ``final_linear``; ``ffn.0``/``ffn.3`` become ``w_1``/``w_2``; the encoder layer's
``norm1``/``norm2`` are ``layer_norm``/``feed_forward.layer_norm``, the decoder layer's
``norm1``/``norm2``/``norm3`` are ``layer_norm_1``/``layer_norm_2``/``feed_forward.layer_norm``;
the final norms map to ``encoder.layer_norm``/``decoder.layer_norm``. seqattn's projections
have biases and its LayerNorm eps is 1e-5, so the converted options set ``add_qkvbias``,
``add_ffnbias`` and ``norm_eps=1e-5``; OpenNMT-py's generator bias is zero. The vocabulary stays
the peers' own (their 4 specials, then ``vocab.txt``): embedding rows are permuted by piece
string (``<blank>`` is seqattn's ``<pad>``). Everything else (options, vocabulary layout) comes
from the peers' trained OpenNMT-py Transformer checkpoint, used as a template.

**Input.** seqattn closes every source with ``</s>`` (it is trained so); OpenNMT-py's text
pipeline adds nothing to the source, so its input file spells the ``</s>`` out (the converted
vocabulary maps it to the same embedding row). Both read the peers' prepared pieces of
``test_2016_flickr`` (1,000 sentences).

**Search.** The harness's flags (``run.sh``): batches of 64 sentences, GNMT length penalty
alpha 1.0, greedy = ``-beam_size 1 -random_sampling_topk 1``, beam = ``-beam_size 5``,
``-max_length_ratio 1.5``; seqattn as in ``translation.py`` (``max_len_a=1.5, max_len_b=5``).
The length caps differ: seqattn caps each sentence at ``floor(1.5 n + 5)`` pieces (``n``
counting its ``</s>``), OpenNMT-py a whole batch at 1.5 x its longest source, so a sentence that
reaches seqattn's cap may go on in OpenNMT-py. The table gives both toolkits' output pieces and
the share of identical outputs; BLEU of both is computed here the same way
(``seqattn.metrics.corpus_bleu`` of the detokenized output against the raw references).

**Timing.** Every decode runs in a fresh process: OpenNMT-py's time is the harness hook's
record of ``Inference._translate`` (data, search, detokenization of ids), seqattn's the
``translate_batches`` call plus detokenization (``translation.decode``), both without model
loading. ``--repeats`` rounds alternate the order (seqattn first in even rounds, OpenNMT-py
first in odd ones), so slow spells of a shared machine hit both; the table reports medians, the
ratio of the medians, and the range of the per-round ratios. With int8 instructions (VNNI) the
same checkpoint is also decoded by seqattn in int8 (``--cpu-int8``).

**Shortlist** (``--shortlist``, on by default): seqattn also decodes the same weights over a
lexical shortlist built from the training pairs with ``seqattn shortlist``'s defaults (rows
``fp32+shortlist``, ``int8+shortlist``). It changes what the search may produce, so the table's
BLEU is the check; the JSON adds the share of outputs identical to the same decoder over the
whole vocabulary.

**Kernel floor** (``--floor``, on by default). One more fp32 decode per search runs under
``torch.profiler``, and the self time of its operators is summed by kind: matrix multiplies,
attention kernels, log-softmax/argmax/top-k, layer norms -- the torch kernels any decoder of
these weights runs for the same rows (OpenNMT-py's attention is a matmul and a softmax) -- and
everything else (copies, gathers, masks, elementwise glue). Against the time the issue's target
leaves (OpenNMT-py's median over 1.5 for greedy, over 2 for beam 5): if the kernels alone take
longer, no change outside them reaches the target in fp32.

The RNN is not converted: seqattn's RNN initialises its decoder through a tanh bridge from the
encoder's final states, OpenNMT-py's (``bridge`` off, as in the peers' config) with those
states themselves, so no setting of the weights makes the two compute the same function.
Instead (``--rnn``, on by default) each toolkit decodes its *own* 200-step RNN (OpenNMT-py's
from the peers' run, on sources without ``</s>`` as it was trained; seqattn's from
``--models``) in the same alternating rounds: the ratios of the ``translation.py`` table, with
the run-to-run drift taken out. The two models stop at different lengths, so the JSON also
gives the ratio per output piece.

Usage (after ``make bench-peers``, which runs it)::

    python benchmarks/same_checkpoint.py --models /tmp/seqattn-peers/seqattn-models

Results go to ``benchmarks/results/same_checkpoint.json`` (``--json``).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
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
from torch.profiler import ProfilerActivity, profile
from translation import (
    DEFAULT_DATA,
    ROOT,
    TEST_STEM,
    bench_shortlist,
    data_file,
    decode,
    read_lines,
    run_subprocess,
    search_name,
    set_threads,
)

from seqattn.config import RNNConfig, TransformerConfig
from seqattn.data.tokenizer import BOS_ID, EOS_ID, PAD_ID, UNK_ID, Tokenizer
from seqattn.models.transformer import sinusoidal_table

ONMT_SPECIALS = {"<unk>": UNK_ID, "<blank>": PAD_ID, "<s>": BOS_ID, "</s>": EOS_ID}
"""OpenNMT-py's special tokens and the seqattn ids of the same roles."""

log = logger("same_checkpoint")


# -- the conversion ------------------------------------------------------------------------------


def to_opennmt(
    state: dict[str, torch.Tensor], config: TransformerConfig, tokenizer: Tokenizer, template: dict[str, Any]
) -> dict[str, Any]:
    """seqattn Transformer weights -> an OpenNMT-py 3.5.1 checkpoint computing the same function.

    ``template``: an OpenNMT-py Transformer checkpoint of the same sizes (its options and
    vocabulary are kept, its weights replaced). See the module docstring for the mapping.
    """
    if not (config.pre_norm and config.positions == "sinusoidal" and config.tie == "decoder"):
        raise ValueError("only pre-norm Transformers with sinusoidal positions and tie='decoder' convert")
    vocab = template["vocab"]
    if vocab["src"] != vocab["tgt"]:
        raise ValueError("the template's source and target vocabularies differ")
    ids = [ONMT_SPECIALS[p] if p in ONMT_SPECIALS else tokenizer.piece_to_id(p) for p in vocab["tgt"]]
    if sorted(ids) != list(range(tokenizer.vocab_size)):
        raise ValueError("the template's vocabulary is not a reordering of the tokenizer's pieces")
    rows = torch.tensor(ids)
    d = config.d_model
    out: dict[str, torch.Tensor] = {}

    def copy_norm(target: str, source: str) -> None:
        out[f"{target}.weight"], out[f"{target}.bias"] = state[f"{source}.weight"], state[f"{source}.bias"]

    def copy_attention(target: str, source: str) -> None:
        weight, bias = state[f"{source}.in_proj.weight"], state[f"{source}.in_proj.bias"]
        for i, name in enumerate(("linear_query", "linear_keys", "linear_values")):
            out[f"{target}.{name}.weight"] = weight[i * d : (i + 1) * d].clone()
            out[f"{target}.{name}.bias"] = bias[i * d : (i + 1) * d].clone()
        out[f"{target}.final_linear.weight"] = state[f"{source}.out_proj.weight"]
        out[f"{target}.final_linear.bias"] = state[f"{source}.out_proj.bias"]

    def copy_ffn(target: str, source: str, norm: str) -> None:
        for onmt, ours in (("w_1", "ffn.0"), ("w_2", "ffn.3")):
            out[f"{target}.{onmt}.weight"] = state[f"{source}.{ours}.weight"]
            out[f"{target}.{onmt}.bias"] = state[f"{source}.{ours}.bias"]
        copy_norm(f"{target}.layer_norm", f"{source}.{norm}")

    for side, embed in (("encoder", "src_embed"), ("decoder", "tgt_embed")):
        prefix = f"{side}.embeddings.make_embedding"
        out[f"{prefix}.emb_luts.0.weight"] = state[f"{embed}.tokens.weight"][rows]
        table = template["model"][f"{prefix}.pe.pe"]  # (max_len, 1, D)
        if not torch.allclose(table[:, 0], sinusoidal_table(table.size(0), d), atol=1e-5):
            raise ValueError("the template's position table is not seqattn's interleaved sinusoids")
        out[f"{prefix}.pe.pe"] = table
    for i in range(config.encoder_layers):
        layer = f"encoder.transformer.{i}"
        copy_attention(f"{layer}.self_attn", f"encoder.{i}.self_attn")
        copy_norm(f"{layer}.layer_norm", f"encoder.{i}.norm1")
        copy_ffn(f"{layer}.feed_forward", f"encoder.{i}", "norm2")
    copy_norm("encoder.layer_norm", "encoder_norm")
    for i in range(config.decoder_layers):
        layer = f"decoder.transformer_layers.{i}"
        copy_attention(f"{layer}.self_attn", f"decoder.{i}.self_attn")
        copy_attention(f"{layer}.context_attn", f"decoder.{i}.cross_attn")
        copy_norm(f"{layer}.layer_norm_1", f"decoder.{i}.norm1")
        copy_norm(f"{layer}.layer_norm_2", f"decoder.{i}.norm2")
        copy_ffn(f"{layer}.feed_forward", f"decoder.{i}", "norm3")
    copy_norm("decoder.layer_norm", "decoder_norm")
    missing = sorted(set(template["model"]) - set(out))
    if missing:
        raise ValueError(f"the template has parameters this conversion does not fill: {missing[:3]}")
    generator = {
        "weight": out["decoder.embeddings.make_embedding.emb_luts.0.weight"],
        "bias": torch.zeros(len(ids)),
    }
    options = copy.deepcopy(template["opt"])
    options.add_qkvbias, options.add_ffnbias, options.norm_eps = True, True, 1e-5
    return {"model": out, "generator": generator, "vocab": vocab, "opt": options, "optim": None}


# -- one decode in a fresh process -----------------------------------------------------------------


def read_pieces(path: Path) -> list[list[str]]:
    return [line.split() for line in read_lines(path)]


def seqattn_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Decode the test pieces with the saved checkpoint (seqattn), as ``translation.py`` does."""
    from seqattn.allocator import keep_freed_memory
    from seqattn.decoding.shortlist import LexicalShortlist, Shortlisted
    from seqattn.models.build import build_seq2seq
    from seqattn.quantization import quantize_int8
    from seqattn.training.checkpoint import load_checkpoint

    set_threads(spec["threads"])
    keep_freed_memory()  # as seqattn.load and the Trainer do
    tokenizer = Tokenizer.load(spec["tokenizer"])
    saved = load_checkpoint(Path(spec["checkpoint"]))
    config = (RNNConfig if saved["config"].get("arch") == "rnn" else TransformerConfig)(**saved["config"])
    model = build_seq2seq(config, src_vocab=tokenizer.vocab_size, tgt_vocab=tokenizer.vocab_size)
    model.load_state_dict(saved["model"])
    model.eval()
    if spec["precision"].startswith("int8"):
        quantize_int8(model)
    decoder = (
        model
        if spec.get("shortlist") is None
        else Shortlisted(model, LexicalShortlist.load(spec["shortlist"]))
    )
    sources = [[tokenizer.piece_to_id(p) for p in line] for line in read_pieces(Path(spec["source"]))]
    options = {
        "beam": spec["beam"],
        "batch": spec["batch"],
        "device": torch.device("cpu"),
        "precision": "fp32",
        "keep_outputs": True,
    }
    references = read_lines(Path(spec["references"]))
    profiler = profile(activities=[ProfilerActivity.CPU]) if spec.get("profile") else None
    with profiler if profiler is not None else contextlib.nullcontext():
        result = decode(decoder, sources, references, tokenizer, **options)
    if profiler is not None:
        result["kernels"] = kernel_seconds(profiler.key_averages())
    result["outputs"] = [" ".join(tokenizer.id_to_piece(i) for i in ids) for ids in result["outputs"]]
    return result


KERNELS = {
    "matrix multiplies": ("aten::addmm", "aten::mm", "aten::bmm", "aten::baddbmm", "aten::_mkldnn_linear"),
    "attention": (
        "aten::scaled_dot_product_attention",
        "aten::_scaled_dot_product_flash_attention_for_cpu",
        "aten::_scaled_dot_product_flash_attention",
        "aten::_scaled_dot_product_efficient_attention",
        "aten::_scaled_dot_product_attention_math",
        "aten::_softmax",
    ),
    "log-softmax, argmax, top-k": ("aten::_log_softmax", "aten::max", "aten::amax", "aten::topk"),
    "layer norm": ("aten::native_layer_norm", "aten::layer_norm"),
}
"""Operators whose self time any decoder of these weights spends (OpenNMT-py calls the same torch
kernels for the same rows), by kind; exact operator names."""


def kernel_seconds(averages: Any) -> dict[str, float]:
    """``torch.profiler`` key averages -> self CPU seconds per :data:`KERNELS` category, plus
    ``"other operators"`` (copies, gathers, masks, elementwise glue)."""
    kind = {name: category for category, names in KERNELS.items() for name in names}
    totals = dict.fromkeys([*KERNELS, "other operators"], 0.0)
    for event in averages:
        totals[kind.get(event.key, "other operators")] += event.self_cpu_time_total / 1e6
    return totals


def run_seqattn(spec: dict[str, Any], scratch: Path) -> dict[str, Any]:
    """One seqattn decode in a fresh interpreter (this script's worker)."""
    variant = spec["precision"].replace("+", "-")
    tag = f"seqattn-{Path(spec['checkpoint']).stem}-{variant}-beam{spec['beam']}"
    tag += "-profile" if spec.get("profile") else ""
    return run_subprocess(spec, scratch, script=Path(__file__).resolve(), tag=tag)


def run_opennmt(
    checkpoint: Path,
    source: Path,
    *,
    beam: int,
    batch: int,
    threads: int,
    peers_work: Path,
    harness: Path,
    scratch: Path,
) -> dict[str, Any]:
    """The harness's decode command (``run.sh``), timed by its hook; returns seconds and outputs."""
    output = scratch / f"onmt_b{beam}.pieces"
    search = ["-random_sampling_topk", "1"] if beam == 1 else []
    arguments = [
        "-model", str(checkpoint),
        "-src", str(source),
        "-output", str(output),
        "-beam_size", str(beam),
        "-batch_size", str(batch),
        "-batch_type", "sents",
        "-max_length_ratio", "1.5",
        "-length_penalty", "wu",
        "-alpha", "1.0",
        *search,
        "-n_best", "1",
        "-seed", "42",
    ]  # fmt: skip
    events = run_onmt(
        "translate",
        arguments,
        peers_work=peers_work,
        harness=harness,
        threads=threads,
        record=scratch / f"onmt_b{beam}.jsonl",
        what=f"decode (beam {beam})",
    )
    seconds = next(e["sec"] for e in events if e.get("ev") == "decode")
    return {"dec_sec": seconds, "outputs": [" ".join(p) for p in read_pieces(output)]}


# -- the parent --------------------------------------------------------------------------------------


def latest_checkpoint(directory: Path) -> Path:
    found = sorted(directory.glob("model_step_*.pt"), key=lambda p: int(p.stem.rsplit("_", 1)[1]))
    if not found:
        raise SystemExit(f"error: no OpenNMT-py checkpoint in {directory} (run make bench-peers first)")
    return found[-1]


def seqattn_spec(
    checkpoint: Path, tokenizer: Path, source: Path, references: Path, beam: int, args: Any
) -> dict[str, Any]:
    """The worker's instructions for one fp32 decode."""
    return {
        "checkpoint": str(checkpoint),
        "tokenizer": str(tokenizer),
        "source": str(source),
        "references": str(references),
        "beam": beam,
        "batch": args.batch,
        "threads": args.threads,
        "precision": "fp32",
    }


TARGETS = {"greedy": 1.5, "beam": 2.0}
"""The issue's decoding targets: sentences/s over OpenNMT-py's on the same checkpoint."""


def floor_table(
    runs: dict[tuple[str, int], list[dict[str, Any]]], beams: list[int]
) -> tuple[Table, dict[str, Any]]:
    """Where seqattn's fp32 decode time goes, against the time the target leaves it."""
    table = Table(title="seqattn fp32 decode under torch.profiler: operator self time against the target")
    columns = [
        *KERNELS,
        "kernels together",
        "other operators",
        "OpenNMT-py (median)",
        "target allows",
        "verdict",
    ]
    for column in ("search", *columns):
        table.add_column(column, justify="left" if column in ("search", "verdict") else "right")
    results: dict[str, Any] = {}
    for beam in beams:
        if ("profile", beam) not in runs:
            continue
        kernels = runs[("profile", beam)][0]["kernels"]
        floor = sum(kernels[name] for name in KERNELS)
        target = TARGETS["greedy" if beam == 1 else "beam"]
        allowed = statistics.median(r["dec_sec"] for r in runs[("onmt", beam)]) / target
        verdict = (
            f"out of reach: the kernels alone take {floor / allowed:.2f}x the time"
            if floor > allowed
            else f"everything else must fit in {allowed - floor:.2f} s"
        )
        results[f"beam{beam}"] = {
            "kernels": kernels,
            "floor_s": floor,
            "allowed_s": allowed,
            "target": target,
            "profiled_decode_s": runs[("profile", beam)][0].get("dec_sec"),
        }
        table.add_row(
            search_name(beam),
            *(f"{kernels[name]:.2f} s" for name in KERNELS),
            f"{floor:.2f} s",
            f"{kernels['other operators']:.2f} s",
            f"{allowed * target:.2f} s",
            f"{allowed:.2f} s ({target:g}x)",
            verdict,
        )
    return table, results


def summarize(runs: list[dict[str, Any]], sentences: int) -> dict[str, Any]:
    seconds = [run["dec_sec"] for run in runs]
    return {
        "dec_sec": seconds,
        "median_sec": statistics.median(seconds),
        "sents_per_s": sentences / statistics.median(seconds),
        "out_pieces": sum(len(line.split()) for line in runs[0]["outputs"]),
    }


class Alternation:
    """Decode with OpenNMT-py and every seqattn variant in alternating rounds (fresh processes)."""

    def __init__(
        self,
        args: Any,
        variants: list[str],
        scratch: Path,
        plain: Path,
        references: Path,
        tokenizer: Path,
        shortlist: Path | None,
    ) -> None:
        self.args, self.variants, self.scratch = args, variants, scratch
        self.plain, self.references, self.tokenizer, self.shortlist = plain, references, tokenizer, shortlist

    def __call__(
        self, checkpoint: Path, onmt_checkpoint: Path, onmt_source: Path, *, profile: bool
    ) -> dict[tuple[str, int], list[dict[str, Any]]]:
        """``runs[(who, beam)]``: one decode per round for ``who`` in ``onmt`` and the variants
        (plus ``("profile", beam)``: one profiled fp32 decode, with ``profile``)."""
        args, runs = self.args, {}
        for beam in args.beams:
            spec = seqattn_spec(checkpoint, self.tokenizer, self.plain, self.references, beam, args)
            for round_ in range(args.repeats):
                order = ["onmt", *self.variants] if round_ % 2 else [*self.variants, "onmt"]
                for who in order:
                    log(f"{checkpoint.stem}, beam {beam}, round {round_ + 1}/{args.repeats}: {who}")
                    if who == "onmt":
                        run = run_opennmt(
                            onmt_checkpoint,
                            onmt_source,
                            beam=beam,
                            batch=args.batch,
                            threads=args.threads,
                            peers_work=args.peers_work,
                            harness=args.harness,
                            scratch=self.scratch,
                        )
                    else:
                        listed = {"shortlist": str(self.shortlist)} if who.endswith("+shortlist") else {}
                        run = run_seqattn({**spec, "precision": who, **listed}, self.scratch)
                    runs.setdefault((who, beam), []).append(run)
            if profile:
                log(f"{checkpoint.stem}, beam {beam}: seqattn fp32 under torch.profiler")
                runs[("profile", beam)] = [run_seqattn({**spec, "profile": True}, self.scratch)]
        return runs


def results_table(
    title: str,
    runs: dict[tuple[str, int], list[dict[str, Any]]],
    beams: list[int],
    variants: list[str],
    *,
    tokenizer: Tokenizer,
    references: list[str],
    sentences: int,
    same_weights: bool,
) -> tuple[Table, dict[str, Any]]:
    """Medians, ratios to OpenNMT-py (and their per-round range), BLEU and output pieces; with
    ``same_weights`` also the share of outputs identical to OpenNMT-py's."""
    from seqattn.metrics import corpus_bleu

    results: dict[str, Any] = {}
    table = Table(title=title)
    columns = ["search", "decoder", "sents/s (median)", "vs OpenNMT-py", "round ratios", "BLEU", "out pieces"]
    if same_weights:
        columns.append("same output as OpenNMT-py")
    for column in columns:
        table.add_column(column, justify="left" if column in ("search", "decoder") else "right")
    for beam in beams:
        onmt = summarize(runs[("onmt", beam)], sentences)
        onmt["bleu"] = corpus_bleu(
            [tokenizer.decode_pieces(o.split()) for o in runs[("onmt", beam)][0]["outputs"]], references
        ).score
        results[f"onmt_beam{beam}"] = onmt
        search = search_name(beam)
        row = [search, "OpenNMT-py 3.5.1", f"{onmt['sents_per_s']:.1f}", "1.00x", "", f"{onmt['bleu']:.2f}"]
        table.add_row(*row, f"{onmt['out_pieces']:,}", *([""] if same_weights else []))
        for variant in variants:
            mine = summarize(runs[(variant, beam)], sentences)
            mine["bleu"] = runs[(variant, beam)][0]["bleu"]
            ratios = [
                o["dec_sec"] / m["dec_sec"]
                for o, m in zip(runs[("onmt", beam)], runs[(variant, beam)], strict=True)
            ]
            outputs = runs[(variant, beam)][0]["outputs"]
            same = sum(a == b for a, b in zip(outputs, runs[("onmt", beam)][0]["outputs"], strict=True))
            mine.update(ratio=onmt["median_sec"] / mine["median_sec"], round_ratios=ratios)
            mine["out_pieces_ratio"] = (mine["out_pieces"] / mine["median_sec"]) / (
                onmt["out_pieces"] / onmt["median_sec"]
            )
            if same_weights:
                mine["identical_to_onmt"] = same / sentences
            if variant.endswith("+shortlist"):  # against the same decoder over the whole vocabulary
                whole = runs[(variant.removesuffix("+shortlist"), beam)][0]["outputs"]
                mine["identical_to_whole_vocabulary"] = (
                    sum(a == b for a, b in zip(outputs, whole, strict=True)) / sentences
                )
            results[f"seqattn_{variant}_beam{beam}"] = mine
            table.add_row(
                search,
                f"seqattn {variant}",
                f"{mine['sents_per_s']:.1f}",
                f"{mine['ratio']:.2f}x",
                f"{min(ratios):.2f}-{max(ratios):.2f}x",
                f"{mine['bleu']:.2f}",
                f"{mine['out_pieces']:,}",
                *([f"{100 * same / sentences:.1f}%"] if same_weights else []),
            )
    return table, results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--models", type=Path, default=None, help="translation.py --save-models directory (required)"
    )
    parser.add_argument("--peers-work", type=Path, default=DEFAULT_PEERS_WORK, help="the peers' WORK_DIR")
    parser.add_argument("--harness", type=Path, default=DEFAULT_HARNESS, help="the peers' harness directory")
    parser.add_argument("--onmt-template", type=Path, default=None, help="OpenNMT-py Transformer checkpoint")
    parser.add_argument("--from", dest="data_dir", type=Path, default=DEFAULT_DATA, help="Multi30k directory")
    parser.add_argument("--repeats", type=int, default=3, help="alternating rounds per search")
    parser.add_argument("--beams", type=int, nargs="+", default=[1, 5])
    parser.add_argument("--batch", type=int, default=64, help="sentences per decoding batch")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cpu-int8", choices=("auto", "on", "off"), default="auto")
    parser.add_argument(
        "--rnn",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also time the RNNs, each toolkit decoding its own checkpoint (no conversion exists)",
    )
    parser.add_argument(
        "--shortlist",
        choices=("on", "off"),
        default="on",
        help="also decode over a lexical shortlist of the training pairs (seqattn shortlist's defaults)",
    )
    parser.add_argument(
        "--floor",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="one more fp32 decode per search under torch.profiler: the kernels' share (default: on)",
    )
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "same_checkpoint.json")
    parser.add_argument("--worker", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--worker-out", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker is not None:
        args.worker_out.write_text(json.dumps(seqattn_worker(json.loads(args.worker.read_text()))))
        return

    if args.models is None:
        parser.error("--models is required")
    from seqattn.quantization import native_int8
    from seqattn.training.checkpoint import load_checkpoint

    start = time.perf_counter()
    set_threads(args.threads)
    checkpoint, tokenizer_path = args.models / "transformer.pt", args.models / "spm.model"
    needed = [checkpoint, tokenizer_path, args.peers_work / "onmt" / "bin" / "python"]
    if args.rnn:
        needed += [args.models / "rnn.pt", args.peers_work / "runs" / "onmt_rnn" / "model"]
    for path in needed:
        if not path.exists():
            raise SystemExit(f"error: {path} is missing (run make bench-peers first)")
    template_path = args.onmt_template or latest_checkpoint(
        args.peers_work / "runs" / "onmt_transformer" / "model"
    )
    tokenizer = Tokenizer.load(tokenizer_path)
    saved = load_checkpoint(checkpoint)
    config = TransformerConfig(**saved["config"])
    template = torch.load(template_path, map_location="cpu", weights_only=False)  # holds argparse.Namespace
    references_path = data_file(args.data_dir, f"{TEST_STEM}.en")
    references = read_lines(references_path)
    int8 = args.cpu_int8 == "on" or (args.cpu_int8 == "auto" and native_int8())
    variants = ["fp32", "int8"] if int8 else ["fp32"]
    if args.shortlist == "on":
        variants += [f"{variant}+shortlist" for variant in variants]
    console = Console() if sys.stdout.isatty() else Console(width=160)
    machine = describe_machine(torch.device("cpu"))
    console.print(
        f"[bold]machine[/]: {machine['cpu']} ({machine['cpu_count']} logical cores), torch {machine['torch']}"
    )

    with tempfile.TemporaryDirectory(prefix="seqattn-same-") as scratch_name:
        scratch = Path(scratch_name)
        converted = scratch / "onmt_transformer.pt"
        torch.save(to_opennmt(saved["model"], config, tokenizer, template), converted)
        source = scratch / "test.de"
        pieces = read_pieces(args.peers_work / "data" / "test.de")
        source.write_text("".join(" ".join([*line, "</s>"]) + "\n" for line in pieces), encoding="utf-8")
        plain = scratch / "test.plain.de"
        plain.write_text("".join(" ".join(line) + "\n" for line in pieces), encoding="utf-8")
        shortlist_path, shortlist_info = None, None
        if args.shortlist == "on":
            log("building the lexical shortlist from the training pairs")
            lexical, shortlist_info = bench_shortlist(tokenizer, args.data_dir)
            shortlist_path = scratch / "shortlist.pt"
            lexical.save(shortlist_path)
        alternate = Alternation(
            args, variants, scratch, plain, references_path, tokenizer_path, shortlist_path
        )
        runs = alternate(checkpoint, converted, source, profile=args.floor)
        rnn_runs = None
        if args.rnn:
            onmt_rnn = latest_checkpoint(args.peers_work / "runs" / "onmt_rnn" / "model")
            rnn_runs = alternate(args.models / "rnn.pt", onmt_rnn, plain, profile=False)

    sentences = len(pieces)
    steps = f" after {saved['steps']} steps" if saved.get("steps") else ""
    table, results = results_table(
        f"One checkpoint (seqattn's Transformer{steps}), decoded by both toolkits",
        runs,
        args.beams,
        variants,
        tokenizer=tokenizer,
        references=references,
        sentences=sentences,
        same_weights=True,
    )
    console.print(table)
    console.print(
        f"{args.repeats} alternating rounds, each decode in a fresh process; ratios > 1: seqattn faster. "
        "Outputs differ where seqattn's per-sentence length cap (1.5 n + 5) ends a sentence that "
        "OpenNMT-py's per-batch cap lets go on, and (beam) where the searches finish hypotheses differently."
    )
    rnn_results: dict[str, Any] = {}
    if rnn_runs is not None:
        rnn_table, rnn_results = results_table(
            "The RNN: each toolkit decodes its own 200-step checkpoint (no conversion exists)",
            rnn_runs,
            args.beams,
            variants,
            tokenizer=tokenizer,
            references=references,
            sentences=sentences,
            same_weights=False,
        )
        console.print(rnn_table)
        console.print(
            "Different models produce outputs of different lengths: compare output pieces per second "
            "(in the JSON) as well as sentences per second."
        )
    for key, mine in {**results, **{f"rnn_{k}": v for k, v in rnn_results.items()}}.items():
        if "identical_to_whole_vocabulary" in mine:
            console.print(
                f"{key}: {100 * mine['identical_to_whole_vocabulary']:.1f}% of outputs identical to the same "
                "decoder over the whole vocabulary"
            )
    floors: dict[str, Any] = {}
    if args.floor:
        floor, floors = floor_table(runs, args.beams)
        console.print(floor)
        console.print(
            "Self CPU time of one more fp32 decode (the profiler adds some time of its own). Matrix "
            "multiplies, attention kernels, log-softmax/top-k and layer norms are torch kernels that "
            "OpenNMT-py runs for the same rows; if they alone exceed the time the target allows, no "
            "change outside those kernels reaches it."
        )
    output = {
        "machine": machine,
        "onmt_template": str(template_path),
        "checkpoint_steps": saved.get("steps"),
        "results": results,
        "rnn_own_checkpoints": rnn_results,
        "kernel_floor": floors,
        "shortlist": shortlist_info,
    }
    write_report(args, output, start=start, console=console)


if __name__ == "__main__":
    main()
