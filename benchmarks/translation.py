"""Translation benchmark: seqattn on the Multi30k de->en workload of the peer toolkits.

The peers (JoeyNMT 2.3.0 and OpenNMT-py 3.5.1) were measured by the harness in
``../shared/bench/peers`` (see its README). This script runs seqattn through the same workload
with the same counting rules and prints one table with the peers' figures beside seqattn's.

**Data.** Multi30k de->en from ``../shared/data/multi30k`` (``--from DIR``): the 29,000
training pairs and the 1,000 sentences of ``test_2016_flickr``. One joint unigram SentencePiece
model of 8,000 pieces: by default the peers' own ``spm.model`` (``--peer-spm``), adopted with
:meth:`Tokenizer.adopt` -- its special pieces moved to seqattn's ids 0-3 and a ``<pad>`` added,
8,001 ids, text segmented into exactly the same pieces. The script prints its piece counts
beside the peers' (train 441,049 de + 425,234 en pieces, test 14,992 de pieces) as a check.
Without that file it trains a model with the peers' ``prep_data.py`` settings (unigram,
``character_coverage`` 1.0, on ``train.de`` + ``train.en``; counts within 1%). ``--tokenizer
PATH`` reuses (or, if missing, saves) a seqattn SentencePiece model instead.

**Models** (the peers' configs in ``../shared/bench/peers/configs``):

* RNN: embeddings 256, a biLSTM encoder of 2 layers x 128 per direction, an LSTM decoder of 2
  layers x 256, input feeding, additive (Bahdanau / "mlp") attention, dropout 0.1. Both peers
  query the attention with the decoder's *new* top state and feed the attentional vector
  ``tanh(W[c; h])`` into the next step -- in seqattn's terms ``style="luong"`` with
  ``score="additive"`` (8.59M parameters; joey 8.51M, onmt 8.52M; the difference is mostly
  seqattn's encoder-to-decoder bridge). ``--rnn-style bahdanau`` measures seqattn's Bahdanau
  variant instead (previous state as the query, context fed into the LSTM: 8.85M parameters).
* Transformer: 3+3 layers, d_model 256, 4 heads, FFN 1024, pre-norm, sinusoidal positions,
  dropout 0.1 and attention dropout 0.1 (both peers), decoder input embedding tied to the output
  projection (``tie="decoder"``; the source embedding is not shared, as in both peers): 9.63M
  parameters (joey 9.63M).

**Training** (the real code path): the steps are :class:`seqattn.training.trainer.Trainer`
updates (``Trainer.update``: autocast on CUDA, :meth:`TranslationTask.loss` with its collation
of the batch, backward, loss normalisation by target tokens, clipping, AdamW, the schedule) over
``TranslationTask.plan`` batches: length-bucketed, nominal 4096 padded tokens
(``sentences x max(src, tgt) + 1``), like OpenNMT (JoeyNMT does not bucket). ``Trainer.fit``
adds per-step bookkeeping, validation and checkpoints on top, which the peers' timed steps do
not contain either. Optimiser settings follow the peers: RNN Adam(W) lr 1e-3 constant, betas
(0.9, 0.999), clip 5, no label smoothing (the peers' RNN configs have none); Transformer betas
(0.9, 0.98), inverse-sqrt schedule with peak 1e-3 at step 100, label smoothing 0.1, no clipping.
Weight decay is 0, so AdamW is Adam. ``--warmup`` (20) untimed steps, then ``--steps`` (100)
timed ones; the window runs from the start of the first timed step to the end of the last, so
it contains everything between (data, forward, backward, optimiser, a new epoch's plan), as the
peers' step-entry hooks do. Counting rule identical to the peers': tokens = SentencePiece pieces
of source + target without BOS/EOS; reported: steps/s, src+tgt tokens/s, source and target
tokens per step, sentences per step, median step time. ``torch.set_num_threads(2)`` (``--threads``)
and one inter-op thread, like the peers' hook.

**Peak RSS.** Each model trains and decodes in its own subprocess (this script with a hidden
``--worker`` flag), which reads ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` when training
ends (the training-phase peak, the peers' ``time -v`` figure of the training process) and again
after decoding. Nothing accumulates across models.

**Decoding.** After ``--decode-after`` (200) training steps, the 1,000 test sentences are
translated by ``seqattn.decoding.translate_batches`` (sorted by length, batches of at most 64
sentences via ``max_sentences=64`` and an unlimited token budget), greedy and beam 5 with the
GNMT length penalty alpha 1.0, at most ``floor(1.5 x source length + 5)`` output tokens per
sentence (``max_len_a=1.5, max_len_b=5``; the peers cap at 1.5x the longest source of the
batch). sents/s = 1000 / decode time, the time of the ``translate_batches`` call (batching,
padding, search) plus detokenization, without model load. BLEU = ``seqattn.metrics.corpus_bleu``
(sacreBLEU, 13a, cased) of the detokenized output against the raw references -- a sanity check:
after 200 steps the models are badly undertrained, as the peers' are.

**Model-FLOPs utilisation.** The fp32 matrix-multiply peak is measured in the same run on the
same threads (``torch.mm`` of 2048 x 2048 on CPU, 8192 x 8192 on CUDA; best of several calls),
before and after the models' runs; MFU uses the higher of the two (:func:`higher_peaks`).
Model FLOPs of a training step are counted analytically on the real (unpadded) positions: a
source of ``n`` pieces is ``s = n + 1`` positions (EOS), a target ``t = n + 1`` (BOS in, EOS
out). Forward FLOPs are 2 per multiply-add; forward + backward = 3 x forward, i.e. 6 x matmul
parameters x tokens for every linear layer. With ``d`` model size, ``f`` FFN size, ``V``
vocabulary:

* Transformer, per encoder layer ``2(4d^2 + 2df)`` per source position plus ``4d s^2`` per
  sentence (scores and context); per decoder layer ``2(6d^2 + 2df)`` per target position, the
  cross-attention keys/values ``4d^2`` per source position, causal self-attention ``2d t(t+1)``
  and cross-attention ``4d s t`` per sentence; output projection ``2dV`` per target position.
* RNN (``E`` embedding, ``H`` encoder size per direction, ``D`` decoder size, ``A = D`` additive
  hidden size): LSTM gate matmuls ``2 x 4H(in + H)`` per direction and source position (``in`` =
  E, then 2H), per decoder layer ``2 x 4D(in + D)`` per target position (``in`` = E + D with
  input feeding, + 2H for the Bahdanau style; then D); keys ``2 x 2H A`` per source position;
  per target position the query projection ``2DA``, the additive score ``2As`` (the ``v``
  product), the context ``2 x 2H s``, the attentional layer ``2(2H + D)D`` and the output
  projection ``2DV``; the bridge ``2 x 2L x 2H D`` per sentence.

Elementwise work (activations, norms, softmax, the loss) is not counted. The Transformer count
agrees with ``torch.utils.flop_counter`` to 0.1% (that counter does not see the LSTM kernels). MFU = model FLOPs of
the timed steps / timed seconds / peak. The seqattn RNN runs its decoder over padded positions
too, so its hardware FLOPs are somewhat higher than its model FLOPs. The peers' MFU is an
estimate (marked ``~``): their tokens/s x the model FLOPs per token of their architecture over
the whole training corpus, divided by this run's peak.

**Peers.** Their rows come from ``../shared/bench/peers/results/main/results.json``
(``--peers PATH``), an earlier session on the same kind of machine; timings there drift by
+-30% between sessions, so the seqattn/peer ratios printed below the table are cross-session
ratios. For same-session ratios ``make bench-peers`` runs the peers' harness and then this
script on its fresh ``results.json``.

**CUDA** (``--device auto|cpu|cuda``): each model runs twice, fp32 and bf16 autocast (the
Trainer's ``bf16`` setting; decoding then runs under the same autocast), timed with
``torch.cuda.synchronize`` around the window and every step; the bf16 row's MFU uses the bf16
matmul peak. GPU memory peaks are recorded too.

**bf16 on CPU** (``--cpu-bf16 auto|on|off``): on a CPU with AVX512-BF16 or AMX (``auto``) each
model also runs a second time under CPU bf16 autocast (``train.bf16_cpu``), with its MFU against
the bf16 matmul peak of the same run. The fp32 checkpoint is decoded a second time under bf16
autocast too (the row "fp32 train, bf16 decode"): the same weights, so its BLEU beside the fp32
decode shows what bf16 costs in quality. The peers have no CPU bf16 mode (both use
``torch.cuda.amp``), so their rows stay fp32.

**int8 decoding on CPU** (``--cpu-int8 auto|on|off``): on a CPU with int8 dot-product
instructions (VNNI, ``auto``) the fp32 checkpoint is also decoded with its linear layers and
decoder LSTM quantized to int8 (:func:`seqattn.quantization.quantize_int8`, ``seqattn translate
--int8``): the row "fp32 train, int8 decode", whose BLEU beside the fp32 row shows what int8
costs in quality. The peers' harness decodes in fp32 (JoeyNMT has no quantization; OpenNMT-py's
quantization options go through bitsandbytes on GPUs, its CPU int8 path is the separate
CTranslate2).

**Lexical shortlist** (``--shortlist on|off``, on by default): the fp32 checkpoint is also
decoded over a lexical shortlist (:mod:`seqattn.decoding.shortlist`, ``seqattn translate
--shortlist``) built from the training pairs with the defaults of ``seqattn shortlist``: the rows
"fp32 train, shortlist decode" (and "int8 + shortlist" with the int8 rows). Like int8 it trades
exactness for speed, so their BLEU beside the fp32 rows is part of the result; the peers decode
over the whole vocabulary (Marian and CTranslate2 offer shortlists; JoeyNMT and OpenNMT-py do
not).

Usage::

    python benchmarks/translation.py            # full: about 12 minutes on 2 CPU cores with the bf16 rows
    python benchmarks/translation.py --quick    # 3 warm-up + 10 timed steps, 128 sentences decoded
    python benchmarks/translation.py --quick --steps 2 --warmup 1 --decode-after 2 --decode-sentences 64

Results go to ``benchmarks/results/translation.json`` (``--json``).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, fields, is_dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from _timing import (
    _busy_cpu_seconds,
    describe_machine,
    measure,
    paired_ratio,
    resolve_device,
    synchronize,
    write_report,
)
from rich.console import Console
from rich.table import Table

from seqattn.config import RNNConfig, TrainConfig, TransformerConfig
from seqattn.data.text import iter_lines
from seqattn.data.tokenizer import EOS_ID, Tokenizer, TokenizerConfig
from seqattn.decoding.shortlist import LexicalShortlist, Shortlisted
from seqattn.precision import autocast as seqattn_autocast
from seqattn.precision import native_bf16
from seqattn.quantization import native_int8, quantize_int8

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "multi30k"
DEFAULT_PEERS = ROOT.parent / "shared" / "bench" / "peers" / "results" / "main" / "results.json"
DEFAULT_PEER_SPM = ROOT.parent / "shared" / "bench" / "peers" / "data" / "spm.model"
TEST_STEM = "test_2016_flickr"
MODELS = ("rnn", "transformer")
MAX_TOKENS = 4096
MAX_LEN = 128  # training pairs with more pieces are skipped (joey's max_length; none in Multi30k)
DECODE_MAX_TOKENS = 10**9  # batches are capped by sentences only
SEED = 1
MIB = 2**20

# The peers' piece counts (prep_data.py with their spm.model), from their README.
PEER_PIECES = {"train.de": 441_049, "train.en": 425_234, "test.de": 14_992}
PEER_RUNS = {
    "rnn": (("joey", "joey_rnn"), ("onmt", "onmt_rnn")),
    "transformer": (("joey", "joey_transformer"), ("onmt", "onmt_transformer")),
}
LABELS = {"rnn": "RNN", "transformer": "Transformer"}


# -- models and training settings ----------------------------------------------------------------


def model_config(name: str, rnn_style: str = "luong") -> RNNConfig | TransformerConfig:
    """The peers' architectures in seqattn's config terms (see the module docstring)."""
    if name == "rnn":
        return RNNConfig(
            style=rnn_style,  # type: ignore[arg-type]
            score="additive",
            embed_dim=256,
            hidden_size=128,
            decoder_size=256,
            num_layers=2,
            decoder_layers=2,
            input_feeding=True,
            dropout=0.1,
        )
    return TransformerConfig(
        d_model=256,
        num_heads=4,
        ffn_dim=1024,
        encoder_layers=3,
        decoder_layers=3,
        dropout=0.1,
        attn_dropout=0.1,
        pre_norm=True,
        positions="sinusoidal",
        tie="decoder",
    )


def train_config(name: str, *, bf16: bool) -> TrainConfig:
    """The peers' optimiser settings (joey and onmt agree on each model)."""
    if name == "rnn":
        return TrainConfig(
            seed=SEED,
            max_tokens=MAX_TOKENS,
            lr=1e-3,
            schedule="constant",
            warmup_steps=0,
            betas=(0.9, 0.999),
            weight_decay=0.0,
            clip_norm=5.0,
            label_smoothing=0.0,
            bf16=bf16,
            bf16_cpu=bf16,
        )
    return TrainConfig(
        seed=SEED,
        max_tokens=MAX_TOKENS,
        lr=1e-3,
        schedule="inverse_sqrt",
        warmup_steps=100,
        betas=(0.9, 0.98),
        weight_decay=0.0,
        clip_norm=None,
        label_smoothing=0.1,
        bf16=bf16,
        bf16_cpu=bf16,
    )


