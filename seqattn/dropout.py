"""Dropout with a cheaper mask on CPU.

``nn.Dropout`` draws its CPU mask with ``bernoulli_``, which profiled at 14% of a Transformer
training step on the benchmark workload (more than everything but the matrix multiplies). Two
CPU paths replace it, both realising the drop probability as a multiple of ``2**-15``
(:func:`quantized_probability`, within ``2**-16`` of ``p``) and scaling kept values by
``1 / (1 - p')``, so the expected output is exactly the input, as with ``nn.Dropout``:

* Where seqattn's compiled CPU kernels are built (:mod:`seqattn.native`; float32 and bfloat16):
  the mask is drawn inside the kernel that applies it, from a counter-based stream (SplitMix64
  over the element index, seeded by one draw of torch's generator per call), in one pass over
  memory together with the residual sum (:func:`dropout_add`) or the ReLU before it
  (:func:`relu_dropout`). Nothing is kept for the backward pass but the seed: the gradient
  recomputes the mask (the ReLU's gradient reads the output, which the next layer keeps
  anyway). Forward and backward of ``residual + dropout(x)`` on 4,092 x 1,024 floats: 12.1 ms
  on the eager path below, 1.3 ms in the kernel (2 threads, EPYC).
* Otherwise (no compiler, ``SEQATTN_NATIVE=0``, float64): :func:`keep_mask` gets two mask
  elements out of each 32-bit draw of the generator: ``random_`` fills ``ceil(n / 2)`` int32
  values, one pass clears the top bit of each 16-bit half, and the ``n`` halves, read as int16,
  are compared with ``round(p * 2**15)``; the boolean mask is what backward keeps. That costs
  2.2-2.7x less than ``rand_like(x) >= p`` (3,700 x 1,024 elements: 20-24 ms -> 9 ms).

The two paths draw different masks from the same seed: a seeded run is reproducible on either,
not across them. On other devices the fused ``F.dropout`` kernel is used as is.

:func:`dropout` is the functional form; the attention core uses it on the attention weights.
:func:`relu_dropout` is ``dropout(relu(x))`` with one mask for both, which the Transformer's
feed-forward blocks use in training; :func:`dropout_add` is ``residual + dropout(x)``, the
Transformer's residual connections in training.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seqattn import native

__all__ = ["Dropout", "dropout", "dropout_add", "keep_mask", "quantized_probability", "relu_dropout"]

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


NATIVE_DTYPES = (torch.float32, torch.bfloat16)


def _native_applies(x: Tensor, residual: Tensor | None) -> bool:
    """Whether the compiled kernel serves this call: CPU float32 / bfloat16, a residual (if any)
    shaped like ``x`` in the sum's dtype, the kernels switched on and built."""
    if x.device.type != "cpu" or x.dtype not in NATIVE_DTYPES or not native.switched_on():
        return False
    if residual is not None and (
        residual.device.type != "cpu"
        or residual.shape != x.shape
        or residual.dtype not in NATIVE_DTYPES
        or torch.result_type(x, residual) != residual.dtype
    ):
        return False
    return native.module() is not None


class _KernelDropout(torch.autograd.Function):
    """``residual + dropout(x)`` (either optional: ``relu`` puts a ReLU before the dropout) in
    the compiled kernel; the mask comes from ``seed``, and backward recomputes it."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, residual: Tensor | None, p: float, relu: bool) -> Tensor:
        kernels = native.module()
        assert kernels is not None
        levels = _levels_dropped(p)
        scale = 1.0 / (1.0 - quantized_probability(p))
        # One draw of torch's generator per call: torch.manual_seed reproduces the masks.
        seed = int(torch.empty((), dtype=torch.int64).random_())
        out_dtype = x.dtype if residual is None else residual.dtype
        out = kernels.dropout_apply(
            x.contiguous(),
            None if residual is None else residual.contiguous(),
            seed,
            levels,
            scale,
            relu,
            out_dtype == torch.bfloat16,
        )  # shaped like x
        ctx.seed, ctx.levels, ctx.scale, ctx.relu = seed, levels, scale, relu
        ctx.x_bf16 = x.dtype == torch.bfloat16
        ctx.has_residual = residual is not None
        if relu:
            ctx.save_for_backward(out)  # out > 0 exactly where x > 0 and the element was kept
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None, None]:
        kernels = native.module()
        assert kernels is not None
        if not ctx.needs_input_grad[0]:
            grad_x = None
        elif ctx.relu:
            (out,) = ctx.saved_tensors
            grad_x = kernels.relu_dropout_backward(grad, out, ctx.scale)
        else:
            grad_x = kernels.dropout_apply(
                grad.contiguous(), None, ctx.seed, ctx.levels, ctx.scale, False, ctx.x_bf16
            )
        return grad_x, (grad if ctx.has_residual else None), None, None


def _drops_some(p: float) -> bool:
    """Whether ``p``, as the masks realise it, drops some elements but not all."""
    return quantized_probability(p) not in (0.0, 1.0)


def relu_dropout(x: Tensor, p: float) -> Tensor:
    """Training-mode ``dropout(relu(x), p)``; on CPU floats one mask serves both (the same values
    and gradients as the two in sequence, drawing the same random numbers), which saves two
    passes over ``x`` and the ReLU output that autograd would keep for the backward pass."""
    if p == 0.0:
        return F.relu(x)
    cpu_float = x.device.type == "cpu" and x.dtype.is_floating_point
    if not cpu_float or not _drops_some(p):
        return F.dropout(F.relu(x), p, training=True)
    if _native_applies(x, None):
        return _KernelDropout.apply(x, None, p, True)
    return _BitMaskDropout.apply(x, p, True)


def dropout(x: Tensor, p: float) -> Tensor:
    """Training-mode dropout of ``x`` with probability ``p`` (on CPU floats the compiled kernel
    or the bit mask)."""
    if p == 0.0:
        return x
    cpu_float = x.device.type == "cpu" and x.dtype.is_floating_point
    if not cpu_float or not _drops_some(p):
        return F.dropout(x, p, training=True)
    if _native_applies(x, None):
        return _KernelDropout.apply(x, None, p, False)
    return _BitMaskDropout.apply(x, p, False)


def dropout_add(x: Tensor, residual: Tensor, p: float) -> Tensor:
    """Training-mode ``residual + dropout(x, p)``: one pass in the compiled kernel where it
    applies (the residual's gradient is the output's, passed through), else the two in turn."""
    if _drops_some(p) and _native_applies(x, residual):
        return _KernelDropout.apply(x, residual, p, False)
    return residual + dropout(x, p)


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

    def add(self, residual: Tensor, x: Tensor) -> Tensor:
        """``residual + self(x)``, in training as one operation (:func:`dropout_add`)."""
        return dropout_add(x, residual, self.p) if self.training else residual + x

    def extra_repr(self) -> str:
        return f"p={self.p}"
