"""Built-in datasets, each prepared into the standard layout (:mod:`seqattn.data.layout`).

Every module here exposes ``NAME``, ``VERSION``, ``TASK``, a one-line ``DESCRIPTION`` and::

    prepare(output_dir: Path, *, from_dir: Path | None = None, force: bool = False) -> dict

which writes ``output_dir`` (idempotent: returns the existing ``meta.json`` content when the
directory is already prepared at this version, unless ``force``) and returns the meta dict.
``from_dir`` points at local raw files instead of downloading them, where that applies.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType
from typing import Any

from seqattn.errors import DataError

__all__ = ["DATASETS", "dataset_module", "prepare"]

# name -> module under seqattn.data.builtin
DATASETS: dict[str, str] = {
    "dates": "dates",
    "movie-reviews": "movie_reviews",
    "news-topics": "news_topics",
    "multi30k": "multi30k",
}


def dataset_module(name: str) -> ModuleType:
    """The module that prepares built-in dataset ``name``."""
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; built-in datasets: {', '.join(DATASETS)}")
    return importlib.import_module(f"seqattn.data.builtin.{DATASETS[name]}")


def prepare(
    name: str,
    output_dir: str | Path,
    *,
    from_dir: str | Path | None = None,
    force: bool = False,
    **options: Any,
) -> dict[str, Any]:
    """Prepare built-in dataset ``name`` into ``output_dir``; returns its meta dict.

    ``options`` are dataset-specific keywords (``src_lang``/``tgt_lang`` for multi30k).
    """
    module = dataset_module(name)
    from_path = None if from_dir is None else Path(from_dir)
    return module.prepare(Path(output_dir), from_dir=from_path, force=force, **options)
