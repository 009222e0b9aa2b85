"""The additive score computed a cache-sized block at a time (inference only) equals the
one-tensor computation, and is used exactly where it should be."""

from __future__ import annotations

import random

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from seqattn.attention import scores
from seqattn.data.batching import pad_batch
from seqattn.decoding import beam_search
from seqattn.models.build import build_seq2seq
from tests.attention.reference import make_score, naive_scores
from tests.decoding.test_batch_invariance import assert_same
from tests.decoding.tiny_configs import CONFIGS, VOCAB


@pytest.fixture
def always_blocked(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, ...]]:
    """Block every additive score without autograd, in blocks of 3 rows of the test shapes at
    most (so several blocks and a partial last one); records the shapes that took the path."""
    calls: list[tuple[int, ...]] = []
    blocked = scores._additive_blocked

    def spy(queries: torch.Tensor, keys: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        calls.append(tuple(queries.shape))
        return blocked(queries, keys, v)

    monkeypatch.setattr(scores, "ADDITIVE_BLOCKED_FROM", 0)
    monkeypatch.setattr(scores, "ADDITIVE_BLOCK_BYTES", 3 * 4 * 5 * 7 * 8)  # 3 rows of (4, 5, 7) float64
    monkeypatch.setattr(scores, "_additive_blocked", spy)
    return calls


@pytest.mark.parametrize("name", ["additive", "concat"])
@pytest.mark.parametrize(
    ("query_shape", "key_shape"),
    [
        ((10, 4, 6), (10, 5, 6)),  # (B, Tq, D) against (B, Tk, D): 4 blocks, the last of 1 row
        ((2, 3, 4, 6), (2, 3, 5, 6)),  # heads
        ((2, 3, 4, 6), (2, 1, 5, 6)),  # keys broadcast over heads
        ((1, 4, 6), (7, 5, 6)),  # one query row for every batch row
        ((4, 6), (5, 6)),  # no leading dimension
    ],
)
def test_blocked_scores_equal_the_reference(
    always_blocked: list[tuple[int, ...]], name: str, query_shape: tuple[int, ...], key_shape: tuple[int, ...]
) -> None:
    torch.manual_seed(0)
    score = make_score(name, 6, hidden_dim=7).double()
    query = torch.randn(query_shape, dtype=torch.float64)
    keys = torch.randn(key_shape, dtype=torch.float64)
    with torch.no_grad():
        got = score(query, score.prepare_keys(keys))
    assert always_blocked, "the blocked path did not run"
    lead = torch.broadcast_shapes(query_shape[:-2], key_shape[:-2])
    want = naive_scores(score, query.expand(*lead, *query_shape[-2:]), keys.expand(*lead, *key_shape[-2:]))
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_a_row_larger_than_a_block_is_one_block(
    always_blocked: list[tuple[int, ...]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(scores, "ADDITIVE_BLOCK_BYTES", 1)
    score = make_score("additive", 6).double()
    query, keys = torch.randn(3, 2, 6, dtype=torch.float64), torch.randn(3, 9, 6, dtype=torch.float64)
    with torch.inference_mode():
        got = score(query, score.prepare_keys(keys))
    assert always_blocked
    torch.testing.assert_close(got, naive_scores(score, query, keys), rtol=1e-12, atol=1e-12)


def test_training_and_autocast_keep_the_one_tensor_path(
    always_blocked: list[tuple[int, ...]],
) -> None:
    score = make_score("additive", 6)
    query, keys = torch.randn(3, 2, 6), torch.randn(3, 9, 6)
    score(query, score.prepare_keys(keys)).sum().backward()  # parameters need gradients
    assert score.v.grad is not None
    with torch.autocast("cpu", dtype=torch.bfloat16), torch.no_grad():
        score(query, score.prepare_keys(keys))
    with torch.no_grad():
        assert not scores._blocked(query.double(), keys, score.v)  # float64 queries, float32 keys
    assert always_blocked == []
    with torch.no_grad():
        score(query, score.prepare_keys(keys))
    assert always_blocked == [(3, 2, 6)]


def test_only_tensors_past_the_threshold_are_blocked() -> None:
    """The defaults: the ``(..., Tq, Tk, A)`` tensor's bytes against ADDITIVE_BLOCKED_FROM."""
    v = torch.zeros(256)
    rows = scores.ADDITIVE_BLOCKED_FROM // (5 * 200 * 256 * 4)  # whole (5, 200, 256) float32 rows
    below, above = torch.zeros(rows, 5, 256), torch.zeros(rows + 1, 5, 256)
    keys = torch.zeros(1, 200, 256)
    with torch.no_grad():
        assert not scores._blocked(below, keys, v)
        assert scores._blocked(above, keys, v)
        # Other devices keep the one-tensor path (measured on CPU only).
        assert not scores._blocked(above.to("meta"), keys.to("meta"), v.to("meta"))
    assert rows * 5 * 200 * 256 * 4 <= scores.ADDITIVE_BLOCKED_FROM
    assert scores.ADDITIVE_BLOCK_BYTES < scores.ADDITIVE_BLOCKED_FROM


def test_beam_search_decodes_alike_blocked_or_not(
    always_blocked: list[tuple[int, ...]], monkeypatch: pytest.MonkeyPatch
) -> None:
    torch.manual_seed(0)
    model = build_seq2seq(CONFIGS["rnn-bahdanau"], src_vocab=VOCAB, tgt_vocab=VOCAB)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.mul_(1.5)  # outputs that vary with the input
    model = model.double().eval()
    rng = random.Random(2)
    sources = [[rng.randrange(4, VOCAB) for _ in range(1 + i % 13)] for i in range(11)]
    src, lengths = pad_batch(sources)
    options = {"beam_size": 4, "n_best": 2}
    blocked = beam_search(model, src, lengths, **options)
    assert always_blocked, "the blocked path did not run"
    monkeypatch.setattr(scores, "ADDITIVE_BLOCKED_FROM", 1 << 62)
    whole = beam_search(model, src, lengths, **options)
    for i, (got, want) in enumerate(zip(blocked, whole, strict=True)):
        assert_same(got, want, f"sentence {i}", tolerance=1e-9)


@given(st.lists(st.integers(0, 3), max_size=4), st.data())
def test_broadcast_of_shapes_matches_torch(shape: list[int], data: st.DataObject) -> None:
    """Two shapes cut from one (a suffix, some sizes replaced by 1) broadcast as in torch."""
    suffix = shape[len(shape) - data.draw(st.integers(0, len(shape))) :]
    first = tuple(size if data.draw(st.booleans()) else 1 for size in shape)
    second = tuple(size if data.draw(st.booleans()) else 1 for size in suffix)
    for a, b in ((first, second), (second, first)):
        assert scores._broadcast(torch.Size(a), torch.Size(b)) == tuple(torch.broadcast_shapes(a, b))
