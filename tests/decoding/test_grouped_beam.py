"""Beam search over a Transformer whose KV caches skip the copies of beam reorders
(:class:`~seqattn.attention.KVCache` with grouped rows) returns what copying caches return."""

from __future__ import annotations

import random

import pytest
import torch

from seqattn.attention import KVCache
from seqattn.data.batching import pad_batch
from seqattn.decoding import beam_search
from seqattn.models import transformer
from seqattn.models.build import build_seq2seq
from tests.decoding.test_batch_invariance import assert_same
from tests.decoding.tiny_configs import CONFIGS, VOCAB


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    built = build_seq2seq(CONFIGS["transformer"], src_vocab=VOCAB, tgt_vocab=VOCAB)
    with torch.no_grad():
        for parameter in built.parameters():
            parameter.mul_(1.5)  # outputs that vary with the input (see test_batch_invariance)
    return built.double().eval()


@pytest.mark.parametrize(
    "options",
    [
        {"beam_size": 5, "n_best": 3},  # sentences finish at different steps: groups leave
        {"beam_size": 4, "min_len_b": 24, "max_len": 24, "max_len_a": 0.0, "max_len_b": 24},
        {"beam_size": 1},
    ],
    ids=["natural", "fixed-length", "beam-1"],
)
def test_grouped_caches_decode_like_copying_caches(
    model: torch.nn.Module, options: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(1)
    sources = [[rng.randrange(4, VOCAB) for _ in range(1 + i % 17)] for i in range(23)]
    src, lengths = pad_batch(sources)
    grouped = beam_search(model, src, lengths, **options)
    state = model.encode(src, lengths)
    assert all(cache.grouped for cache in state.caches)
    monkeypatch.setattr(transformer, "KVCache", lambda **_: KVCache(grouped=False))
    copying = beam_search(model, src, lengths, **options)
    assert not any(cache.grouped for cache in model.encode(src, lengths).caches)
    for i, (got, want) in enumerate(zip(grouped, copying, strict=True)):
        assert_same(got, want, f"sentence {i}", tolerance=1e-9)


def test_relative_positions_keep_copying() -> None:
    config = CONFIGS["transformer"]
    relative = build_seq2seq(
        type(config)(**{**config.__dict__, "positions": "relative"}), src_vocab=VOCAB, tgt_vocab=VOCAB
    ).eval()
    src, lengths = pad_batch([[5, 6, 7]])
    assert not any(cache.grouped for cache in relative.encode(src, lengths).caches)
