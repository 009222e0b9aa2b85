"""Label-smoothed cross-entropy (Szegedy et al. 2016) over token logits.

The smoothed target distribution follows OpenNMT-py's ``LabelSmoothingLoss`` (the pad class gets
no probability mass), so that a model is never taught to put probability on padding. For a
target ``y`` that is not ``ignore_index``, with vocabulary size ``V`` and ``smoothing = ε``::

    q(y)   = 1 - ε
    q(v)   = ε / K      for every v ∉ {y, ignore_index}
    q(pad) = 0          (only when 0 <= ignore_index < V, i.e. the pad id is a class)

where ``K = V - 2`` when ``ignore_index`` is a class id and ``K = V - 1`` otherwise (for example
``ignore_index=-100``). The loss of one token is the cross-entropy ``H(q, p) = -Σ_v q(v) log p(v)``
(not the KL divergence, which is smaller by the constant ``H(q)``)::

    loss = (1 - ε) · nll + ε / K · Σ_{v ∉ {y, pad}} -log p(v)

With ``ε = 0`` this is exactly ``F.cross_entropy(..., reduction="sum", ignore_index=...)``.
fairseq's ``label_smoothed_nll_loss`` differs only in that it also gives ``ε / (V - 1)`` to the
pad class.

Positions whose target is ``ignore_index`` are dropped before the softmax: they cost nothing and
receive zero gradient. Counting them gives ``tokens`` as a Python ``int``, which synchronises
with the GPU once per call (a trainer needs the count on the host anyway). Half-precision logits are upcast to float32 first (float64 stays
float64), and log-probabilities come from ``log_softmax``, which is stable for large logits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from seqattn.data.tokenizer import PAD_ID
from seqattn.errors import ConfigError

__all__ = ["LossOutput", "label_smoothed_cross_entropy"]


@dataclass(frozen=True)
class LossOutput:
    """The summed loss of a batch, and what is needed to normalise and report it."""

    loss: Tensor
    """Scalar label-smoothed loss summed over non-ignored tokens; differentiable."""
    nll: Tensor
    """Scalar negative log-likelihood of the targets summed over the same tokens; detached."""
    tokens: int
    """Number of non-ignored target tokens (divide ``loss`` or ``nll`` by it for a mean)."""


def label_smoothed_cross_entropy(
    logits: Tensor, target: Tensor, *, smoothing: float = 0.0, ignore_index: int = PAD_ID
) -> LossOutput:
    """Summed label-smoothed cross-entropy of ``target`` under ``logits`` (see the module docstring).

    Args:
        logits: ``(..., V)`` unnormalised scores, any floating dtype.
        target: ``(...)`` integer ids in ``[0, V)`` or ``ignore_index``.
        smoothing: ``ε`` in ``[0, 1)``: the probability mass spread over the non-target classes.
        ignore_index: target id that is skipped (padding); when it is a valid class id it also
            receives no smoothing mass.
    Returns:
        A :class:`LossOutput`; ``loss`` and ``nll`` are float32 (float64 for float64 logits).
    Raises:
        ConfigError: ``smoothing`` outside ``[0, 1)``, or ``smoothing > 0`` with no class to
            spread it over.
    """
    if logits.shape[:-1] != target.shape:
        raise ValueError(f"logits {tuple(logits.shape)} do not match target {tuple(target.shape)}")
    if target.dtype.is_floating_point or target.dtype.is_complex or target.dtype == torch.bool:
        raise TypeError(f"target must hold integer ids, got {target.dtype}")
    if not 0.0 <= smoothing < 1.0:
        raise ConfigError(f"label smoothing must be in [0, 1), got {smoothing!r}")
    vocab = logits.size(-1)
    pad_is_class = 0 <= ignore_index < vocab
    spread = vocab - 1 - int(pad_is_class)  # K: classes that share the smoothing mass
    if smoothing > 0.0 and spread < 1:
        raise ConfigError(
            f"label smoothing {smoothing} needs a class besides the target and padding, "
            f"but the vocabulary has only {vocab}"
        )
    dtype = torch.promote_types(logits.dtype, torch.float32)

    keep = target != ignore_index  # (...)
    tokens = int(keep.sum())
    if tokens == keep.numel():  # nothing to drop: avoid copying the logits
        target = target.reshape(-1)  # (N,)
        logits = logits.reshape(-1, vocab)  # (N, V)
    else:
        target = target[keep]  # (N,)
        logits = logits[keep]  # (N, V)
    loss, nll_sum = _SmoothedCrossEntropy.apply(
        logits.to(dtype), target, smoothing, spread, ignore_index if pad_is_class else None
    )
    return LossOutput(loss=loss, nll=nll_sum, tokens=tokens)


class _SmoothedCrossEntropy(torch.autograd.Function):
    """``(N, V)`` logits and ``(N,)`` targets -> summed loss and summed nll (not differentiable).

    The gradient is ``p - q`` per token (``Σ_v q(v) = 1``), written in three passes over the
    ``(N, V)`` probabilities. Autograd through ``log_softmax``, ``gather``, the pad column and the
    sums materialises a zero-filled ``(N, V)`` gradient for each and adds them before the
    log-softmax backward. Forward and backward on 2,400 x 8,001 logits (2 CPU threads): 63 -> 41 ms
    with smoothing 0.1, 44 -> 37 ms without. Differentiable once (no double backward).
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, logits: Tensor, target: Tensor, smoothing: float, spread: int, pad: int | None
    ) -> tuple[Tensor, Tensor]:
        log_probs = F.log_softmax(logits, dim=-1)  # (N, V)
        nll = -log_probs.gather(-1, target.unsqueeze(-1)).squeeze(-1)  # (N,)
        nll_sum = nll.sum()
        if smoothing > 0.0:
            everything = -log_probs.sum(dim=-1)  # (N,) Σ_v -log p(v)
            if pad is not None:
                everything = everything + log_probs[:, pad]  # (N,) without the pad class
            others = everything - nll  # (N,) Σ_{v ∉ {y, pad}} -log p(v)
            loss = (1.0 - smoothing) * nll_sum + (smoothing / spread) * others.sum()
        else:
            loss = nll_sum.clone()  # a Function's two outputs cannot be one tensor
        ctx.save_for_backward(log_probs, target)
        ctx.smoothing, ctx.spread, ctx.pad = smoothing, spread, pad
        ctx.mark_non_differentiable(nll_sum)
        return loss, nll_sum

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_loss: Tensor, _grad_nll: Tensor) -> tuple[Tensor | None, ...]:
        log_probs, target = ctx.saved_tensors
        others = ctx.smoothing / ctx.spread if ctx.smoothing > 0.0 else 0.0  # q(v) off the target
        grad = log_probs.exp()  # (N, V) p
        if others:
            grad.sub_(others)
            if ctx.pad is not None:
                grad[:, ctx.pad] += others  # q(pad) = 0
        rows = torch.arange(grad.size(0), device=grad.device)
        grad[rows, target] -= 1.0 - ctx.smoothing - others  # q(y) = 1 - ε
        return grad.mul_(grad_loss), None, None, None, None
