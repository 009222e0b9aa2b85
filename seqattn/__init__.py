"""seqattn: sequence-to-sequence models built around one attention core."""

__version__ = "0.1.0"


def __getattr__(name: str):  # lazy, so `seqattn --version` does not import torch
    if name == "load":
        from seqattn.api import load

        return load
    raise AttributeError(f"module 'seqattn' has no attribute {name!r}")
