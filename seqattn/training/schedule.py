"""Learning-rate schedules that drive a torch optimizer.

Every schedule has the same small interface, so the trainer never asks which one it holds:

- ``lr``: the learning rate of the *next* optimizer update; it is already written into every
  param group of the optimizer (the optimizer's own ``lr`` is overwritten at construction).
- ``step()``: call once after every optimizer update; it moves to the next update's rate.
- ``report(metric)``: call after every validation; only :class:`Plateau` acts on it. It returns
  ``True`` when the report lowered the learning rate.
- ``state_dict()`` / ``load_state_dict()``: the progress only (update count, and for
  :class:`Plateau` the current rate, best metric and bad-report count) as plain Python numbers,
  so it can be saved with ``torch.save`` and read back with ``torch.load(weights_only=True)``.
  The hyperparameters come from the configuration; reloading the state into a schedule built
  from the same configuration reproduces the exact same rates.

Updates are counted from 1: the first optimizer update uses ``f(1)``, where ``f`` is the
formula given by each class. (fairseq starts at ``f(0)``, which for a warm-up from zero wastes
the first update.) Schedules with a warm-up reach their peak at update ``warmup_steps``.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch.optim import Optimizer

from seqattn.errors import ConfigError, DataError

__all__ = [
    "SCHEDULES",
    "Constant",
    "InverseSqrt",
    "Noam",
    "Plateau",
    "Schedule",
    "build_schedule",
]

StateValue = int | float | str | None


class Schedule:
    """Base class: counts updates and writes ``lr`` into the optimizer's param groups."""

    name: ClassVar[str] = ""

    def __init__(self, optimizer: Optimizer) -> None:
        self.optimizer = optimizer
        self._updates = 0
        self._apply()

    @property
    def updates(self) -> int:
        """Number of ``step()`` calls so far (optimizer updates done)."""
        return self._updates

    @property
    def lr(self) -> float:
        """Learning rate of the next optimizer update."""
        return self._lr_at(self._updates + 1)

    def step(self) -> None:
        """Record one optimizer update and set the rate of the next one."""
        self._updates += 1
        self._apply()

    def report(self, metric: float) -> bool:
        """Take a validation metric; returns whether the rate was lowered (never, here)."""
        return False

    def state_dict(self) -> dict[str, StateValue]:
        """The schedule's progress as plain Python values."""
        return {"name": self.name, "updates": self._updates}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore progress saved by :meth:`state_dict` and set the optimizer's rate.

        Raises:
            ConfigError: the state belongs to another kind of schedule.
            DataError: the state lacks a field or holds a value of the wrong type.
        """
        self._check_name(state)
        self._updates = _state_int(state, "updates")
        self._apply()

    def _check_name(self, state: Mapping[str, Any]) -> None:
        saved = state.get("name")
        if saved != self.name:
            raise ConfigError(
                f"cannot resume: the saved learning-rate schedule is {saved!r} "
                f"but the configured one is {self.name!r}"
            )

    def _lr_at(self, update: int) -> float:
        """Learning rate of update number ``update`` (counted from 1)."""
        raise NotImplementedError

    def _apply(self) -> None:
        lr = self.lr
        for group in self.optimizer.param_groups:
            if isinstance(group["lr"], torch.Tensor):  # tensor lr (capturable/fused optimizers)
                group["lr"].fill_(lr)
            else:
                group["lr"] = lr

    def __repr__(self) -> str:
        return f"{type(self).__name__}(updates={self._updates}, lr={self.lr:.6g})"


class Constant(Schedule):
    """A fixed rate, after an optional linear warm-up.

    ``f(n) = lr · min(1, n / warmup_steps)`` (``f(n) = lr`` when ``warmup_steps`` is 0).
    """

    name = "constant"

    def __init__(self, optimizer: Optimizer, *, lr: float, warmup_steps: int = 0) -> None:
        self.base_lr = _positive(self.name, "lr", lr)
        self.warmup_steps = _count(self.name, "warmup_steps", warmup_steps, minimum=0)
        super().__init__(optimizer)

    def _lr_at(self, update: int) -> float:
        return self.base_lr * _warmup(update, self.warmup_steps)


class InverseSqrt(Schedule):
    """Linear warm-up to ``peak_lr``, then decay with the inverse square root of the update.

    fairseq's ``inverse_sqrt`` (with ``warmup_init_lr = 0``)::

        f(n) = peak_lr · n / warmup_steps            for n <= warmup_steps
        f(n) = peak_lr · sqrt(warmup_steps / n)      after
    """

    name = "inverse_sqrt"

    def __init__(self, optimizer: Optimizer, *, peak_lr: float, warmup_steps: int) -> None:
        self.peak_lr = _positive(self.name, "peak_lr", peak_lr)
        self.warmup_steps = _count(self.name, "warmup_steps", warmup_steps, minimum=1)
        super().__init__(optimizer)

    def _lr_at(self, update: int) -> float:
        if update <= self.warmup_steps:
            return self.peak_lr * update / self.warmup_steps
        return self.peak_lr * math.sqrt(self.warmup_steps / update)


class Noam(Schedule):
    """The Transformer schedule of Vaswani et al. (2017), section 5.3.

    ``f(n) = factor · d_model^-0.5 · min(n^-0.5, n · warmup_steps^-1.5)``; the peak
    ``factor · (d_model · warmup_steps)^-0.5`` is reached at ``n = warmup_steps``.
    """

    name = "noam"

    def __init__(self, optimizer: Optimizer, *, d_model: int, warmup_steps: int, factor: float = 1.0) -> None:
        self.d_model = _count(self.name, "d_model", d_model, minimum=1)
        self.warmup_steps = _count(self.name, "warmup_steps", warmup_steps, minimum=1)
        self.factor = _positive(self.name, "factor", factor)
        super().__init__(optimizer)

    def _lr_at(self, update: int) -> float:
        return self.factor * self.d_model**-0.5 * min(update**-0.5, update * self.warmup_steps**-1.5)


class Plateau(Schedule):
    """A fixed rate, lowered when the validation metric stops improving.

    After every validation call :meth:`report`. A report improves on the best so far when
    ``metric < best - threshold · |best|`` (``mode="min"``) or ``metric > best + threshold · |best|``
    (``mode="max"``); a NaN metric never improves. After ``patience`` reports in a row without
    improvement the rate is multiplied by ``factor`` (never below ``min_lr``) and the count starts
    again. Unlike ``torch.optim.lr_scheduler.ReduceLROnPlateau``, which lowers the rate on the
    ``patience + 1``-th bad report, ``patience=2`` lowers it on the 2nd. The relative threshold
    uses ``|best|``, so it also behaves for negative metrics.

    ``step()`` only drives the optional linear warm-up: ``f(n) = rate · min(1, n / warmup_steps)``.
    """

    name = "plateau"

    def __init__(
        self,
        optimizer: Optimizer,
        *,
        lr: float,
        factor: float = 0.5,
        patience: int = 2,
        min_lr: float = 1e-6,
        mode: str = "min",
        threshold: float = 1e-4,
        warmup_steps: int = 0,
    ) -> None:
        self.base_lr = _positive(self.name, "lr", lr)
        self.factor = _number(self.name, "factor", factor)
        if not 0.0 < self.factor < 1.0:
            raise ConfigError(f"{_where(self.name, 'factor')} must be in (0, 1), got {factor!r}")
        self.patience = _count(self.name, "patience", patience, minimum=1)
        self.min_lr = _number(self.name, "min_lr", min_lr)
        if not 0.0 <= self.min_lr <= self.base_lr:
            raise ConfigError(f"{_where(self.name, 'min_lr')} must be in [0, lr={lr}], got {min_lr!r}")
        if mode not in ("min", "max"):
            raise ConfigError(f"{_where(self.name, 'mode')} must be 'min' or 'max', got {mode!r}")
        self.mode = mode
        self.threshold = _number(self.name, "threshold", threshold)
        if self.threshold < 0.0:
            raise ConfigError(f"{_where(self.name, 'threshold')} must be >= 0, got {threshold!r}")
        self.warmup_steps = _count(self.name, "warmup_steps", warmup_steps, minimum=0)
        self.best: float | None = None
        """Best metric reported so far (``None`` before the first report)."""
        self.bad_reports = 0
        """Reports in a row without improvement since the last improvement or reduction."""
        self.reductions = 0
        """How many times the rate has been lowered."""
        super().__init__(optimizer)

    def report(self, metric: float) -> bool:
        """Take one validation metric; returns whether it lowered the rate."""
        metric = float(metric)
        if self._improves(metric):
            self.best = metric
            self.bad_reports = 0
            return False
        self.bad_reports += 1
        if self.bad_reports < self.patience:
            return False
        self.bad_reports = 0
        lowered = max(self.base_lr * self.factor, self.min_lr)
        if lowered >= self.base_lr:  # already at the floor
            return False
        self.base_lr = lowered
        self.reductions += 1
        self._apply()
        return True

    def state_dict(self) -> dict[str, StateValue]:
        return {
            **super().state_dict(),
            "lr": self.base_lr,
            "best": self.best,
            "bad_reports": self.bad_reports,
            "reductions": self.reductions,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._check_name(state)
        base_lr = _state_float(state, "lr")
        best = None if state.get("best") is None else _state_float(state, "best")
        bad_reports = _state_int(state, "bad_reports")
        reductions = _state_int(state, "reductions")
        _state_int(state, "updates")  # validate everything before changing anything
        self.base_lr, self.best, self.bad_reports, self.reductions = base_lr, best, bad_reports, reductions
        super().load_state_dict(state)

    def _improves(self, metric: float) -> bool:
        if math.isnan(metric):
            return False
        if self.best is None:
            return True
        margin = self.threshold * abs(self.best)
        if self.mode == "min":
            return metric < self.best - margin
        return metric > self.best + margin

    def _lr_at(self, update: int) -> float:
        return self.base_lr * _warmup(update, self.warmup_steps)


SCHEDULES: dict[str, type[Schedule]] = {cls.name: cls for cls in (Constant, InverseSqrt, Noam, Plateau)}
"""Schedule classes by configuration name."""


def build_schedule(name: str, optimizer: Optimizer, **options: Any) -> Schedule:
    """Build the schedule called ``name`` (a key of :data:`SCHEDULES`) with its keyword options.

    Raises:
        ConfigError: an unknown name, an unknown or missing option, or an invalid value; the
            message names the option.
    """
    if name not in SCHEDULES:
        raise ConfigError(
            f"unknown learning-rate schedule {name!r}; choose one of {', '.join(sorted(SCHEDULES))}"
        )
    cls = SCHEDULES[name]
    parameters = {
        key: parameter
        for key, parameter in inspect.signature(cls.__init__).parameters.items()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY
    }
    unknown = sorted(set(options) - set(parameters))
    if unknown:
        raise ConfigError(
            f"learning-rate schedule {name!r} has no option {unknown[0]!r}; "
            f"its options are {', '.join(parameters)}"
        )
    missing = [
        key
        for key, parameter in parameters.items()
        if parameter.default is inspect.Parameter.empty and key not in options
    ]
    if missing:
        raise ConfigError(f"learning-rate schedule {name!r} needs option {missing[0]!r}")
    return cls(optimizer, **options)


def _warmup(update: int, warmup_steps: int) -> float:
    """Linear warm-up factor ``min(1, update / warmup_steps)`` (1 without warm-up)."""
    if warmup_steps == 0 or update >= warmup_steps:
        return 1.0
    return update / warmup_steps


def _where(schedule: str, option: str) -> str:
    return f"learning-rate schedule {schedule!r}: option {option!r}"


def _number(schedule: str, option: str, value: object) -> float:
    """``value`` as a finite float; a ConfigError naming the option otherwise."""
    if isinstance(value, str):
        hint = " (YAML reads 1e-3 as text: write 1.0e-3)" if _looks_numeric(value) else ""
        raise ConfigError(f"{_where(schedule, option)} must be a number, got the string {value!r}{hint}")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{_where(schedule, option)} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise ConfigError(f"{_where(schedule, option)} must be finite, got {value!r}")
    return float(value)


def _positive(schedule: str, option: str, value: object) -> float:
    number = _number(schedule, option, value)
    if number <= 0.0:
        raise ConfigError(f"{_where(schedule, option)} must be > 0, got {value!r}")
    return number


def _count(schedule: str, option: str, value: object, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{_where(schedule, option)} must be an integer, got {value!r}")
    if value < minimum:
        raise ConfigError(f"{_where(schedule, option)} must be >= {minimum}, got {value!r}")
    return value


def _looks_numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _state_int(state: Mapping[str, Any], key: str) -> int:
    value = state.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise DataError(f"learning-rate schedule state: {key!r} must be an integer, got {value!r}")
    return value


def _state_float(state: Mapping[str, Any], key: str) -> float:
    value = state.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DataError(f"learning-rate schedule state: {key!r} must be a number, got {value!r}")
    return float(value)