# -- model FLOPs ---------------------------------------------------------------------------------


def transformer_forward_flops(
    src: Sequence[int], tgt: Sequence[int], config: TransformerConfig, vocab: int
) -> float:
    """Forward FLOPs of a batch: ``src``/``tgt`` are real positions per sentence (pieces + 1)."""
    d, f = config.d_model, config.ffn_dim
    n_src, n_tgt = sum(src), sum(tgt)
    src_squares = sum(s * s for s in src)
    cross = sum(s * t for s, t in zip(src, tgt, strict=True))
    causal = sum(t * (t + 1) for t in tgt)
    encoder = config.encoder_layers * (2 * (4 * d * d + 2 * d * f) * n_src + 4 * d * src_squares)
    decoder = config.decoder_layers * (
        2 * (6 * d * d + 2 * d * f) * n_tgt + 4 * d * d * n_src + 2 * d * causal + 4 * d * cross
    )
    return float(encoder + decoder + 2 * d * vocab * n_tgt)


def rnn_forward_flops(src: Sequence[int], tgt: Sequence[int], config: RNNConfig, vocab: int) -> float:
    """Forward FLOPs of a batch of the attentive LSTM (LSTM gates, attention, projections)."""
    e, h, d = config.embed_dim, config.hidden_size, config.decoder_size
    a = d  # the additive/concat score's hidden size defaults to the query size
    enc_layers = config.num_layers
    dec_layers = config.decoder_layers or config.num_layers
    n_src, n_tgt = sum(src), sum(tgt)
    cross = sum(s * t for s, t in zip(src, tgt, strict=True))
    encoder = sum(2 * 2 * 4 * h * ((e if i == 0 else 2 * h) + h) * n_src for i in range(enc_layers))
    bridge = 2 * 2 * enc_layers * 2 * h * d * len(src)  # h and c of every encoder layer
    step_input = e + (2 * h if config.style == "bahdanau" else 0) + (d if config.input_feeding else 0)
    decoder = sum(2 * 4 * d * ((step_input if i == 0 else d) + d) * n_tgt for i in range(dec_layers))
    if config.score in ("additive", "concat"):
        keys = 2 * 2 * h * a * n_src
        scores = 2 * d * a * n_tgt + 2 * a * cross
    elif config.score == "general":
        keys = 2 * 2 * h * d * n_src
        scores = 2 * d * cross
    elif config.score in ("dot", "scaled_dot"):
        keys, scores = 0, 2 * d * cross
    else:
        raise ValueError(f"no FLOP count for the {config.score} score")
    context = 2 * 2 * h * cross
    attentional = 2 * (2 * h + d) * d * n_tgt
    output = 2 * d * vocab * n_tgt
    return float(encoder + bridge + decoder + keys + scores + context + attentional + output)


