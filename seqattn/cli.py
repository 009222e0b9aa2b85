"""The ``seqattn`` command line: a thin click layer over the library."""

from __future__ import annotations

import click

from seqattn import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", "-V", prog_name="seqattn")
def main() -> None:
    """seqattn: attention-based sequence-to-sequence models, classifiers and alignment plots."""
