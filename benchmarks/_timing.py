"""Timing and machine-description helpers shared by the benchmark scripts.

:func:`measure` times several zero-argument callables *round-robin*: every repeat runs each case
once, in turn, so slow drifts of the machine (clock boost, a noisy neighbour on a shared VM,
allocator state) hit all cases alike and ratios between cases taken from one call are fair.
Each case is warmed up first; its median over the repeats is reported with the quartiles.
:func:`paired_ratio` divides two cases sample by sample (samples of one round were taken
moments apart) and takes the median, which cancels drifts slower than a round.

On CPU a sample is ``time.perf_counter`` around the call; on CUDA it is a pair of CUDA events
around the call (after a ``torch.cuda.synchronize`` so that no earlier work is still queued),
and a fast call is repeated ``inner`` times inside one sample so that a sample lasts at least
``min_sample_s`` (launch jitter then averages out).
"""

from __future__ import annotations

import gc
import json
import math
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from seqattn import native

__all__ = [
    "OtherLoad",
    "Timing",
    "describe_machine",
    "measure",
    "paired_ratio",
    "resolve_device",
    "synchronize",
]


@dataclass
class Timing:
    """Seconds per call of one case: ``samples_s`` holds one entry per repeat."""

    name: str
    samples_s: list[float] = field(default_factory=list)
    inner: int = 1

    @property
    def median_ms(self) -> float:
        return 1e3 * statistics.median(self.samples_s)

    @property
    def quartiles_ms(self) -> tuple[float, float]:
        if len(self.samples_s) < 2:
            return self.median_ms, self.median_ms
        q1, _, q3 = statistics.quantiles(self.samples_s, n=4, method="inclusive")
        return 1e3 * q1, 1e3 * q3

    @property
    def min_ms(self) -> float:
        return 1e3 * min(self.samples_s)

    def as_dict(self) -> dict[str, object]:
        q1, q3 = self.quartiles_ms
        return {
            "median_ms": round(self.median_ms, 4),
            "q1_ms": round(q1, 4),
            "q3_ms": round(q3, 4),
            "min_ms": round(self.min_ms, 4),
            "repeats": len(self.samples_s),
            "calls_per_sample": self.inner,
        }


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA if available, else CPU; ``cuda`` fails clearly without a GPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda was requested but torch.cuda.is_available() is False")
    return torch.device(name)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time_once(fn: Callable[[], object], inner: int, device: torch.device) -> float:
    """Seconds per call, averaged over ``inner`` back-to-back calls."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(inner):
            fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3 / inner
    start_s = time.perf_counter()
    for _ in range(inner):
        fn()
    return (time.perf_counter() - start_s) / inner


def measure(
    cases: dict[str, Callable[[], object]],
    *,
    device: torch.device,
    warmup: int,
    repeats: int,
    min_repeats: int = 3,
    max_seconds_per_case: float = math.inf,
    min_sample_s: float = 0.0,
) -> dict[str, Timing]:
    """Time every case round-robin; return a :class:`Timing` per case name.

    A case whose warm-up shows that ``repeats`` samples would take more than
    ``max_seconds_per_case`` gets fewer samples (never fewer than ``min_repeats``); it simply
    drops out of the later rounds.
    """
    timings = {name: Timing(name) for name in cases}
    planned: dict[str, int] = {}
    gc.collect()
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for name, fn in cases.items():
            estimate = math.inf
            for _ in range(max(1, warmup)):
                estimate = min(estimate, _time_once(fn, 1, device))
            inner = 1
            if device.type == "cuda" and min_sample_s > 0.0:
                inner = max(1, math.ceil(min_sample_s / max(estimate, 1e-7)))
            timings[name].inner = inner
            affordable = max_seconds_per_case / max(estimate * inner, 1e-9)
            planned[name] = max(min_repeats, min(repeats, int(min(affordable, repeats))))
        order = list(cases)
        for round_index in range(max(planned.values(), default=0)):
            # Alternate the order so that no case always runs right after the same neighbour.
            for name in order if round_index % 2 == 0 else reversed(order):
                if round_index < planned[name]:
                    timings[name].samples_s.append(_time_once(cases[name], timings[name].inner, device))
    finally:
        if gc_was_enabled:
            gc.enable()
    return timings


def paired_ratio(numerator: Timing, denominator: Timing) -> float:
    """Median over rounds of ``numerator / denominator`` (both measured by one :func:`measure`)."""
    pairs = zip(numerator.samples_s, denominator.samples_s, strict=False)
    return statistics.median(a / b for a, b in pairs)


def _busy_cpu_seconds() -> float | None:
    """CPU seconds all processes have run (Linux ``/proc/stat``), or ``None`` elsewhere."""
    try:
        with open("/proc/stat", encoding="ascii") as handle:
            fields = handle.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


class OtherLoad:
    """How many CPU cores *other* processes kept busy while a ``with`` block ran.

    A benchmark on a shared machine is only as good as the machine's quiet: this puts a number
    on it (``other_cores``; ``None`` where ``/proc/stat`` is unavailable).
    """

    def __init__(self) -> None:
        self.other_cores: float | None = None

    def __enter__(self) -> OtherLoad:
        self._start = (_busy_cpu_seconds(), _own_cpu_seconds(), time.perf_counter())
        return self

    def __exit__(self, *exc: object) -> None:
        busy, own, wall = _busy_cpu_seconds(), _own_cpu_seconds(), time.perf_counter()
        busy0, own0, wall0 = self._start
        if busy is not None and busy0 is not None and wall > wall0:
            self.other_cores = max(0.0, (busy - busy0) - (own - own0)) / (wall - wall0)


def _own_cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def describe_machine(device: torch.device) -> dict[str, object]:
    """What the numbers were measured on, for the table header and the JSON file."""
    info: dict[str, object] = {
        "date_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "device": str(device),
        "cpu_kernels": native.native_status(),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info["gpu"] = props.name
        info["gpu_memory_gib"] = round(props.total_memory / 2**30, 1)
        info["gpu_capability"] = f"{props.major}.{props.minor}"
        info["cuda"] = torch.version.cuda
    return info


def write_report(args: Any, output: dict[str, Any], *, start: float, console: Any) -> None:
    """Write ``output`` to ``args.json`` with the command-line settings (paths as strings, the
    hidden worker options left out) and the wall time since ``start``; say where it went."""
    settings = {
        k: (str(v) if isinstance(v, Path) else v)
        for k, v in vars(args).items()
        if k not in ("worker", "worker_out")
    }
    report = {**output, "settings": settings, "total_wall_s": round(time.perf_counter() - start, 1)}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    console.print(f"wrote {args.json} ({report['total_wall_s']:.0f} s)")
