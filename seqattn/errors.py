"""Errors meant for users.

Anything raised as a :class:`SeqattnError` carries a complete one-line message (naming the file
and line, config key or option at fault); the CLI prints it and exits non-zero without a
traceback. Everything else is a bug and keeps its traceback.
"""

from __future__ import annotations

__all__ = ["ConfigError", "DataError", "SeqattnError"]


class SeqattnError(Exception):
    """Base class: an error caused by the user's input, with a one-line message."""


class DataError(SeqattnError):
    """A corpus, file or dataset cannot be read as asked."""


class ConfigError(SeqattnError):
    """A configuration or option has a wrong key, type or value."""
