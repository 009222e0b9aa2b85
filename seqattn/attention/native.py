"""Attention for decoding steps in the compiled CPU kernel (``seqattn/native/few_query.cpp``).

At a decoding step each (sentence, head) pair is a product of a few queries (``G`` = 1 for
greedy, the beam's hypotheses for beam search) with one sequence's keys, then a softmax and a
product with its values. Eager PyTorch runs that as two batched matrix multiplies and a softmax,
three passes with per-matrix overhead, which on CPU read the cached keys and values at a
quarter to a fifth of the rate of a plain memory read: the reason decoding slowed with source
length (benchmarks/RESULTS.md). The kernel does the three steps in one pass per pair.

How the kernels are built and switched off: :mod:`seqattn.native`. Without them the eager path
gives the same results (tested to 1e-5).
"""

from __future__ import annotations

import torch
from torch import Tensor

from seqattn.native import enabled, module, native_status, switched_on, use_native

__all__ = ["applies", "enabled", "few_query_attention", "native_status", "use_native"]

MAX_QUERIES = 16
"""Calls with more queries per (row, head) than this take the eager path (training blocks)."""

DTYPES = (torch.float32, torch.bfloat16)
"""Operand types (all three alike); bf16 is widened to float32 for the arithmetic and the
context rounded back."""

HEAD_SIZES = frozenset({16, 32, 48, 64, 80, 96, 128, 192, 256})
"""Head sizes the kernel is built for (whole 16-float vectors per row)."""


def applies(query: Tensor, keys: Tensor, values: Tensor) -> bool:
    """Whether the kernel can compute this call: CPU float32 or bf16 without autograd, 3-d ``(M, G, D)``
    or 4-d ``(M, H, G, D)`` operands with the same leading sizes and contiguous rows, at most
    :data:`MAX_QUERIES` queries, a head size in :data:`HEAD_SIZES`."""
    dims = query.dim()
    return (
        switched_on()
        and dims in (3, 4)
        and keys.dim() == dims
        and values.dim() == dims
        and query.device.type == "cpu"
        and query.dtype == keys.dtype == values.dtype
        and query.dtype in DTYPES
        and query.size(-2) <= MAX_QUERIES
        and query.size(-1) in HEAD_SIZES
        and keys.size(-1) == query.size(-1) == values.size(-1)
        and query.shape[:-2] == keys.shape[:-2] == values.shape[:-2]
        and query.stride(-1) == keys.stride(-1) == values.stride(-1) == 1
        and not (
            torch.is_grad_enabled() and (query.requires_grad or keys.requires_grad or values.requires_grad)
        )
        and module() is not None
    )


def few_query_attention(
    query: Tensor, keys: Tensor, values: Tensor, mask: Tensor | None, *, scale: float
) -> Tensor:
    """``softmax(scale * q K^T, masked) V`` per (row, head), zero for queries without keys.

    Shapes: ``query`` ``(M, H, G, Dh)``, ``keys`` and ``values`` ``(M, H, S, Dh)``, ``mask``
    boolean broadcastable to ``(M, H, G, S)`` (``True`` = may attend); or all of them without
    the ``H`` dimension. Returns ``(M, H, G, Dh)`` (``(M, G, Dh)``), stored ``(M, G, H, Dh)``
    (merging the heads after ``transpose(1, 2)`` is a view). Call only where :func:`applies`.
    """
    kernels = module()
    assert kernels is not None
    flat = query.dim() == 3
    if flat:
        query, keys, values = query.unsqueeze(1), keys.unsqueeze(1), values.unsqueeze(1)
        if mask is not None and mask.dim() >= 3:
            mask = mask.unsqueeze(-3)
    rows, heads, queries, _ = query.shape
    if mask is not None:
        mask = mask.expand(rows, heads, queries, keys.size(-2))
    context = kernels.few_query_attention(query, keys, values, mask, float(scale))
    return context.squeeze(1) if flat else context
