"""Fail the install if a CUDA wheel slipped in: the constraints pin the CPU torch build."""

import sys
from importlib import metadata

bad = sorted(
    d.metadata["Name"] for d in metadata.distributions() if d.metadata["Name"].lower().startswith("nvidia")
)
if bad:
    sys.exit(f"error: CUDA packages were installed despite constraints.txt: {', '.join(bad)}")
import torch  # noqa: E402

print(f"environment ok: torch {torch.__version__}, no nvidia-* packages")
