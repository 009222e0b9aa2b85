"""Dynamic int8 quantization for CPU inference: int8 weights, int8 activations, int32 sums.

Decoding on a CPU is bound by small matrix multiplies (a batch of 64 sentences gives ``M = 64``
rows per step); an int8 product with exact int32 accumulation (``torch._int_mm``; VNNI
``vpdpbusd`` on x86) runs them 2-4x faster than fp32 on an AVX-512 CPU with VNNI, before the
quantization and rescaling around it (``benchmarks/int8.py`` measures both, and whole decoder
steps). :func:`quantize_int8` swaps a trained model's linear layers and unidirectional
LSTMs for :class:`Int8Linear` / :class:`Int8LSTM`; embeddings, norms, attention scores and
softmax stay float32.

Scales are symmetric (zero point 0):

* weights: one scale per output row, ``max |w_row| / 127``, computed once;
* activations: one scale per input row (per token), ``max |x_row| / 127``, computed at each call
  ("vector-wise" quantization, Dettmers et al. 2022; "per-token" in Xiao et al. 2023).

``y = (q_x @ q_w^T) * s_x * s_w + b``. PyTorch's own dynamic quantization scales activations per
tensor (one scale for the whole batch). Per-row scales are chosen here for two reasons: the
error is 2-5x smaller when a few rows or features are larger than the rest (measured on random
matrices with outlier features: relative error 0.017-0.022 against 0.042-0.116), and each row's
result depends on that row alone, so the quantized model keeps the float model's equivalences
(a sentence decodes the same in any batch; incremental decoding matches a full forward pass) up
to float rounding upstream of a quantization, which can move a value across a rounding
boundary of the int8 grid. The price is that quantizing and rescaling are separate passes
around the product instead of being fused into the kernel (about 10 small operations per
layer, which is why small layers gain little).

Inference only: the quantized modules hold buffers, not parameters, and have no backward.
"""

from __future__ import annotations

import platform

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "Int8LSTM",
    "Int8Linear",
    "linear_outputs",
    "linear_rows",
    "native_int8",
    "quantize_int8",
    "quantize_rows",
]

_QMAX = 127


def native_int8() -> bool:
    """Whether this CPU has int8 dot-product instructions for ``torch._int_mm`` (x86: VNNI;
    other architectures are assumed to: torch exposes no check for them)."""
    if platform.machine().lower() not in ("x86_64", "amd64", "i386", "i686"):
        return True
    return bool(getattr(torch.cpu, "_is_vnni_supported", lambda: False)())


def quantize_rows(x: Tensor) -> tuple[Tensor, Tensor]:
    """``(M, K)`` float -> int8 ``(M, K)`` and float scales ``(M, 1)``, ``x ~ q * scale``.

    Each row is scaled so that its largest magnitude maps to 127 and rounded to the nearest
    integer (an all-zero row gets a tiny scale and quantizes to zeros).
    """
    scale = x.abs().amax(dim=-1, keepdim=True)  # 7-10x faster than an inf-norm
    scale = scale.div_(_QMAX).clamp_min_(torch.finfo(x.dtype).tiny)
    return torch.div(x, scale).round_().to(torch.int8), scale


def _int8_linear(x: Tensor, weight_t: Tensor, weight_scale: Tensor, bias: Tensor | None) -> Tensor:
    """``(*, K)`` float -> ``(*, N)`` float32 through the int8 ``(K, N)`` ``weight_t``."""
    rows = x.reshape(-1, x.size(-1)).float()
    q, scale = quantize_rows(rows)
    out = torch._int_mm(q, weight_t).float()  # (M, N), exact int32 sums
    out.mul_(weight_scale)
    if bias is None:
        out.mul_(scale)
    else:
        torch.addcmul(bias, out, scale, out=out)
    return out.view(*x.shape[:-1], weight_t.size(1))


