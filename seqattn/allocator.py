"""Keep a training step's buffers in the process for reuse (glibc), instead of handing them
back to the kernel every step.

A training step allocates and frees buffers of the same sizes every time: activations and their
gradients, the RNN decoder's per-position states, logits and log-probabilities. glibc's
``malloc`` serves blocks above its mmap threshold (128 KB at start) with fresh ``mmap`` pages,
unmapped again on ``free``, and gives the top of its heap back to the kernel whenever more than
its trim threshold is free there. It raises both thresholds as it sees mapped blocks freed, but
memory it has given back costs page faults (the kernel zeroing every page) when it is needed
again, and on the RNN benchmark workload steps ran measurably slower with the defaults.

:func:`keep_freed_memory` sets both once: blocks up to 32 MB (the ceiling of glibc's own
adaptation) come from the heap, and up to 128 MB may stay free at its top. Paired
fresh-process runs on the benchmark workload (steps 6-30, 2-core Xeon): RNN 1.26x and 1.06x
tokens/s, Transformer 0.93x and 1.04x (within this machine's noise). Blocks above 32 MB
(``N x V`` logits of a 4,096-token batch, over 100 MB) are still mapped and unmapped, so peak
memory stays close to where it was (+10 to +85 MB); serving those from the heap too
(``M_MMAP_MAX = 0``) was faster still but added 300-450 MB of peak RSS to the RNN (freed blocks
pinned by fragmentation). Decoding frees and allocates its logits and log-probabilities every
step the same way (10 MB each for 64 sentences x 5 beams x 8k vocabulary): beam-5 decoding of
the RNN benchmark checkpoint in a fresh process ran 1.15x faster with it (fp32 and int8, four
alternating runs each). :class:`~seqattn.training.trainer.Trainer` and :func:`seqattn.load`
call it. Any of glibc's
own tunables in the environment (``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``,
``MALLOC_MMAP_MAX_``) leaves the allocator as the user configured it.

Freed blocks are only reusable if nothing long-lived is allocated between them, and oneDNN's
primitive cache is exactly that: every RNN primitive it creates (one per layer and input shape:
the RNN encoder's training batches run one shape per source length, the RNN decoder one per
number of live hypotheses) stays in an LRU cache of 1,024 by default, allocated in the middle
of a step. On the RNN benchmark workload the heap's live bytes grew by about 1.2 MB a step,
and the freed blocks pinned between them grew the peak RSS from 1,233 MiB
(packed encoder) to 1,543 MiB after 40 steps and 2,112 MiB after 120. :func:`bound_primitive_cache`
caps the cache at 16 primitives (the same workload: 1,306 MiB, no slower), through oneDNN's own
``ONEDNN_PRIMITIVE_CACHE_CAPACITY``, which oneDNN reads when it creates its first primitive in the
process; :func:`keep_freed_memory` calls it. A capacity already in the environment wins.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform
import sys

__all__ = ["bound_primitive_cache", "keep_freed_memory"]

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_MMAP_BYTES = 32 << 20  # the ceiling of glibc's dynamic threshold on 64-bit systems
_TRIM_BYTES = 128 << 20
_ENVIRONMENT = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_MAX_")
_CACHE_ENVIRONMENT = ("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "DNNL_PRIMITIVE_CACHE_CAPACITY")
PRIMITIVE_CACHE_CAPACITY = 16


def _mallopt(option: int, value: int) -> bool:
    """glibc's ``mallopt``; False where there is none (not Linux/glibc) or it refuses."""
    if sys.platform != "linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(ctypes.c_int(option), ctypes.c_int(value)))
    except (OSError, AttributeError):
        return False


def bound_primitive_cache(capacity: int = PRIMITIVE_CACHE_CAPACITY) -> bool:
    """Cap oneDNN's primitive cache at ``capacity`` primitives for this process.

    Takes effect only if oneDNN has not created a primitive yet in this process (it reads the
    capacity once, then). Returns ``False`` and changes nothing when the environment already sets
    the capacity (under either of oneDNN's names). Calling it again is harmless.
    """
    if capacity < 0:
        raise ValueError(f"primitive cache capacity must be >= 0, got {capacity}")
    if any(name in os.environ for name in _CACHE_ENVIRONMENT):
        return False
    os.environ[_CACHE_ENVIRONMENT[0]] = str(capacity)
    return True


def keep_freed_memory() -> bool:
    """Make glibc keep blocks up to 32 MB for reuse, for the rest of the process, and bound
    oneDNN's primitive cache (:func:`bound_primitive_cache`) so that they stay reusable.

    Returns whether the allocator was changed: ``False`` off glibc, or when the environment sets
    one of glibc's malloc tunables (the user's choice wins). Calling it again is harmless.
    """
    bound_primitive_cache()
    if any(name in os.environ for name in _ENVIRONMENT):
        return False
    return _mallopt(_M_MMAP_THRESHOLD, _MMAP_BYTES) and _mallopt(_M_TRIM_THRESHOLD, _TRIM_BYTES)
