"""seqattn: sequence-to-sequence models built around one attention core."""

__version__ = "0.1.0"

# Lazy attributes, so `seqattn --version` does not import torch or matplotlib.
_LAZY = {
    "load": "seqattn.api",
    "Translator": "seqattn.api",
    "Classifier": "seqattn.api",
    "Translation": "seqattn.api",
    "Alignment": "seqattn.api",
    "plot_alignment": "seqattn.plots",
    "plot_heads": "seqattn.plots",
    "plot_token_weights": "seqattn.plots",
    "alignment_grid": "seqattn.terminal",
    "highlight_tokens": "seqattn.terminal",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'seqattn' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
