"""Errors meant for users.

Anything raised as a :class:`SeqattnError` carries a complete one-line message (naming the file
and line, config key or option at fault); the CLI prints it and exits non-zero without a
traceback. Everything else is a bug and keeps its traceback.

:class:`TrainingInterrupted` is not an error: training stopped on SIGINT or SIGTERM after saving
a checkpoint; the CLI reports where and exits with ``128 + signal number`` (130, 143).
"""

from __future__ import annotations

import signal
from pathlib import Path

__all__ = ["ConfigError", "DataError", "SeqattnError", "TrainingInterrupted"]


class SeqattnError(Exception):
    """Base class: an error caused by the user's input, with a one-line message."""


class DataError(SeqattnError):
    """A corpus, file or dataset cannot be read as asked."""


class ConfigError(SeqattnError):
    """A configuration or option has a wrong key, type or value."""


class TrainingInterrupted(Exception):
    """Training stopped on a signal, after saving a state from which it resumes exactly.

    Attributes:
        signal_number: the signal received (``signal.SIGINT`` or ``signal.SIGTERM``).
        step: the optimizer updates done when training stopped.
        checkpoint: the file holding that state (``None`` in processes that save nothing).
    """

    def __init__(self, signal_number: int, *, step: int, checkpoint: Path | None) -> None:
        self.signal_number, self.step, self.checkpoint = signal_number, step, checkpoint
        name = signal.Signals(signal_number).name
        where = f"checkpoint saved to {checkpoint}" if checkpoint is not None else "checkpoint saved"
        super().__init__(f"interrupted by {name} at step {step}; {where}")

    @property
    def exit_code(self) -> int:
        """The shell's convention for a process ended by a signal: ``128 + signal number``."""
        return 128 + self.signal_number
