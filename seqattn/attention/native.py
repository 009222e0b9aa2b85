"""The optional compiled CPU kernel for decoding-step attention (``few_query.cpp``).

At a decoding step each (sentence, head) pair is a product of a few queries (``G`` = 1 for
greedy, the beam's hypotheses for beam search) with one sequence's keys, then a softmax and a
product with its values. Eager PyTorch runs that as two batched matrix multiplies and a softmax,
three passes with per-matrix overhead, which on CPU read the cached keys and values at a
quarter to a fifth of the rate of a plain memory read: the reason decoding slowed with source
length (benchmarks/RESULTS.md). The kernel does the three steps in one pass per pair.

It is compiled on first use with the C++ compiler torch's extension loader finds (``c++`` and
``ninja`` on ``PATH``), for the machine it runs on (``-march=native``), into torch's extension
cache (``$TORCH_EXTENSIONS_DIR/seqattn``, default ``~/.cache/torch_extensions``; about 20 s, with
a one-line note on stderr); later processes load the built library. Without a compiler, or with ``SEQATTN_NATIVE=0``, seqattn uses the eager path
and gives the same results (tested to 1e-5): the kernel is an accelerator, never a requirement.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import platform
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import torch
from torch import Tensor

__all__ = ["enabled", "few_query_attention", "native_status", "use_native"]

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("few_query.cpp")
FLAGS = ["-O3", "-march=native", "-fopenmp", "-fno-math-errno"]
LINK_FLAGS = ["-fopenmp"]

MAX_QUERIES = 16
"""Calls with more queries per (row, head) than this take the eager path (training blocks)."""

DTYPES = (torch.float32, torch.bfloat16)
"""Operand types (all three alike); bf16 is widened to float32 for the arithmetic and the
context rounded back."""

HEAD_SIZES = frozenset({16, 32, 48, 64, 80, 96, 128, 192, 256})
"""Head sizes the kernel is built for (whole 16-float vectors per row)."""

_module: ModuleType | None = None
_reason: str | None = None  # why the kernel is not in use, once a load was tried
_switch: bool = os.environ.get("SEQATTN_NATIVE", "1") != "0"


def _cpu_signature() -> str:
    """The CPU's feature flags, so a build for one machine is not loaded on another that
    shares the home directory."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return line
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _build_directory(name: str) -> Path:
    """Where the kernel is built: ``$TORCH_EXTENSIONS_DIR/seqattn/<name>`` (default under
    ``~/.cache/torch_extensions``), shared by every run on the machine (tests and recipes that
    point ``$SEQATTN_CACHE`` elsewhere still find it)."""
    root = os.environ.get("TORCH_EXTENSIONS_DIR") or Path.home() / ".cache" / "torch_extensions"
    path = Path(root) / "seqattn" / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def _build() -> ModuleType:
    from torch.utils import cpp_extension

    digest = hashlib.sha256()
    for part in (SOURCE.read_bytes(), " ".join(FLAGS).encode(), torch.__version__.encode()):
        digest.update(part)
    digest.update(_cpu_signature().encode())
    name = f"seqattn_few_query_{digest.hexdigest()[:12]}"
    directory = _build_directory(name)
    if not (directory / f"{name}.so").exists():
        print(
            "seqattn: compiling the decoding attention kernel for this machine (once, about 20 s)",
            file=sys.stderr,
            flush=True,
        )
    return cpp_extension.load(
        name=name,
        sources=[str(SOURCE)],
        extra_cflags=FLAGS,
        extra_ldflags=LINK_FLAGS,
        build_directory=str(directory),
        verbose=False,
    )


def _load() -> ModuleType | None:
    global _module, _reason
    if _module is not None or _reason is not None:
        return _module
    compiler = os.environ.get("CXX", "c++")  # what torch's extension loader calls
    missing = [tool for tool in (compiler, "ninja") if shutil.which(tool) is None]
    if missing:
        _reason = f"no {' or '.join(missing)} on PATH"
    else:
        try:
            _module = _build()
        except Exception as error:  # any build or load failure: fall back to the eager path
            lines = str(error).strip().splitlines()
            _reason = f"build failed: {lines[-1] if lines else type(error).__name__}"
            print(
                f"seqattn: decoding attention kernel not built ({_reason}); using the eager path",
                file=sys.stderr,
            )
    if _reason is not None:
        log.info("few-query attention kernel not in use (%s); using the eager path", _reason)
    return _module


def enabled() -> bool:
    """Whether decoding steps on CPU use the kernel (switched on and built, or buildable)."""
    return _switch and _load() is not None


def native_status() -> str:
    """One line for reports: whether the kernel is in use, and if not, why."""
    if not _switch:
        return "off (SEQATTN_NATIVE=0)"
    if _load() is not None:
        return "on"
    return f"off ({_reason})"


@contextlib.contextmanager
def use_native(on: bool) -> Iterator[None]:
    """Switch the kernel on or off inside a block (for comparisons and tests)."""
    global _switch
    before, _switch = _switch, on
    try:
        yield
    finally:
        _switch = before


def applies(query: Tensor, keys: Tensor, values: Tensor) -> bool:
    """Whether the kernel can compute this call: CPU float32 or bf16 without autograd, 3-d ``(M, G, D)``
    or 4-d ``(M, H, G, D)`` operands with the same leading sizes and contiguous rows, at most
    :data:`MAX_QUERIES` queries, a head size in :data:`HEAD_SIZES`."""
    dims = query.dim()
    return (
        _switch
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
        and _load() is not None
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
    module = _load()
    assert module is not None
    flat = query.dim() == 3
    if flat:
        query, keys, values = query.unsqueeze(1), keys.unsqueeze(1), values.unsqueeze(1)
        if mask is not None and mask.dim() >= 3:
            mask = mask.unsqueeze(-3)
    rows, heads, queries, _ = query.shape
    if mask is not None:
        mask = mask.expand(rows, heads, queries, keys.size(-2))
    context = module.few_query_attention(query, keys, values, mask, float(scale))
    return context.squeeze(1) if flat else context
