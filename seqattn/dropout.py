"""Dropout with a cheaper mask on CPU.

``nn.Dropout`` draws its CPU mask with ``bernoulli_``, which profiled at 14% of a Transformer
training step on the benchmark workload (more than everything but the matrix multiplies);
``rand_like(x) >= p`` is about 1.6x faster but still spends one 32-bit draw of the CPU
generator per element (11% of a step on an AVX-512 Xeon). :func:`keep_mask` gets two mask
elements out of each draw: ``random_`` fills ``ceil(n / 2)`` int32 values, one pass clears the
top bit of each 16-bit half, and the ``n`` halves, read as int16, are compared with
``round(p * 2**15)``. Each element is then dropped with probability ``p' = round(p * 2**15) /
2**15`` (within ``2**-16`` of ``p``) and kept values are scaled by ``1 / (1 - p')``, so the
expected output is exactly the input, as with ``nn.Dropout``. The mask costs 2.2-2.7x less than
``rand_like`` (3,700 x 1,024 elements, 2 threads: 20-24 ms -> 9 ms). The boolean mask is what
backward keeps. On other devices the fused ``F.dropout`` kernel is used as is.

:func:`dropout` is the functional form; the attention core uses it on the attention weights.
:func:`relu_dropout` is ``dropout(relu(x))`` with one mask for both, which the Transformer's
feed-forward blocks use in training.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["Dropout", "dropout", "keep_mask", "quantized_probability", "relu_dropout"]

_LEVELS = 1 << 15
"""Each mask element is a uniform 15-bit integer: probabilities are multiples of 2**-15."""


def _levels_dropped(p: float) -> int:
    """How many of the ``2**15`` values of a mask element mean "drop" for probability ``p``."""
    return round(p * _LEVELS)


def quantized_probability(p: float) -> float:
    """The drop probability :func:`keep_mask` realises for ``p``: a multiple of ``2**-15``."""
    return _levels_dropped(p) / _LEVELS


def keep_mask(x: Tensor, p: float) -> Tensor:
    """A boolean mask shaped like ``x``: each element ``True`` (kept) with probability
    ``1 - quantized_probability(p)``, independently, drawn from the default generator of
    ``x``'s device."""
    n = x.numel()
    bits = torch.empty((n + 1) // 2, dtype=torch.int32, device=x.device)
    # random_ gives values in [0, 2**31]: the low 16 bits and bits 16-30 are uniform; keeping
    # 15 bits of each half makes both halves uniform on [0, 2**15).
    bits.random_().bitwise_and_(0x7FFF7FFF)
    halves = bits.view(torch.int16)[:n]  # (n,) uniform on [0, 2**15)
    return halves.ge(_levels_dropped(p)).view(x.shape)


class _BitMaskDropout(torch.autograd.Function):
    """Dropout with the bit mask; with ``relu`` also the ReLU before it, through one mask
    ``keep & (x > 0)``: the ReLU's own pass and its backward (``threshold_backward``, which reads
    the saved ReLU output) are gone."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, p: float, relu: bool) -> Tensor:
        keep = keep_mask(x, p)
        if relu:
            keep.logical_and_(x > 0)
        scale = 1.0 / (1.0 - quantized_probability(p))
        # Multiplying by the mask read as uint8 (the same bytes) is 1.3-2.7x faster on CPU
        # than by the bool mask, whose cast to float goes through a slower path.
        keep = keep.view(torch.uint8)
        ctx.save_for_backward(keep)
        ctx.scale = scale
        return x.mul(keep).mul_(scale)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:
        (keep,) = ctx.saved_tensors
        return grad.mul(keep).mul_(ctx.scale), None, None


def relu_dropout(x: Tensor, p: float) -> Tensor:
    """Training-mode ``dropout(relu(x), p)``; on CPU floats one mask serves both (the same values
    and gradients as the two in sequence, drawing the same random numbers), which saves two
    passes over ``x`` and the ReLU output that autograd would keep for the backward pass."""
    if p == 0.0:
        return F.relu(x)
    cpu_float = x.device.type == "cpu" and x.dtype.is_floating_point
    if not cpu_float or quantized_probability(p) in (0.0, 1.0):
        return F.dropout(F.relu(x), p, training=True)
    return _BitMaskDropout.apply(x, p, True)


def dropout(x: Tensor, p: float) -> Tensor:
    """Training-mode dropout of ``x`` with probability ``p`` (the bit mask on CPU floats)."""
    if p == 0.0:
        return x
    cpu_float = x.device.type == "cpu" and x.dtype.is_floating_point
    if not cpu_float or quantized_probability(p) in (0.0, 1.0):
        return F.dropout(x, p, training=True)
    return _BitMaskDropout.apply(x, p, False)


class Dropout(nn.Module):
    """Drop-in for ``nn.Dropout(p)`` (no parameters, same state dict); on CPU ``p`` is realised
    to within ``2**-16`` (:func:`quantized_probability`)."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability must be in [0, 1], got {p}")
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        return dropout(x, self.p) if self.training else x

    def extra_repr(self) -> str:
        return f"p={self.p}"
