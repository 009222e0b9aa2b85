"""Running OpenNMT-py through the peers' harness (``../shared/bench/peers``) from a benchmark.

``make bench-peers`` installs the peers into ``PEERS_WORK`` (default ``/tmp/seqattn-peers``) and
runs their harness; ``same_checkpoint.py`` and ``train_rounds.py`` then call OpenNMT-py again,
through the harness's timing hook (``bench_hook.py``), with the harness's environment.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PEERS_WORK = Path("/tmp/seqattn-peers")
DEFAULT_HARNESS = ROOT.parent / "shared" / "bench" / "peers"


def logger(name: str) -> Any:
    """A ``log(message)`` printing ``[name HH:MM:SS] message`` to stderr."""

    def log(message: str) -> None:
        print(f"[{name} {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    return log


def run_onmt(
    mode: str, arguments: list[str], *, peers_work: Path, harness: Path, threads: int, record: Path, what: str
) -> list[dict[str, Any]]:
    """``onmt_<mode> ARGUMENTS`` in the peers' environment under the harness's hook; returns the
    hook's records (``record``, JSON lines). A failure exits with its last line of stderr."""
    record.unlink(missing_ok=True)
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
        "BENCH_THREADS": str(threads),
        "BENCH_LOG": str(record),
        "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1",  # OpenNMT-py checkpoints hold argparse.Namespace
    }
    command = [
        str(peers_work / "onmt" / "bin" / "python"),
        str(harness / "bench_hook.py"),
        "onmt",
        mode,
        *arguments,
    ]
    completed = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        tail = completed.stderr.strip().splitlines()[-1:] or ["(no output)"]
        raise SystemExit(f"error: OpenNMT-py's {what} failed: {tail[0]}")
    return [json.loads(line) for line in record.read_text().splitlines()]
