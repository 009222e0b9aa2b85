"""The ``seqattn`` command line: a thin click layer over the library.

Every command reports user errors (:class:`~seqattn.errors.SeqattnError`, bad options, missing
files) as one line on stderr with a non-zero exit code; ``--debug`` shows the traceback instead.
"""

from seqattn.cli.main import main

__all__ = ["main"]
