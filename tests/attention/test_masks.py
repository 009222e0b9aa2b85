"""Mask helpers: ``True`` means "may attend" everywhere."""

from __future__ import annotations

import pytest
import torch

from seqattn.attention import causal_mask, combine_masks, key_mask, padding_mask


def test_padding_mask() -> None:
    mask = padding_mask(torch.tensor([3, 0, 1]))
    expected = torch.tensor([[True, True, True], [False, False, False], [True, False, False]])
    assert mask.dtype == torch.bool
    assert torch.equal(mask, expected)


def test_padding_mask_max_len() -> None:
    mask = padding_mask(torch.tensor([2, 1]), max_len=4)
    assert torch.equal(mask, torch.tensor([[True, True, False, False], [True, False, False, False]]))


def test_padding_mask_empty_and_invalid() -> None:
    assert padding_mask(torch.tensor([], dtype=torch.long)).shape == (0, 0)
    with pytest.raises(ValueError, match="1-D"):
        padding_mask(torch.tensor([[1, 2]]))


def test_causal_mask_square_is_lower_triangular() -> None:
    mask = causal_mask(4)
    assert mask.dtype == torch.bool
    assert torch.equal(mask, torch.ones(4, 4).tril().bool())
    for i in range(4):
        for j in range(4):
            assert bool(mask[i, j]) == (j <= i)


def test_causal_mask_default_offset_is_the_last_queries() -> None:
    mask = causal_mask(2, 5)
    assert torch.equal(mask, causal_mask(5)[-2:])
    assert torch.equal(mask, torch.tensor([[True, True, True, True, False], [True] * 5]))
    # More queries than keys: the first queries see nothing.
    assert torch.equal(causal_mask(4, 2), causal_mask(4)[:, 2:])
    assert not causal_mask(4, 2)[:2].any()


@pytest.mark.parametrize("offset", [-2, 0, 1, 3])
def test_causal_mask_explicit_offset(offset: int) -> None:
    mask = causal_mask(3, 4, offset=offset)
    expected = torch.tensor([[j <= i + offset for j in range(4)] for i in range(3)])
    assert torch.equal(mask, expected)


def test_causal_mask_device() -> None:
    assert causal_mask(2, 3, device="cpu").device.type == "cpu"


def test_key_mask_shapes() -> None:
    pad = padding_mask(torch.tensor([2, 3]))
    heads = key_mask(pad)
    single = key_mask(pad, heads=False)
    assert heads.shape == (2, 1, 1, 3)
    assert single.shape == (2, 1, 3)
    assert torch.equal(heads[:, 0, 0], pad) and torch.equal(single[:, 0], pad)
    scores = torch.zeros(2, 4, 5, 3)  # (B, H, Tq, Tk)
    assert torch.equal(heads.expand_as(scores)[1, 3, 4], pad[1])


def test_combine_masks() -> None:
    pad = key_mask(padding_mask(torch.tensor([2, 3])), heads=False)  # (B, 1, Tk)
    causal = causal_mask(3)  # (Tq, Tk)
    combined = combine_masks(pad, None, causal)
    assert combined is not None and combined.shape == (2, 3, 3)
    for b in range(2):
        for i in range(3):
            for j in range(3):
                assert bool(combined[b, i, j]) == (bool(pad[b, 0, j]) and j <= i)


def test_combine_masks_none_handling() -> None:
    assert combine_masks() is None
    assert combine_masks(None, None) is None
    causal = causal_mask(3)
    assert torch.equal(combine_masks(None, causal, None), causal)


@pytest.mark.parametrize("bad", [torch.ones(3, 3), torch.ones(3, 3, dtype=torch.long)])
def test_combine_masks_rejects_non_boolean(bad: torch.Tensor) -> None:
    with pytest.raises(TypeError, match="boolean"):
        combine_masks(causal_mask(3), bad)
    with pytest.raises(TypeError, match="boolean"):
        combine_masks(None, bad)
