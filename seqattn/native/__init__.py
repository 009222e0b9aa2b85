"""seqattn's optional compiled CPU kernels, and their loader.

One extension module built from the sources beside this file:

* ``few_query.cpp``: attention for decoding steps, a few queries per (sentence, head) over one
  sequence's keys and values in one pass (used by :mod:`seqattn.attention.native`);
* ``dropout.cpp``: dropout whose mask is drawn inside the kernel that applies it, together with
  the residual sum or the ReLU before it (used by :mod:`seqattn.dropout` in training);
* ``bindings.cpp`` (the Python module) and ``simd.h`` (16-lane float32 / bfloat16 vectors).

It is compiled on first use with the C++ compiler torch's extension loader finds (``$CXX`` or
``c++``, and ``ninja``, on ``PATH``), for the machine it runs on (``-march=native``), into torch's
extension cache (``$TORCH_EXTENSIONS_DIR/seqattn``, default ``~/.cache/torch_extensions``; about
half a minute, with a one-line note on stderr); later processes load the built library. Without
a compiler, on a failed build, or with ``SEQATTN_NATIVE=0`` the eager PyTorch paths run: the
kernels are accelerators, never a requirement. The attention kernel gives the eager path's
results (to float rounding); the dropout kernel draws its masks from another random stream than
the eager dropout, so a seeded training run is reproducible on either path but not across them.
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

__all__ = ["enabled", "module", "native_status", "switched_on", "use_native"]

log = logging.getLogger(__name__)

DIRECTORY = Path(__file__).parent
SOURCES = ("few_query.cpp", "dropout.cpp", "bindings.cpp")
HEADERS = ("simd.h",)
FLAGS = ["-O3", "-march=native", "-fopenmp", "-fno-math-errno"]
LINK_FLAGS = ["-fopenmp"]

_module: ModuleType | None = None
_reason: str | None = None  # why the kernels are not in use, once a load was tried
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
    """Where the kernels are built: ``$TORCH_EXTENSIONS_DIR/seqattn/<name>`` (default under
    ``~/.cache/torch_extensions``), shared by every run on the machine (tests and recipes that
    point ``$SEQATTN_CACHE`` elsewhere still find it)."""
    root = os.environ.get("TORCH_EXTENSIONS_DIR") or Path.home() / ".cache" / "torch_extensions"
    path = Path(root) / "seqattn" / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def _build() -> ModuleType:
    from torch.utils import cpp_extension

    # The name changes with anything that changes the library: sources, flags, torch, the CPU.
    digest = hashlib.sha256()
    for file in (*SOURCES, *HEADERS):
        digest.update((DIRECTORY / file).read_bytes())
    for part in (" ".join(FLAGS), torch.__version__, _cpu_signature()):
        digest.update(part.encode())
    name = f"seqattn_native_{digest.hexdigest()[:12]}"
    directory = _build_directory(name)
    if not (directory / f"{name}.so").exists():
        print(
            "seqattn: compiling the CPU kernels for this machine (once, about half a minute)",
            file=sys.stderr,
            flush=True,
        )
    return cpp_extension.load(
        name=name,
        sources=[str(DIRECTORY / file) for file in SOURCES],
        extra_cflags=FLAGS,
        extra_ldflags=LINK_FLAGS,
        build_directory=str(directory),
        verbose=False,
    )


def module() -> ModuleType | None:
    """The built extension module (building it on the first call), or ``None`` where it cannot
    be built; see :func:`native_status` for why."""
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
        except Exception as error:  # any build or load failure: fall back to the eager paths
            lines = str(error).strip().splitlines()
            _reason = f"build failed: {lines[-1] if lines else type(error).__name__}"
            print(f"seqattn: CPU kernels not built ({_reason}); using the eager paths", file=sys.stderr)
    if _reason is not None:
        log.info("compiled CPU kernels not in use (%s); using the eager paths", _reason)
    return _module


def switched_on() -> bool:
    """Whether the kernels may be used (``SEQATTN_NATIVE`` and :func:`use_native`); cheap, does
    not build them."""
    return _switch


def enabled() -> bool:
    """Whether the CPU paths use the kernels (switched on and built, or buildable)."""
    return _switch and module() is not None


def native_status() -> str:
    """One line for reports: whether the kernels are in use, and if not, why."""
    if not _switch:
        return "off (SEQATTN_NATIVE=0)"
    if module() is not None:
        return "on"
    return f"off ({_reason})"


@contextlib.contextmanager
def use_native(on: bool) -> Iterator[None]:
    """Switch the kernels on or off inside a block (for comparisons and tests)."""
    global _switch
    before, _switch = _switch, on
    try:
        yield
    finally:
        _switch = before