class Int8Linear(nn.Module):
    """A linear layer with int8 weights and per-row dynamic int8 inputs (see module docstring).

    Buffers: ``weight_t`` int8 ``(in, out)`` (transposed: the layout ``torch._int_mm`` reads),
    ``weight_scale`` float32 ``(out,)``, ``bias`` float32 ``(out,)`` or ``None``.
    """

    def __init__(self, weight_t: Tensor, weight_scale: Tensor, bias: Tensor | None) -> None:
        super().__init__()
        if weight_t.dtype != torch.int8 or weight_t.dim() != 2:
            raise ValueError(
                f"weight_t must be a 2-d int8 tensor, got {weight_t.dtype} {tuple(weight_t.shape)}"
            )
        self.in_features, self.out_features = weight_t.shape
        self.register_buffer("weight_t", weight_t)
        self.register_buffer("weight_scale", weight_scale)
        self.register_buffer("bias", bias)

    @classmethod
    def from_weight(cls, weight: Tensor, bias: Tensor | None = None) -> Int8Linear:
        """Quantize a float ``(out, in)`` weight with one scale per output row."""
        weight = weight.detach().float()
        scale = weight.abs().amax(dim=1).div_(_QMAX).clamp_min_(torch.finfo(torch.float32).tiny)
        q = torch.div(weight, scale[:, None]).round_().to(torch.int8)
        return cls(q.t().contiguous(), scale, None if bias is None else bias.detach().float().clone())

    @classmethod
    def from_float(cls, linear: nn.Linear) -> Int8Linear:
        return cls.from_weight(linear.weight, linear.bias)

    def dequantized_weight(self) -> Tensor:
        """The float ``(out, in)`` weight this layer multiplies by: ``q_w * s_w``."""
        return self.weight_t.t().float() * self.weight_scale[:, None]

    def forward(self, x: Tensor) -> Tensor:
        return _int8_linear(x, self.weight_t, self.weight_scale, self.bias)

    def rows(self, x: Tensor, start: int, stop: int) -> Tensor:
        """Only output features ``[start, stop)``: ``forward(x)[..., start:stop]`` for less work."""
        bias = None if self.bias is None else self.bias[start:stop]
        return _int8_linear(x, self.weight_t[:, start:stop], self.weight_scale[start:stop], bias)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"
        )


def linear_rows(linear: nn.Module, x: Tensor, start: int, stop: int) -> Tensor:
    """Output features ``[start, stop)`` of ``linear`` (an ``nn.Linear`` or :class:`Int8Linear`)
    applied to ``x``, computing only those features."""
    if isinstance(linear, Int8Linear):
        return linear.rows(x, start, stop)
    assert isinstance(linear, nn.Linear)
    bias = None if linear.bias is None else linear.bias[start:stop]
    return F.linear(x, linear.weight[start:stop], bias)


class _Projection(nn.Module):
    """``F.linear`` with a fixed float weight ``(out, in)`` and optional bias ``(out,)``."""

    def __init__(self, weight: Tensor, bias: Tensor | None) -> None:
        super().__init__()
        self.weight, self.bias = weight, bias

    @property
    def in_features(self) -> int:
        return self.weight.size(1)

    @property
    def out_features(self) -> int:
        return self.weight.size(0)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight, self.bias)


def linear_outputs(linear: nn.Module, index: Tensor) -> nn.Module:
    """A layer computing only output features ``index`` ``(C,)`` of ``linear`` (an ``nn.Linear``
    or :class:`Int8Linear`): ``linear(x)[..., index]``, with the selected weight rows copied
    once (an output-vocabulary shortlist). Exact for int8; in floating point the BLAS kernel for
    a narrower output may round the last bit differently."""
    bias = None if linear.bias is None else linear.bias.detach().index_select(0, index)
    if isinstance(linear, Int8Linear):
        return Int8Linear(
            linear.weight_t.index_select(1, index).contiguous(),
            linear.weight_scale.index_select(0, index),
            bias,
        )
    assert isinstance(linear, nn.Linear)
    return _Projection(linear.weight.detach().index_select(0, index), bias)


