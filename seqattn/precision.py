"""bf16 autocast: on CUDA, and on CPUs whose matrix units multiply bf16 natively.

Autocast runs matrix multiplies (linear layers, attention, LSTM gates) in bfloat16 and keeps
reductions, norms, softmax and the loss in float32; the weights and the optimizer stay float32.
On a CPU with AVX512-BF16 or AMX a bf16 matrix multiply is several times faster than an fp32 one
(4x for the 2048 x 2048 product on the development machine, see the README's benchmarks); on
other CPUs bf16 is emulated and slower than fp32, which is why CPU autocast is opt-in
(``train.bf16_cpu``, ``seqattn translate --bf16``) while CUDA's is on by default (``train.bf16``).
Decoding upcasts logits to float32 before the log-softmax, so beam scores accumulate in float32.
"""

from __future__ import annotations

import contextlib

import torch

__all__ = ["autocast", "native_bf16"]


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` multiplies bf16 matrices in hardware (CUDA: compute capability 8+)."""
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        cpu = torch.cpu
        checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
        return any(bool(getattr(cpu, name, lambda: False)()) for name in checks)
    return False


def autocast(device: torch.device, *, bf16: bool) -> contextlib.AbstractContextManager[object]:
    """bf16 autocast on ``device`` when ``bf16`` is set (CPU or CUDA), else a no-op context."""
    if bf16 and device.type in ("cpu", "cuda"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
