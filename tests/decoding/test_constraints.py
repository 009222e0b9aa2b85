"""Length bounds, the GNMT penalty and the per-step masks on log-probabilities."""

from __future__ import annotations

import math

import pytest
import torch

from seqattn.data.tokenizer import BOS_ID, EOS_ID, PAD_ID
from seqattn.decoding import gnmt_penalty, length_bounds
from seqattn.decoding.constraints import constrain_log_probs


def test_length_bounds_are_relative_to_each_source() -> None:
    lengths = torch.tensor([0, 3, 20])
    options = {"max_len_a": 1.15, "max_len_b": 2, "min_len_a": 0.5, "min_len_b": 1}
    min_lens, max_lens = length_bounds(lengths, **options, max_len=None)
    assert max_lens.tolist() == [2, 5, 25]  # floor(1.15 * 20 + 2) = 25, not 24
    assert min_lens.tolist() == [1, 2, 11]
    min_lens, max_lens = length_bounds(lengths, **options, max_len=4)
    assert max_lens.tolist() == [2, 4, 4]
    assert min_lens.tolist() == [1, 2, 4]  # a minimum above the maximum is lowered to it


def test_gnmt_penalty() -> None:
    lengths = torch.tensor([1, 7])
    assert gnmt_penalty(lengths, 0.0).tolist() == [1.0, 1.0]
    assert gnmt_penalty(lengths, 1.0).tolist() == [1.0, 2.0]
    # pow's last bit differs between CPUs' vectorised kernels: compare to a few ulps.
    assert gnmt_penalty(lengths, 0.5).tolist() == pytest.approx([1.0, math.sqrt(2.0)], rel=1e-15, abs=0)


def test_masks_follow_each_rows_bounds() -> None:
    log_probs = torch.log_softmax(torch.randn(3, 8, generator=torch.Generator().manual_seed(0)), dim=-1)
    original = log_probs.clone()
    # Row 0: free. Row 1: too short for EOS. Row 2: at its maximum, only EOS.
    constrain_log_probs(log_probs, step=2, min_lens=torch.tensor([0, 3, 0]), max_lens=torch.tensor([5, 5, 2]))
    assert torch.isneginf(log_probs[:, [PAD_ID, BOS_ID]]).all()
    free = [t for t in range(8) if t not in (PAD_ID, BOS_ID)]
    torch.testing.assert_close(log_probs[0, free], original[0, free])  # not renormalised
    assert torch.isneginf(log_probs[1, EOS_ID])
    assert log_probs[2, EOS_ID] == original[2, EOS_ID]
    assert torch.isneginf(log_probs[2, [t for t in range(8) if t != EOS_ID]]).all()