class Int8LSTM(nn.Module):
    """A unidirectional multi-layer LSTM whose gate products are :class:`Int8Linear` layers.

    Each layer multiplies ``[x_t; h_{t-1}]`` by ``[W_ih  W_hh]`` in one product (one input scale
    per row for both halves), adds ``b_ih + b_hh`` and applies the usual gates (PyTorch's order
    ``i, f, g, o``). Called like ``nn.LSTM`` (sequence-first): ``(T, B, I)`` input and
    ``(h_0, c_0)`` each ``(L, B, D)`` -> ``(T, B, D)`` top-layer outputs and ``(h_T, c_T)``.
    Evaluation only (no inter-layer dropout).
    """

    def __init__(self, gates: list[Int8Linear], hidden_size: int) -> None:
        super().__init__()
        self.gates = nn.ModuleList(gates)
        self.hidden_size = hidden_size
        self.num_layers = len(gates)

    @classmethod
    def from_float(cls, lstm: nn.LSTM) -> Int8LSTM:
        if lstm.bidirectional or lstm.batch_first or lstm.proj_size:
            raise ValueError("Int8LSTM converts sequence-first, unidirectional LSTMs without projections")
        layers = []
        for layer in range(lstm.num_layers):
            weight = torch.cat(
                [getattr(lstm, f"weight_ih_l{layer}"), getattr(lstm, f"weight_hh_l{layer}")], dim=1
            )
            bias = None
            if lstm.bias:
                bias = getattr(lstm, f"bias_ih_l{layer}") + getattr(lstm, f"bias_hh_l{layer}")
            layers.append(Int8Linear.from_weight(weight, bias))
        return cls(layers, lstm.hidden_size)

    def forward(
        self, x: Tensor, hx: tuple[Tensor, Tensor] | None = None
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        if not isinstance(x, Tensor):
            raise TypeError("Int8LSTM takes a (T, B, I) tensor, not a packed sequence")
        if hx is None:
            zeros = x.new_zeros(self.num_layers, x.size(1), self.hidden_size)
            hx = (zeros, zeros)
        h, c = list(hx[0].unbind(0)), list(hx[1].unbind(0))
        d = self.hidden_size
        outputs = []
        for x_t in x.unbind(0):
            for layer, gates in enumerate(self.gates):
                z = gates(torch.cat([x_t, h[layer]], dim=-1))  # (B, 4D)
                sig = torch.sigmoid(z)
                i, f, o = sig[:, :d], sig[:, d : 2 * d], sig[:, 3 * d :]
                c[layer] = torch.addcmul(f * c[layer], i, torch.tanh(z[:, 2 * d : 3 * d]))
                h[layer] = x_t = o * torch.tanh(c[layer])
            outputs.append(x_t)
        return torch.stack(outputs), (torch.stack(h), torch.stack(c))


def quantize_int8(model: nn.Module, *, min_weights: int = 0) -> nn.Module:
    """Replace, in place, the linear layers with at least ``min_weights`` weights (all, by
    default) and every unidirectional sequence-first LSTM of ``model`` by int8 versions; returns
    ``model``, in eval mode.

    Measured on the benchmark models (``benchmarks/int8.py``), leaving the 256 x 256 layers in
    float32 made no difference beyond the noise, so every layer is converted by default.

    For CPU inference (``torch._int_mm``); a weight shared by several modules (tied embeddings)
    is quantized once per module that uses it as a linear weight, the embeddings stay float.
    Bidirectional LSTMs (the RNN encoder, run once per sentence) stay float32, and so do the
    children a module names in an ``int8_exempt`` class attribute (layers whose weight it reads
    directly instead of calling them).
    """
    model.eval()
    for parent in list(model.modules()):
        exempt = getattr(parent, "int8_exempt", frozenset())
        for name, child in list(parent.named_children()):
            if name in exempt:
                continue
            if isinstance(child, nn.Linear) and child.weight.numel() >= min_weights:
                setattr(parent, name, Int8Linear.from_float(child))
            elif isinstance(child, nn.LSTM) and not (
                child.bidirectional or child.batch_first or child.proj_size
            ):
                setattr(parent, name, Int8LSTM.from_float(child))
    return model