def train_flops(
    src_pieces: Sequence[int], tgt_pieces: Sequence[int], config: RNNConfig | TransformerConfig, vocab: int
) -> float:
    """Model FLOPs of one training step (forward + backward = 3 x forward) on real positions."""
    src = [n + 1 for n in src_pieces]  # + EOS
    tgt = [n + 1 for n in tgt_pieces]  # BOS + pieces in, pieces + EOS out
    if isinstance(config, RNNConfig):
        return 3.0 * rnn_forward_flops(src, tgt, config, vocab)
    return 3.0 * transformer_forward_flops(src, tgt, config, vocab)


# -- helpers -------------------------------------------------------------------------------------


def read_lines(path: Path) -> list[str]:
    return list(iter_lines(path))


def data_file(data_dir: Path, stem: str) -> Path:
    """``stem`` or ``stem.gz`` in ``data_dir``."""
    for candidate in (data_dir / stem, data_dir / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    raise SystemExit(f"error: {data_dir}/{stem}[.gz] not found (pass --from DIR with the Multi30k files)")


def rss_mib() -> float:
    """Peak resident set size of this process so far (``ru_maxrss`` is KiB on Linux)."""
    scale = 1 if sys.platform == "darwin" else 1024  # macOS reports bytes
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / MIB


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager[object]:
    return seqattn_autocast(device, bf16=precision == "bf16")


def set_threads(threads: int) -> None:
    torch.set_num_threads(threads)
    with contextlib.suppress(RuntimeError):  # only possible before any inter-op work
        torch.set_num_interop_threads(1)


def log(message: str) -> None:
    print(f"[translation {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- the worker: one model, one precision, in its own process -------------------------------------


def batches_forever(task: Any) -> Iterator[list[int]]:
    """The task's batches epoch after epoch (each epoch planned when it starts, as in ``fit``)."""
    epoch = 0
    while True:
        yield from task.plan(epoch)
        epoch += 1


def decode(
    model: torch.nn.Module,
    sources: list[list[int]],
    references: list[str],
    tokenizer: Tokenizer,
    *,
    beam: int,
    batch: int,
    device: torch.device,
    precision: str,
    keep_outputs: bool = False,
) -> dict[str, Any]:
    """Translate ``sources`` (piece ids without EOS) and time it; ``keep_outputs`` adds every
    best hypothesis's ids (``"outputs"``)."""
    from seqattn.decoding import beam_search, greedy_search, translate_batches
    from seqattn.metrics import corpus_bleu

    search = greedy_search if beam == 1 else beam_search
    options: dict[str, Any] = {"max_len_a": 1.5, "max_len_b": 5, "length_penalty": 1.0}
    if beam > 1:
        options["beam_size"] = beam
    inputs = [[*s, EOS_ID] for s in sources]  # seqattn's source convention: pieces + EOS
    synchronize(device)
    start = time.perf_counter()
    with autocast(device, precision):
        results = translate_batches(
            model,
            inputs,
            max_tokens=DECODE_MAX_TOKENS,
            max_sentences=batch,
            search=search,
            device=device,
            **options,
        )
    hypotheses = [tokenizer.decode(nbest[0].tokens) if nbest else "" for nbest in results]
    synchronize(device)
    seconds = time.perf_counter() - start
    bleu = corpus_bleu(hypotheses, references)
    pieces = [len(nbest[0].tokens) if nbest else 0 for nbest in results]
    outputs = {"outputs": [nbest[0].tokens if nbest else [] for nbest in results]} if keep_outputs else {}
    return {
        **outputs,
        "beam": beam,
        "sentences": len(sources),
        "dec_sec": round(seconds, 3),
        "sents_per_s": len(sources) / seconds,
        "bleu": bleu.score,
        "bleu_sig": bleu.signature,
        "len_ratio": bleu.details["ratio"],
        "hyp_pieces_avg": statistics.fmean(pieces) if pieces else 0.0,
        "out_tok_per_s": sum(pieces) / seconds,
        "examples": [
            {"source": tokenizer.decode(s), "hypothesis": h, "reference": r}
            for s, h, r in list(zip(sources, hypotheses, references, strict=True))[:3]
        ],
    }


SCALING_LENGTHS = (20, 200)
SCALING_BATCH = 32


def tensor_bytes(obj: Any) -> int:
    """Bytes of the tensors reachable from ``obj`` through dataclass fields, lists, tuples and
    dicts (a decoding state: the encoded source the decoder reads at every step)."""
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if is_dataclass(obj) and not isinstance(obj, type):
        return sum(tensor_bytes(getattr(obj, f.name)) for f in fields(obj))
    if isinstance(obj, (list, tuple)):
        return sum(tensor_bytes(item) for item in obj)
    if isinstance(obj, dict):
        return sum(tensor_bytes(item) for item in obj.values())
    return 0


def memory_read_rate(device: torch.device, *, mib: int = 256, repeats: int = 9) -> float:
    """GB/s of a plain streaming read (``sum`` of a ``mib`` MiB fp32 tensor, far beyond the
    last-level cache), median of ``repeats``: what the decoder's reads of its source could reach."""
    data = torch.ones(mib * 2**18, device=device)
    timing = measure({"read": data.sum}, device=device, warmup=1, repeats=repeats, min_repeats=1)["read"]
    return data.numel() * data.element_size() / (timing.median_ms / 1e3) / 1e9


def decode_scaling(
    model: torch.nn.Module,
    stream: list[int],
    *,
    beam: int,
    device: torch.device,
    precision: str,
    repeats: int = 5,
    read_gbs: float | None = None,
) -> dict[str, Any]:
    """Decode time per output token for short and long sources (does the caching work?).

    ``SCALING_BATCH`` sources of exactly ``n`` pieces (+ EOS) for each ``n`` in
    ``SCALING_LENGTHS``, cut from ``stream`` (real test pieces, concatenated), decoded into
    exactly ``n`` output tokens (``EOS`` forbidden before, forced at ``n``), so both lengths run
    the same number of sentences and the per-token times compare like with like. Without caching,
    a step at position ``t`` would re-run the prefix and the per-token time would grow with ``n``;
    with caching only the attention over the ``t`` cached positions and the ``n`` source keys
    grows. All decodes (and the encodes below) run round-robin, ``repeats`` rounds after one
    warm-up round; per-token times are the best of the rounds. ``ratio`` is the median over the
    rounds of the long decode's per-token time over the short one's, measured moments apart
    (``ratio_best``: best over best), so a slow stretch of a shared machine does not land on
    one length only.

    A third decode, the short sources into as many output tokens as the long ones, splits the
    growth of the decoding steps in two: the *target side* (the decoder's own caches, longer
    histories) and the *source side* (the rest: the steps reading a longer encoded source). The
    encoder's time, timed on its own (``encode_ms_per_token_*``), is taken out of both first: per
    output token it is about the same at both lengths, but the third decode encodes short
    sources for long outputs. The source side's bytes per output token are the decoding state's
    growth from the short to the long sources (:func:`tensor_bytes` of ``model.encode``'s state,
    per sentence: every step of a sentence reads its source once, whatever the beam); with
    ``read_gbs`` (a plain read's rate, :func:`memory_read_rate`) the result also has the rate
    those reads ran at and the ratio the decode would have if they ran at the plain read's rate.
    """
    short, long = SCALING_LENGTHS
    result: dict[str, Any] = {"beam": beam, "batch": SCALING_BATCH}
    decodes: dict[str, _DecodeCase] = {}
    for source, output in ((short, short), (short, long), (long, long)):
        need = SCALING_BATCH * source
        pieces = (stream * (need // max(len(stream), 1) + 1))[:need]
        src = torch.tensor(
            [[*pieces[i * source : (i + 1) * source], EOS_ID] for i in range(SCALING_BATCH)], device=device
        )
        lengths = torch.full((SCALING_BATCH,), source + 1, dtype=torch.long, device=device)
        name = f"{source}" if source == output else f"{source}_into_{output}"
        decodes[name] = _DecodeCase(
            model, src, lengths, output=output, beam=beam, device=device, precision=precision
        )
    # All six round-robin: a slow stretch of the machine hits every decode alike.
    cases = {
        f"{kind} {name}": getattr(case, kind)
        for name, case in decodes.items()
        for kind in ("decode", "encode")
    }
    timings = measure(cases, device=device, warmup=1, repeats=repeats, min_repeats=1)
    state_bytes = {}
    for name, case in decodes.items():
        tokens = case.check()
        result[f"ms_per_token_{name}"] = timings[f"decode {name}"].min_ms / tokens
        result[f"encode_ms_per_token_{name}"] = timings[f"encode {name}"].min_ms / tokens
        state_bytes[case.source] = case.state_bytes()
    names = (f"{short}", f"{short}_into_{long}", f"{long}")
    t_short, t_long = result[f"ms_per_token_{short}"], result[f"ms_per_token_{long}"]
    s_short, s_mixed, s_long = (
        result[f"ms_per_token_{name}"] - result[f"encode_ms_per_token_{name}"] for name in names
    )  # the decoding steps alone
    result["ratio_best"] = t_long / t_short
    # Per round: the long and the short decode moments apart; the median of those ratios.
    result["ratio"] = paired_ratio(timings[f"decode {long}"], timings[f"decode {short}"]) * short / long
    result["target_side_ms"] = s_mixed - s_short
    result["source_side_ms"] = s_long - s_mixed
    source_bytes = (state_bytes[long] - state_bytes[short]) / SCALING_BATCH
    result["source_bytes_per_token"] = source_bytes
    if read_gbs is not None:
        result["plain_read_gbs"] = read_gbs
        if result["source_side_ms"] > 0:
            result["source_read_gbs"] = source_bytes / (result["source_side_ms"] / 1000) / 1e9
        at_read_rate = source_bytes / (read_gbs * 1e9) * 1000  # ms per token
        result["ratio_source_at_read_rate"] = (t_long - result["source_side_ms"] + at_read_rate) / t_short
    return result


class _DecodeCase:
    """Decoding ``src`` into exactly ``output`` tokens a sentence, and encoding it alone, as two
    callables for :func:`measure`; ``check`` verifies the output length and returns the tokens
    produced, ``state_bytes`` the size of the encoded sources' decoding state."""

    def __init__(
        self,
        model: torch.nn.Module,
        src: torch.Tensor,
        lengths: torch.Tensor,
        *,
        output: int,
        beam: int,
        device: torch.device,
        precision: str,
    ) -> None:
        from seqattn.decoding import beam_search, greedy_search

        self.model, self.src, self.lengths = model, src, lengths
        self.source = src.size(1) - 1  # pieces a sentence, without the EOS
        self.device, self.precision, self.output = device, precision, output
        self.options: dict[str, Any] = {
            "max_len_a": 0.0,
            "max_len_b": output,
            "min_len_b": output,
            "max_len": output,
        }
        if beam > 1:
            self.options["beam_size"] = beam
        self.search = greedy_search if beam == 1 else beam_search
        self.found: list[Any] = []
        self.state: list[Any] = []

    def decode(self) -> None:
        with autocast(self.device, self.precision):
            self.found[:] = self.search(self.model, self.src, self.lengths, **self.options)

    def encode(self) -> None:
        with torch.no_grad(), autocast(self.device, self.precision):
            self.state[:] = [self.model.encode(self.src, self.lengths)]

    def check(self) -> int:
        produced = sum(len(h[0].tokens) for h in self.found)
        if produced != self.src.size(0) * self.output:
            raise RuntimeError(
                f"decode_scaling: expected {self.src.size(0) * self.output} output tokens, got {produced}"
            )
        return produced

    def state_bytes(self) -> int:
        return tensor_bytes(self.state[0])


def bench_shortlist(tokenizer: Tokenizer, data_dir: Path) -> tuple[LexicalShortlist, dict[str, Any]]:
    """The lexical shortlist of the training pairs (``seqattn shortlist``'s defaults), sources
    closed by ``</s>`` as the decoders read them; and how long it took."""
    start = time.perf_counter()
    lexical = LexicalShortlist.build(
        tokenizer.encode_batch(read_lines(data_file(data_dir, "train.de")), eos=True),
        tokenizer.encode_batch(read_lines(data_file(data_dir, "train.en"))),
        src_vocab=tokenizer.vocab_size,
        tgt_vocab=tokenizer.vocab_size,
    )
    seconds = time.perf_counter() - start
    return lexical, {
        "top": lexical.top,
        "frequent": int(lexical.frequent.numel()),
        "build_sec": round(seconds, 2),
    }


def search_name(beam: int) -> str:
    """``greedy`` for one beam, else ``beam K`` (table labels)."""
    return "greedy" if beam == 1 else f"beam {beam}"


def save_model(
    model: torch.nn.Module, config: Any, tokenizer: str, directory: Path, name: str, steps: int
) -> Path:
    """Write ``NAME.pt`` (config, weights, steps) and the tokenizer ``spm.model`` to ``directory``
    (``--save-models``: ``benchmarks/same_checkpoint.py`` decodes the Transformer in both
    toolkits)."""
    from seqattn.training.checkpoint import save_checkpoint

    directory.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(tokenizer, directory / "spm.model")
    path = directory / f"{name}.pt"
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    save_checkpoint(path, {"config": asdict(config), "model": state, "steps": steps})
    return path


@dataclass
class TrainingRun:
    """What one training measurement needs: the encoded corpus, the model, its task and trainer."""

    train_src: list[list[int]]
    train_tgt: list[list[int]]
    config: RNNConfig | TransformerConfig
    settings: TrainConfig
    model: torch.nn.Module
    task: Any
    trainer: Any


def training_run(
    name: str,
    tokenizer: Tokenizer,
    data_dir: Path,
    scratch: Path,
    *,
    precision: str,
    device: torch.device,
    rnn_style: str = "luong",
) -> TrainingRun:
    """The benchmark model ``name`` (seeded), the Multi30k training pairs and the Trainer that
    runs its updates, as every training measurement here uses them."""
    from seqattn.data.corpora import CorpusSpec
    from seqattn.data.encoded import encode_corpus
    from seqattn.models.build import build_seq2seq
    from seqattn.training.trainer import Trainer
    from seqattn.training.translation import TranslationTask

    os.environ["SEQATTN_CACHE"] = str(scratch / "cache")  # no encoded-corpus cache left behind
    train = encode_corpus(
        CorpusSpec(src=str(data_file(data_dir, "train.de")), tgt=str(data_file(data_dir, "train.en"))),
        task="translation",
        tokenizer=tokenizer,
        use_cache=False,
    )
    config = model_config(name, rnn_style)
    settings = train_config(name, bf16=precision == "bf16")
    torch.manual_seed(SEED)
    model = build_seq2seq(config, src_vocab=tokenizer.vocab_size, tgt_vocab=tokenizer.vocab_size)
    train_src: list[list[int]] = train.first
    train_tgt: list[list[int]] = train.second  # type: ignore[assignment]
    task = TranslationTask(
        train_src=train_src,
        train_tgt=train_tgt,
        valid_src=[],
        valid_tgt=[],
        valid_references=[],
        target_tokenizer=tokenizer,
        max_tokens=MAX_TOKENS,
        max_len=MAX_LEN,
        seed=SEED,
        label_smoothing=settings.label_smoothing,
        device=device,
    )
    trainer = Trainer(
        model,
        task,
        config=settings,
        output_dir=scratch / "run",
        device=device,
        console=Console(stderr=True, quiet=True),
    )
    return TrainingRun(train_src, train_tgt, config, settings, model, task, trainer)


def run_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Train one model for the timed window (and up to ``decode_after``), then decode."""
    from seqattn.data.corpora import CorpusSpec, load_corpus

    wall_start = time.perf_counter()
    set_threads(spec["threads"])
    device = torch.device(spec["device"])
    precision = spec["precision"]
    name = spec["model"]
    data_dir = Path(spec["data_dir"])
    tokenizer = Tokenizer.load(spec["tokenizer"])
    with tempfile.TemporaryDirectory(prefix="seqattn-bench-") as scratch:
        run = training_run(
            name,
            tokenizer,
            data_dir,
            Path(scratch),
            precision=precision,
            device=device,
            rnn_style=spec["rnn_style"],
        )
        config, settings, model, task, trainer = run.config, run.settings, run.model, run.task, run.trainer
        train_src, train_tgt = run.train_src, run.train_tgt
        parameters = sum(p.numel() for p in model.parameters())
        warmup, timed = spec["warmup"], spec["steps"]
        total = max(warmup + timed, spec["decode_after"])
        steps: list[dict[str, float]] = []
        window_start = window_end = 0.0
        batches = batches_forever(task)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        synchronize(device)
        train_start = time.perf_counter()
        for step in range(1, total + 1):
            begin = time.perf_counter()
            if step == warmup + 1:
                window_start = begin
            batch = next(batches)
            trainer.update([batch])  # the Trainer's own update: loss, backward, clip, AdamW, schedule
            synchronize(device)
            end = time.perf_counter()
            if step == warmup + timed:
                window_end = end
            src_pieces = [len(train_src[i]) for i in batch]
            tgt_pieces = [len(train_tgt[i]) for i in batch]
            steps.append(
                {
                    "s": end - begin,
                    "sents": len(batch),
                    "src": sum(src_pieces),
                    "tgt": sum(tgt_pieces),
                    "padded": len(batch) * max(task.lengths[i] for i in batch),
                    "flops": train_flops(src_pieces, tgt_pieces, config, tokenizer.vocab_size),
                }
            )
            if step % 10 == 0 or step == total:
                log(f"{name} {precision}: step {step}/{total}, {end - begin:.2f} s")
        train_seconds = time.perf_counter() - train_start
        train_rss = rss_mib()
        window = steps[warmup : warmup + timed]
        seconds = window_end - window_start
        src_tokens = sum(s["src"] for s in window)
        tgt_tokens = sum(s["tgt"] for s in window)
        step_times = [s["s"] for s in window]
        result: dict[str, Any] = {
            "model": name,
            "precision": precision,
            "device": str(device),
            "threads": torch.get_num_threads(),
            "parameters": parameters,
            "config": asdict(config),
            "train_config": asdict(settings),
            "train_pairs": len(train_src),
            "train_skipped_long": task.filtered,
            "steps_run": total,
            "warmup_steps": warmup,
            "timed_steps": timed,
            "timed_sec": seconds,
            "steps_per_s": timed / seconds,
            "tok_per_s": (src_tokens + tgt_tokens) / seconds,
            "src_tok_per_s": src_tokens / seconds,
            "tgt_tok_per_s": tgt_tokens / seconds,
            "src_tok_per_step": src_tokens / timed,
            "tgt_tok_per_step": tgt_tokens / timed,
            "sents_per_step": sum(s["sents"] for s in window) / timed,
            "padded_tok_per_step": sum(s["padded"] for s in window) / timed,
            "median_step_s": statistics.median(step_times),
            "max_step_s": max(step_times),
            "model_flops_per_step": sum(s["flops"] for s in window) / timed,
            "achieved_gflops": sum(s["flops"] for s in window) / seconds / 1e9,
            "train_wall_s": train_seconds,
            "train_peak_rss_mib": train_rss,
            "step_seconds": [round(s["s"], 4) for s in steps],
        }
        if device.type == "cuda":
            result["train_peak_gpu_mib"] = torch.cuda.max_memory_allocated(device) / MIB
            torch.cuda.reset_peak_memory_stats(device)
        if spec.get("save_dir") and precision == "fp32":
            result["saved"] = str(
                save_model(model, config, spec["tokenizer"], Path(spec["save_dir"]), name, total)
            )
        if spec["decode_sentences"] > 0:
            test = load_corpus(
                CorpusSpec(
                    src=str(data_file(data_dir, f"{TEST_STEM}.de")),
                    tgt=str(data_file(data_dir, f"{TEST_STEM}.en")),
                ),
                task="translation",
            )
            count = min(spec["decode_sentences"], len(test))
            sources = tokenizer.encode_batch(list(test["source"])[:count])
            references = list(test["target"])[:count]
            model.eval()
            # With bf16 rows, the fp32 checkpoint is decoded in bf16 too: speed at equal weights.
            decodings: list[tuple[dict[str, Any], str, LexicalShortlist | None]] = [(result, precision, None)]
            if precision == "fp32" and spec.get("bf16_decode"):
                result["bf16_decode"] = {}
                decodings.append((result["bf16_decode"], "bf16", None))
            if precision == "fp32" and spec.get("int8_decode"):
                result["int8_decode"] = {}
                decodings.append((result["int8_decode"], "int8", None))
            if precision == "fp32" and spec.get("shortlist"):
                log(f"{name} {precision}: building the lexical shortlist from the training pairs")
                lexical, result["shortlist"] = bench_shortlist(tokenizer, data_dir)
                result["shortlist_decode"] = {}
                decodings.append((result["shortlist_decode"], "fp32", lexical))
                if spec.get("int8_decode"):
                    result["int8_shortlist_decode"] = {}
                    decodings.append((result["int8_shortlist_decode"], "int8", lexical))
            for into, decode_precision, lexical in decodings:
                decoder = model
                if decode_precision == "int8":
                    decoder = quantize_int8(copy.deepcopy(model))
                if lexical is not None:
                    decoder = Shortlisted(decoder, lexical)
                for beam in (1, spec["beam"]):
                    how = decode_precision + (" over the shortlist" if lexical is not None else "")
                    log(f"{name} {precision}: decoding {count} sentences in {how}, beam {beam}")
                    into[f"beam{beam}"] = decode(
                        decoder,
                        sources,
                        references,
                        tokenizer,
                        beam=beam,
                        batch=spec["decode_batch"],
                        device=device,
                        precision=decode_precision,
                    )
            if device.type == "cuda":
                result["decode_peak_gpu_mib"] = torch.cuda.max_memory_allocated(device) / MIB
            stream = [piece for source in sources for piece in source]
            read_gbs = memory_read_rate(device)  # after train_peak_rss_mib was read: its 256 MiB
            # can raise only the end-of-worker peak_rss_mib (in the JSON, in no table)
            for beam in (1, spec["beam"]):
                log(f"{name} {precision}: decode time per token, {SCALING_LENGTHS} pieces, beam {beam}")
                result[f"scaling_beam{beam}"] = decode_scaling(
                    model, stream, beam=beam, device=device, precision=precision, read_gbs=read_gbs
                )
    result["peak_rss_mib"] = rss_mib()
    result["worker_wall_s"] = time.perf_counter() - wall_start
    return result


# -- the parent: tokenizer, matmul peak, workers, table --------------------------------------------


def prepare_tokenizer(args: argparse.Namespace, scratch: Path) -> tuple[Path, dict[str, Any]]:
    """Train (or load) the joint SentencePiece model; count pieces as the peers' prep did."""
    data_dir: Path = args.data_dir
    train_de, train_en = data_file(data_dir, "train.de"), data_file(data_dir, "train.en")
    start = time.perf_counter()
    if args.tokenizer is not None and args.tokenizer.is_file():
        tokenizer = Tokenizer.load(args.tokenizer)
        origin = f"loaded from {args.tokenizer}"
    elif args.peer_spm is not None and args.peer_spm.is_file():
        # The peers' own model: specials moved to ids 0-3, the very same pieces.
        tokenizer = Tokenizer.adopt(args.peer_spm)
        origin = f"the peers' model {args.peer_spm}, adopted"
    else:
        log("training the joint 8k unigram SentencePiece model on train.de + train.en")
        tokenizer = Tokenizer.train_files(
            [train_de, train_en],
            config=TokenizerConfig(vocab_size=8000, model_type="unigram", character_coverage=1.0),
        )
        origin = "trained"
        if args.tokenizer is not None:
            args.tokenizer.parent.mkdir(parents=True, exist_ok=True)
            tokenizer.save(args.tokenizer)
            origin += f", saved to {args.tokenizer}"
    seconds = time.perf_counter() - start
    path = scratch / "spm.model"
    tokenizer.save(path)
    lengths = {
        "train.de": [len(x) for x in tokenizer.encode_batch(read_lines(train_de))],
        "train.en": [len(x) for x in tokenizer.encode_batch(read_lines(train_en))],
        "test.de": [
            len(x) for x in tokenizer.encode_batch(read_lines(data_file(data_dir, f"{TEST_STEM}.de")))
        ],
    }
    pieces = {key: sum(values) for key, values in lengths.items()}
    info = {
        "origin": origin,
        "seconds": round(seconds, 1),
        "vocab_size": tokenizer.vocab_size,
        "pieces": pieces,
        "peer_pieces": PEER_PIECES,
        "pieces_vs_peers_pct": {k: 100.0 * (pieces[k] / PEER_PIECES[k] - 1.0) for k in pieces},
        "_lengths": lengths,
    }
    return path, info


def matmul_peak(device: torch.device, dtype: torch.dtype, size: int, repeats: int) -> dict[str, Any]:
    """Best-of-``repeats`` GFLOP/s of ``torch.mm`` of two ``size x size`` matrices."""
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=generator).to(device=device, dtype=dtype)
    b = torch.randn(size, size, generator=generator).to(device=device, dtype=dtype)
    timing = measure(
        {"mm": lambda: torch.mm(a, b)},
        device=device,
        warmup=2,
        repeats=repeats,
        min_sample_s=0.05 if device.type == "cuda" else 0.0,
    )["mm"]
    flops = 2.0 * size**3
    return {
        "device": str(device),
        "dtype": str(dtype).removeprefix("torch."),
        "size": size,
        "threads": torch.get_num_threads(),
        "best_ms": timing.min_ms,
        "median_ms": timing.median_ms,
        "gflops": flops / (timing.min_ms / 1e3) / 1e9,
        "median_gflops": flops / (timing.median_ms / 1e3) / 1e9,
    }


def matmul_peaks(device: torch.device, *, cpu_bf16: bool, repeats: int) -> dict[str, dict[str, Any]]:
    """The matrix-multiply peaks MFU is measured against: CPU fp32 (and bf16 where the CPU has
    it), and on CUDA fp32 and bf16."""
    peaks = {"cpu_fp32": matmul_peak(torch.device("cpu"), torch.float32, 2048, repeats)}
    if cpu_bf16:
        peaks["cpu_bf16"] = matmul_peak(torch.device("cpu"), torch.bfloat16, 2048, repeats)
    if device.type == "cuda":
        peaks["cuda_fp32"] = matmul_peak(device, torch.float32, 8192, repeats)
        peaks["cuda_bf16"] = matmul_peak(device, torch.bfloat16, 8192, repeats)
    return peaks


def higher_peaks(
    before: dict[str, dict[str, Any]], after: dict[str, dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    """Per kind, the higher of two peak measurements, with both rates kept (``before_gflops``,
    ``after_gflops``). A peak measured in a slow stretch of a shared machine would overstate MFU
    (133 against 185-193 GFLOP/s in one run of 2026-12-07, which then read 80% MFU); the higher of
    two measurements, one before and one after the runs, can only understate it."""
    higher = {}
    for kind, first in before.items():
        second = after[kind]
        best = first if first["gflops"] >= second["gflops"] else second
        higher[kind] = {**best, "before_gflops": first["gflops"], "after_gflops": second["gflops"]}
    return higher


def peer_flops_per_token(lengths: dict[str, list[int]], name: str) -> float:
    """Model FLOPs per src+tgt piece of the peers' architecture over the whole training corpus."""
    src, tgt = lengths["train.de"], lengths["train.en"]
    flops = train_flops(src, tgt, model_config(name, "luong"), 8001)  # the peers' vocab: 7997 + 4
    return flops / (sum(src) + sum(tgt))


def run_subprocess(
    spec: dict[str, Any], scratch: Path, *, script: Path | None = None, tag: str | None = None
) -> dict[str, Any]:
    """Run one worker (``script --worker SPEC --worker-out OUT``, by default this script) in a
    fresh interpreter; returns its result plus the other CPU load meanwhile."""
    tag = tag or f"{spec['model']}-{spec['precision']}"
    spec_path, out_path = scratch / f"{tag}.spec.json", scratch / f"{tag}.out.json"
    spec_path.write_text(json.dumps(spec))
    command = [
        sys.executable,
        str(script or Path(__file__).resolve()),
        "--worker",
        str(spec_path),
        "--worker-out",
        str(out_path),
    ]
    busy0, children0, wall0 = _busy_cpu_seconds(), _children_cpu_seconds(), time.perf_counter()
    completed = subprocess.run(command, check=False)
    busy1, children1, wall1 = _busy_cpu_seconds(), _children_cpu_seconds(), time.perf_counter()
    if completed.returncode != 0 or not out_path.is_file():
        raise SystemExit(f"error: the {tag} worker failed (exit status {completed.returncode})")
    result = json.loads(out_path.read_text())
    if busy0 is not None and busy1 is not None and wall1 > wall0:
        other = (busy1 - busy0) - (children1 - children0)
        result["other_cores"] = max(0.0, other) / (wall1 - wall0)
    return result


def _children_cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def load_peers(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    modified = datetime.fromtimestamp(path.stat().st_mtime, timezone.utc).strftime("%Y-%m-%d")
    return {"path": str(path), "modified": modified, "runs": data}


def _fmt(value: Any, digits: int = 0, approx: bool = False) -> str:
    if value is None:
        return "-"
    text = f"{value:,.{digits}f}"
    return f"~{text}" if approx else text


def _row_metrics(row: dict[str, Any], beam: int) -> dict[str, float | None]:
    beam1, beamk = row.get("beam1") or {}, row.get(f"beam{beam}") or {}
    return {
        "tok_per_s": row.get("tok_per_s"),
        "train_peak_rss_mib": row.get("train_peak_rss_mib"),
        "greedy_sents_per_s": beam1.get("sents_per_s"),
        "beam_sents_per_s": beamk.get("sents_per_s"),
        "greedy_out_tok_per_s": beam1.get("out_tok_per_s"),
        "beam_out_tok_per_s": beamk.get("out_tok_per_s"),
        "greedy_bleu": beam1.get("bleu"),
        "beam_bleu": beamk.get("bleu"),
        "mfu": row.get("mfu"),
    }


RATIO_METRICS = (
    ("tok_per_s", "src+tgt tok/s"),
    ("train_peak_rss_mib", "train peak RSS"),
    ("greedy_sents_per_s", "greedy sents/s"),
    ("beam_sents_per_s", "beam sents/s"),
    ("greedy_out_tok_per_s", "greedy out tok/s"),
    ("beam_out_tok_per_s", "beam out tok/s"),
    ("greedy_bleu", "greedy BLEU"),
    ("beam_bleu", "beam BLEU"),
    ("mfu", "MFU"),
)


def build_tables(
    rows: list[dict[str, Any]], peers: dict[str, Any] | None, beam: int, *, same_run: bool = False
) -> tuple[Table, Table | None, list[dict[str, Any]]]:
    main = Table(title="Multi30k de->en: training throughput, peak RSS, decoding, MFU", title_justify="left")
    for column in (
        "run",
        "steps/s",
        "src+tgt tok/s",
        "src/tgt tok per step",
        "sents/step",
        "median step s",
        "train peak RSS MiB",
        "greedy sents/s",
        f"beam{beam} sents/s",
        "greedy BLEU",
        f"beam{beam} BLEU",
        "MFU",
    ):
        main.add_column(column, justify="left" if column == "run" else "right", no_wrap=column == "run")

    def add(label: str, row: dict[str, Any], *, peer: bool, style: str | None = None) -> None:
        beam1, beamk = row.get("beam1") or {}, row.get(f"beam{beam}") or {}
        mfu = row.get("mfu")
        main.add_row(
            label,
            _fmt(row.get("steps_per_s"), 3),
            _fmt(row.get("tok_per_s")),
            f"{_fmt(row.get('src_tok_per_step'))}/{_fmt(row.get('tgt_tok_per_step'))}",
            _fmt(row.get("sents_per_step")),
            _fmt(row.get("median_step_s"), 2),
            _fmt(row.get("train_peak_rss_mib")),
            _fmt(beam1.get("sents_per_s"), 1),
            _fmt(beamk.get("sents_per_s"), 1),
            _fmt(beam1.get("bleu"), 2),
            _fmt(beamk.get("bleu"), 2),
            "-" if mfu is None else f"{'~' if peer else ''}{100 * mfu:.1f}%",
            style=style,
        )

    for name in MODELS:
        if peers is not None:
            for peer, key in PEER_RUNS[name]:
                if key in peers["runs"]:
                    when = "this run" if same_run else "earlier run"
                    add(f"{peer} {LABELS[name]} ({when})", peers["runs"][key], peer=True, style="dim")
        for row in rows:
            if row["model"] == name:
                add(f"seqattn {LABELS[name]} {row['precision']} ({row['device']})", row, peer=False)

    ratios: list[dict[str, Any]] = []
    if peers is None:
        return main, None, ratios
    ratio_table = Table(
        title="seqattn / peer ("
        + (
            "same machine, same run"
            if same_run
            else "cross-session: the peers' figures are from an earlier run"
        )
        + ")",
        title_justify="left",
    )
    ratio_table.add_column("seqattn vs")
    for _, label in RATIO_METRICS:
        ratio_table.add_column(label, justify="right")
    for row in rows:
        if row["device"] != "cpu":
            continue  # the peers ran on CPU
        mine = _row_metrics(row, beam)
        for peer, key in PEER_RUNS[row["model"]]:
            if key not in peers["runs"]:
                continue
            theirs = _row_metrics(peers["runs"][key], beam)
            values = {}
            for metric, _ in RATIO_METRICS:
                a, b = mine[metric], theirs[metric]
                values[metric] = a / b if a is not None and b not in (None, 0) else None
            if row.get("mfu_peak", "cpu_fp32") != "cpu_fp32":
                values["mfu"] = None  # against another peak than the peers' (fp32): no ratio
            ratios.append({"model": row["model"], "precision": row["precision"], "peer": peer, **values})
            ratio_table.add_row(
                f"{peer} {LABELS[row['model']]} (seqattn {row['precision']})",
                *(_fmt(values[m], 2) + ("x" if values[m] is not None else "") for m, _ in RATIO_METRICS),
            )
    return main, ratio_table, ratios


def with_decoding_variants(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``rows`` plus, after each fp32 row decoded in bf16 or int8 or over a shortlist too, a
    decoding-only row for each."""
    out = []
    for row in rows:
        out.append(row)
        for variant in ("bf16", "int8", "shortlist", "int8_shortlist"):
            if f"{variant}_decode" in row:
                out.append(
                    {
                        "model": row["model"],
                        "precision": f"fp32 train, {variant.replace('_', ' + ')} decode",
                        "device": row["device"],
                        **row[f"{variant}_decode"],
                    }
                )
    return out


def scaling_table(rows: list[dict[str, Any]], beam: int) -> Table | None:
    """Decode time per output token, short vs long sources, and where the growth goes (see
    :func:`decode_scaling`)."""
    short, long = SCALING_LENGTHS
    table = Table(
        title=f"decode time per output token: {short}- vs {long}-piece sources, {SCALING_BATCH} sentences a batch, "
        f"output length = source length (target: ratio <= 1.3; the median over round-robin rounds of the two "
        "decodes' per-token times side by side, best/best in brackets); the decoding steps' growth (encoder taken "
        f"out) split into the target side ({short}-piece sources into {long} tokens) and the source side, "
        "whose reads are compared with a plain read of the same run",
        title_justify="left",
    )
    columns = (
        "run",
        "search",
        f"ms/token @{short}",
        f"ms/token @{long}",
        "ratio",
        "target side ms",
        "source side ms",
        "source MB/token",
        "source GB/s (plain read)",
        "ratio, source at read rate",
    )
    for column in columns:
        table.add_column(column, justify="left" if column in ("run", "search") else "right")
    added = False
    for row in rows:
        for b in (1, beam):
            item = row.get(f"scaling_beam{b}")
            if item is None:
                continue
            added = True
            rate = item.get("source_read_gbs")
            table.add_row(
                f"seqattn {LABELS[row['model']]} {row['precision']} ({row['device']})",
                search_name(b),
                _fmt(item[f"ms_per_token_{short}"], 3),
                _fmt(item[f"ms_per_token_{long}"], 3),
                _fmt(item["ratio"], 2)
                + "x"
                + (f" ({item['ratio_best']:.2f}x)" if "ratio_best" in item else ""),
                _fmt(item.get("target_side_ms"), 3),
                _fmt(item.get("source_side_ms"), 3),
                _fmt(item["source_bytes_per_token"] / 1e6, 2) if "source_bytes_per_token" in item else "-",
                "-" if rate is None else f"{rate:.1f} ({item['plain_read_gbs']:.1f})",
                _fmt(item.get("ratio_source_at_read_rate"), 2) + "x"
                if "ratio_source_at_read_rate" in item
                else "-",
            )
    return table if added else None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="3 warm-up + 10 timed steps, then decode 128 sentences"
    )
    parser.add_argument("--steps", type=int, default=None, help="timed training steps (100; quick 10)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed warm-up steps (20; quick 3)")
    parser.add_argument(
        "--decode-after",
        type=int,
        default=None,
        help="training steps before decoding (200; quick: warm-up + timed)",
    )
    parser.add_argument(
        "--decode-sentences",
        type=int,
        default=None,
        help="test sentences to decode (1000; quick 128; 0: none)",
    )
    parser.add_argument("--decode-batch", type=int, default=64, help="sentences per decoding batch")
    parser.add_argument("--beam", type=int, default=5, help="beam size of the beam-search row")
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument(
        "--rnn-style", choices=("luong", "bahdanau"), default="luong", help="see the docstring"
    )
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument(
        "--cpu-bf16",
        choices=("auto", "on", "off"),
        default="auto",
        help="on CPU, also run bf16 autocast (auto: when the CPU has AVX512-BF16 or AMX)",
    )
    parser.add_argument(
        "--cpu-int8",
        choices=("auto", "on", "off"),
        default="auto",
        help="on CPU, also decode the fp32 checkpoint in int8 (auto: when the CPU has VNNI)",
    )
    parser.add_argument(
        "--shortlist",
        choices=("on", "off"),
        default="on",
        help="also decode the fp32 checkpoint over a lexical shortlist of the training pairs",
    )
    parser.add_argument("--from", dest="data_dir", type=Path, default=DEFAULT_DATA, help="Multi30k directory")
    parser.add_argument(
        "--tokenizer",
        type=Path,
        default=None,
        help="seqattn SentencePiece model to reuse (trained and saved if missing)",
    )
    parser.add_argument(
        "--peer-spm",
        type=Path,
        default=DEFAULT_PEER_SPM,
        help="the peers' SentencePiece model, used (adopted) when present and --tokenizer is not given",
    )
    parser.add_argument("--peers", type=Path, default=DEFAULT_PEERS, help="the peers' results.json")
    parser.add_argument(
        "--peers-same-run",
        action="store_true",
        help="--peers was written just before this run on this machine (make bench-peers): label it so",
    )
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "translation.json")
    parser.add_argument(
        "--save-models",
        type=Path,
        default=None,
        help="write each fp32 model after its training steps to DIR/NAME.pt (with DIR/spm.model)",
    )
    parser.add_argument("--worker", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--worker-out", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.warmup is None:
        args.warmup = 3 if args.quick else 20
    if args.steps is None:
        args.steps = 10 if args.quick else 100
    if args.decode_sentences is None:
        args.decode_sentences = 128 if args.quick else 1000
    if args.decode_after is None:
        args.decode_after = args.warmup + args.steps if args.quick else 200
    if (
        args.steps < 1
        or args.warmup < 0
        or args.decode_sentences < 0
        or args.decode_batch < 1
        or args.beam < 2
    ):
        parser.error(
            "need --steps >= 1, --warmup >= 0, --decode-sentences >= 0, --decode-batch >= 1, --beam >= 2"
        )
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.worker is not None:
        result = run_worker(json.loads(args.worker.read_text()))
        args.worker_out.write_text(json.dumps(result))
        return

    start = time.perf_counter()
    set_threads(args.threads)
    device = resolve_device(args.device)
    machine = describe_machine(device)
    cpu_bf16 = device.type == "cpu" and (
        args.cpu_bf16 == "on" or (args.cpu_bf16 == "auto" and native_bf16(device))
    )
    precisions = ["fp32", "bf16"] if device.type == "cuda" or cpu_bf16 else ["fp32"]
    cpu_int8 = device.type == "cpu" and (args.cpu_int8 == "on" or (args.cpu_int8 == "auto" and native_int8()))
    console = Console() if sys.stdout.isatty() else Console(width=200)
    console.print(
        f"[bold]machine[/]: {machine['cpu']} ({machine['cpu_count']} logical cores), {machine['platform']}, "
        f"python {machine['python']}, torch {machine['torch']} ({machine['cpu_capability']}), "
        f"{machine['torch_threads']} threads, device {device}"
        + (f" ({machine['gpu']})" if "gpu" in machine else "")
        + f", compiled CPU kernels {machine['cpu_kernels']}"
    )
    with tempfile.TemporaryDirectory(prefix="seqattn-bench-") as scratch_name:
        scratch = Path(scratch_name)
        tokenizer_path, tokenizer_info = prepare_tokenizer(args, scratch)
        lengths = tokenizer_info.pop("_lengths")
        counts = ", ".join(
            f"{k} {v:,} ({tokenizer_info['pieces_vs_peers_pct'][k]:+.2f}% vs the peers' {PEER_PIECES[k]:,})"
            for k, v in tokenizer_info["pieces"].items()
        )
        console.print(f"[bold]pieces[/]: {counts}")

        log("measuring the matmul peak")
        repeats = 3 if args.quick else 7
        peaks = matmul_peaks(device, cpu_bf16=cpu_bf16, repeats=repeats)

        rows = []
        for name in args.models:
            for precision in precisions:
                spec = {
                    "model": name,
                    "precision": precision,
                    "device": str(device),
                    "threads": args.threads,
                    "warmup": args.warmup,
                    "steps": args.steps,
                    "decode_after": args.decode_after,
                    "decode_sentences": args.decode_sentences,
                    "decode_batch": args.decode_batch,
                    "beam": args.beam,
                    "rnn_style": args.rnn_style,
                    "data_dir": str(args.data_dir),
                    "tokenizer": str(tokenizer_path),
                    "bf16_decode": "bf16" in precisions,
                    "int8_decode": cpu_int8,
                    "shortlist": args.shortlist == "on",
                    "save_dir": str(args.save_models) if args.save_models else None,
                }
                log(f"{name} {precision}: training in a fresh process")
                rows.append(run_subprocess(spec, scratch))
        log("measuring the matmul peak again")
        peaks = higher_peaks(peaks, matmul_peaks(device, cpu_bf16=cpu_bf16, repeats=repeats))
        console.print(
            "[bold]matmul peak[/] (the higher of before and after the runs): "
            + ", ".join(
                f"{k} {v['gflops']:,.1f} GFLOP/s ({v['size']}x{v['size']}; "
                f"{v['before_gflops']:,.1f} before, {v['after_gflops']:,.1f} after)"
                for k, v in peaks.items()
            )
        )
        for row in rows:
            peak_key = f"{device.type}_{row['precision']}"
            row["mfu"] = row["achieved_gflops"] / peaks[peak_key]["gflops"]
            row["mfu_peak"] = peak_key

    peers = load_peers(args.peers)
    if peers is not None:
        for name in MODELS:
            per_token = peer_flops_per_token(lengths, name)
            for _, key in PEER_RUNS[name]:
                run = peers["runs"].get(key)
                if run and run.get("tok_per_s"):
                    run["mfu"] = run["tok_per_s"] * per_token / 1e9 / peaks["cpu_fp32"]["gflops"]
                    run["mfu_note"] = (
                        "estimate: tok/s x model FLOPs per token (this script) / this run's CPU peak"
                    )
    main_table, ratio_table, ratios = build_tables(
        with_decoding_variants(rows), peers, args.beam, same_run=args.peers_same_run
    )
    console.print(main_table)
    scaling = scaling_table(rows, args.beam)
    if scaling is not None:
        console.print(scaling)
    notes = [
        f"seqattn: steps {args.warmup + 1}-{args.warmup + args.steps} timed; tokens = SentencePiece pieces of "
        "source + target without BOS/EOS; batches of nominal 4096 padded tokens, length-bucketed.",
        f"decoding: {args.decode_sentences} test sentences after {max(args.decode_after, args.warmup + args.steps)} "
        f"steps, batches of {args.decode_batch} sentences, max length 1.5 x source + 5, GNMT alpha 1.0.",
        "MFU: model FLOPs (forward + backward, real positions) / time / matmul peak of this run; '~' = estimate "
        "for the peers (their tok/s x the FLOPs per token of their architecture).",
    ]
    if peers is not None and args.peers_same_run:
        notes.append(f"peers: {peers['path']} (written {peers['modified']}), measured just before seqattn.")
    elif peers is not None:
        notes.append(
            f"peers: {peers['path']} (written {peers['modified']}): an earlier session, +-30% between sessions; "
            "same-session figures: `make bench-peers` reruns the peers' harness first."
        )
    else:
        notes.append(f"peers: {args.peers} not found; no peer rows.")
    for row in rows:
        if row.get("other_cores") is not None and row["other_cores"] > 0.25:
            notes.append(
                f"[yellow]{row['model']} {row['precision']}: other processes kept {row['other_cores']:.1f} cores "
                "busy meanwhile: its timings are pessimistic.[/]"
            )
    for note in notes:
        console.print(note)
    if ratio_table is not None and ratios:
        console.print(ratio_table)
        console.print(
            "ratios > 1: seqattn higher (better for tok/s, sents/s, BLEU, MFU; worse for RSS). "
            "Different batch contents: joey does not bucket, so its steps carry fewer real tokens."
        )

    output = {
        "machine": machine,
        "tokenizer": tokenizer_info,
        "matmul_peak": peaks,
        "seqattn": rows,
        "peers": peers,
        "ratios": ratios,
    }
    write_report(args, output, start=start, console=console)


if __name__ == "__main__":
    main()
