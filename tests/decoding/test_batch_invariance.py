"""Batch invariance of greedy and beam search on the real models, built by
:func:`seqattn.models.build.build_seq2seq` from their configs.

A sentence's output must not depend on which other sentences share its batch, on how many there
are, on their lengths (padding) or on their order: the same tokens exactly, and the same scores
(up to 1e-5), log-probabilities, per-token log-probabilities and attention, for 72 sources of 1
to 30 tokens decoded one by one, in chunks of 7 and of 64 (in input and in shuffled order), and
in the length-sorted batches of :func:`~seqattn.decoding.translate_batches`.

In float32 the matrix products of a batch of 7 and of a batch of 1 round differently (about
1e-6 per token), which is why scores get a tolerance; the same test in float64 must agree to
1e-10, so that any real leak between sentences (padding, masks, beam bookkeeping) would show.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest
import torch
from torch import nn

from seqattn.data.batching import pad_batch
from seqattn.decoding import Hypothesis, beam_search, greedy_search, translate_batches
from seqattn.models.build import build_seq2seq
from seqattn.quantization import quantize_int8
from tests.decoding.tiny_configs import CONFIGS, VOCAB

SOURCES = 72
Search = Callable[..., list[list[Hypothesis]]]
SEARCHES: dict[str, tuple[Search, dict]] = {
    "greedy": (greedy_search, {}),
    "beam": (beam_search, {"beam_size": 4, "n_best": 3, "length_penalty": 0.6}),
}
TOLERANCE = {"float32": 1e-5, "float64": 1e-10, "int8": 1e-3}
"""int8 (float32 model through :func:`~seqattn.quantization.quantize_int8`): a 1e-6 rounding
difference upstream can move an activation across a step of the int8 grid, so scores get more
room, and only each sentence's best hypothesis is compared: a near-tie lower in an n-best list
(scores within 1e-4) can swap. Each row is quantized on its own, so nothing else leaks."""


@pytest.fixture(
    scope="module",
    params=[(name, dtype) for dtype in TOLERANCE for name in CONFIGS],
    ids=lambda param: f"{param[0]}-{param[1]}",
)
def model(request: pytest.FixtureRequest) -> nn.Module:
    """A seeded random model; weights scaled by 1.5 so that outputs vary more with the input
    (at the usual scale a tiny random Transformer gives the same answer to many inputs)."""
    name, kind = request.param
    torch.manual_seed(0)
    built = build_seq2seq(CONFIGS[name], src_vocab=VOCAB, tgt_vocab=VOCAB)
    with torch.no_grad():
        for parameter in built.parameters():
            parameter.mul_(1.5)
    model = quantize_int8(built) if kind == "int8" else built.to(getattr(torch, kind)).eval()
    model.tolerance = TOLERANCE[kind]  # type: ignore[assignment]
    model.best_only = kind == "int8"  # type: ignore[assignment]
    return model


@pytest.fixture(scope="module")
def sources() -> list[list[int]]:
    """72 sources of 1 to 30 ids (no special tokens), every length at least twice."""
    rng = random.Random(0)
    lengths = [1 + i % 30 for i in range(SOURCES)]
    rng.shuffle(lengths)
    return [[rng.randrange(4, VOCAB) for _ in range(n)] for n in lengths]


def decode_in_chunks(
    model: nn.Module, sources: list[list[int]], size: int, search: Search, options: dict
) -> list[list[Hypothesis]]:
    """Decode consecutive chunks of ``size`` sentences, each as one padded batch."""
    results = []
    for start in range(0, len(sources), size):
        src, lengths = pad_batch(sources[start : start + size])  # (b, S), (b,)
        results.extend(search(model, src, lengths, **options))
    return results


def assert_same(
    got: list[Hypothesis], want: list[Hypothesis], where: str, *, tolerance: float, best_only: bool = False
) -> None:
    """Same tokens; scores within ``tolerance``; sums, per-token values and attention within
    ``tolerance`` relative to their size (a log-probability is a sum of up to 50 terms). With
    ``best_only``, only the first hypothesis of each list."""
    if best_only:
        got, want = got[:1], want[:1]
    assert [h.tokens for h in got] == [h.tokens for h in want], where
    for a, b in zip(got, want, strict=True):
        assert abs(a.score - b.score) <= tolerance, (where, a.score, b.score)
        assert abs(a.log_prob - b.log_prob) <= tolerance * max(1.0, abs(b.log_prob)), where
        torch.testing.assert_close(
            a.token_log_probs, b.token_log_probs, atol=tolerance, rtol=tolerance, msg=where
        )
        torch.testing.assert_close(a.attention, b.attention, atol=tolerance, rtol=0, msg=where)


@pytest.mark.parametrize("name", SEARCHES)
def test_outputs_do_not_depend_on_batch_size_padding_or_order(
    model: nn.Module, sources: list[list[int]], name: str
) -> None:
    search, options = SEARCHES[name]
    tolerance = model.tolerance
    alone = decode_in_chunks(model, sources, 1, search, options)
    outputs = {tuple(h[0].tokens) for h in alone if h}
    assert len(outputs) >= SOURCES // 2, "too few distinct outputs for the test to mean much"
    if name == "beam":
        assert all(len(h) == options["n_best"] for h in alone)

    for size in (7, 64):
        for i, hyps in enumerate(decode_in_chunks(model, sources, size, search, options)):
            assert_same(
                hyps,
                alone[i],
                f"batch size {size}, sentence {i}",
                tolerance=tolerance,
                best_only=model.best_only,
            )

    order = list(range(SOURCES))
    random.Random(1).shuffle(order)
    shuffled = [sources[i] for i in order]
    for size in (7, 64):
        results = decode_in_chunks(model, shuffled, size, search, options)
        for position, index in enumerate(order):
            assert_same(
                results[position],
                alone[index],
                f"shuffled, batch size {size}, sentence {index}",
                tolerance=tolerance,
                best_only=model.best_only,
            )

    for size in (7, 64):  # length-sorted batches, results put back in input order
        results = translate_batches(
            model, sources, max_tokens=1 << 20, max_sentences=size, search=search, **options
        )
        for i, hyps in enumerate(results):
            assert_same(
                hyps,
                alone[i],
                f"translate_batches, {size} a batch, sentence {i}",
                tolerance=tolerance,
                best_only=model.best_only,
            )
