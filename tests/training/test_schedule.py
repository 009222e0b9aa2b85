"""Learning-rate schedules: hand-computed rates, plateau reductions, exact resume, option errors."""

from __future__ import annotations

import io
import math
from typing import Any

import pytest
import torch

from seqattn.errors import ConfigError, DataError
from seqattn.training.schedule import (
    SCHEDULES,
    Constant,
    InverseSqrt,
    Noam,
    Plateau,
    Schedule,
    build_schedule,
)


def _optimizer(lr: float = 123.0) -> torch.optim.Optimizer:
    """SGD with two param groups, so that every group is checked."""
    a, b = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(3))
    return torch.optim.SGD([{"params": [a]}, {"params": [b], "lr": 7.0}], lr=lr)


def _group_lrs(optimizer: torch.optim.Optimizer) -> list[float]:
    return [group["lr"] for group in optimizer.param_groups]


def _rates(schedule: Schedule, updates: int) -> list[float]:
    """The rate the optimizer holds for updates 1..``updates`` (stepping after each)."""
    rates = []
    for _ in range(updates):
        lrs = _group_lrs(schedule.optimizer)
        assert lrs == [schedule.lr] * len(lrs)
        rates.append(schedule.lr)
        schedule.step()
    return rates


def test_inverse_sqrt_values() -> None:
    schedule = InverseSqrt(_optimizer(), peak_lr=1e-3, warmup_steps=4)
    rates = _rates(schedule, 16)
    expected = {1: 2.5e-4, 2: 5e-4, 3: 7.5e-4, 4: 1e-3, 5: 1e-3 * math.sqrt(4 / 5), 9: 1e-3 * 2 / 3, 16: 5e-4}
    for update, rate in expected.items():
        assert rates[update - 1] == pytest.approx(rate, rel=1e-12), update
    assert rates.index(max(rates)) == 3  # the peak is update 4 = warmup_steps
    assert schedule.updates == 16


def test_noam_values() -> None:
    # factor · d^-0.5 · min(n^-0.5, n · w^-1.5) with d = 16, w = 4, factor = 2: 0.5 · min(...)
    schedule = Noam(_optimizer(), d_model=16, warmup_steps=4, factor=2.0)
    rates = _rates(schedule, 16)
    assert rates[0] == pytest.approx(0.5 / 8, rel=1e-12)  # n = 1: 1 · 4^-1.5 = 1/8
    assert rates[1] == pytest.approx(0.5 * 2 / 8, rel=1e-12)
    assert rates[3] == pytest.approx(0.25, rel=1e-12)  # n = 4: both terms are 1/2
    assert rates[8] == pytest.approx(0.5 / 3, rel=1e-12)  # n = 9: 9^-0.5
    assert rates[15] == pytest.approx(0.125, rel=1e-12)  # n = 16: 16^-0.5
    assert rates.index(max(rates)) == 3


def test_constant_with_and_without_warmup() -> None:
    assert _rates(Constant(_optimizer(), lr=0.5), 3) == [0.5, 0.5, 0.5]
    warm = _rates(Constant(_optimizer(), lr=1.0, warmup_steps=4), 6)
    assert warm == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert Constant(_optimizer(), lr=1.0).report(3.0) is False


def test_construction_overwrites_the_optimizer_rate() -> None:
    optimizer = _optimizer(lr=123.0)
    Noam(optimizer, d_model=16, warmup_steps=4)
    assert _group_lrs(optimizer) == pytest.approx([0.25 / 8, 0.25 / 8])


def test_tensor_learning_rates_stay_tensors() -> None:
    parameter = torch.nn.Parameter(torch.zeros(2))
    optimizer = torch.optim.Adam([parameter], lr=torch.tensor(0.01))
    schedule = Constant(optimizer, lr=0.5, warmup_steps=2)
    schedule.step()
    lr = optimizer.param_groups[0]["lr"]
    assert isinstance(lr, torch.Tensor) and lr.item() == 0.5


def test_plateau_min_mode_reduces_after_patience_bad_reports_down_to_min_lr() -> None:
    schedule = Plateau(_optimizer(), lr=1.0, factor=0.5, patience=2, min_lr=0.2, mode="min")
    reports = [10.0, 9.0, 9.5, 9.2, 9.1, 9.05, 8.0, 8.5, 8.5, 8.0, 8.0, 9.0, 9.0]
    lowered = [schedule.report(metric) for metric in reports]
    rates = []
    schedule2 = Plateau(_optimizer(), lr=1.0, factor=0.5, patience=2, min_lr=0.2, mode="min")
    for metric in reports:
        schedule2.report(metric)
        rates.append(schedule2.lr)
    # 10 best, 9 best, 9.5 bad, 9.2 bad -> 0.5, 9.1 bad, 9.05 bad -> 0.25, 8 best, 8.5 bad,
    # 8.5 bad -> max(0.125, 0.2) = 0.2, 8 bad (not below 8), 8 bad -> already at the floor, ...
    assert rates == [1.0, 1.0, 1.0, 0.5, 0.5, 0.25, 0.25, 0.25, 0.2, 0.2, 0.2, 0.2, 0.2]
    assert lowered == [False, False, False, True, False, True, False, False, True, False, False, False, False]
    assert schedule.reductions == 3 and schedule.best == 8.0
    assert _group_lrs(schedule.optimizer) == [0.2, 0.2]


def test_plateau_max_mode() -> None:
    schedule = Plateau(_optimizer(), lr=0.1, factor=0.1, patience=1, min_lr=1e-4, mode="max")
    rates = []
    for metric in [20.0, 25.0, 24.0, 26.0, 26.0, 10.0, 30.0]:
        schedule.report(metric)
        rates.append(schedule.lr)
    assert rates == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001, 0.0001, 0.0001], rel=1e-12)
    assert schedule.best == 30.0


def test_plateau_threshold_is_relative_to_the_magnitude_of_best() -> None:
    schedule = Plateau(_optimizer(), lr=1.0, patience=1, threshold=0.1, mode="min")
    schedule.report(10.0)
    assert schedule.report(9.5) is True  # needs < 9: not an improvement
    schedule = Plateau(_optimizer(), lr=1.0, patience=1, threshold=0.1, mode="min")
    schedule.report(-10.0)
    assert schedule.report(-10.5) is True  # needs < -11
    assert schedule.report(-11.5) is False and schedule.best == -11.5
    schedule = Plateau(_optimizer(), lr=1.0, patience=1, threshold=0.1, mode="max")
    schedule.report(-10.0)
    assert schedule.report(-9.5) is True  # needs > -9


def test_plateau_nan_is_never_an_improvement() -> None:
    schedule = Plateau(_optimizer(), lr=1.0, patience=2)
    assert schedule.report(float("nan")) is False and schedule.best is None
    assert schedule.report(float("nan")) is True
    assert schedule.report(5.0) is False and schedule.best == 5.0


def test_plateau_step_only_drives_the_warmup() -> None:
    assert _rates(Plateau(_optimizer(), lr=0.3), 3) == [0.3, 0.3, 0.3]
    schedule = Plateau(_optimizer(), lr=1.0, patience=1, warmup_steps=4)
    assert _rates(schedule, 2) == [0.25, 0.5]
    schedule.report(1.0)
    schedule.report(2.0)  # halves the rate during the warm-up
    assert _rates(schedule, 3) == [0.375, 0.5, 0.5]


def _drive(schedule: Schedule, updates: range, reports: list[float]) -> list[float]:
    """Run ``updates``, reporting the next of ``reports`` after every 3rd one; the rates used."""
    rates = []
    for update in updates:
        rates.append(schedule.optimizer.param_groups[0]["lr"])
        schedule.step()
        if update % 3 == 2 and reports:
            schedule.report(reports.pop(0))
    return rates


SETTINGS: dict[str, dict[str, Any]] = {
    "constant": {"lr": 0.1, "warmup_steps": 5},
    "inverse_sqrt": {"peak_lr": 5e-4, "warmup_steps": 7},
    "noam": {"d_model": 32, "warmup_steps": 6, "factor": 2.0},
    "plateau": {"lr": 0.1, "patience": 1, "factor": 0.7, "min_lr": 1e-3, "warmup_steps": 4},
}


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_state_dict_round_trip_resumes_exactly(name: str) -> None:
    metrics = [5.0, 4.0, 4.5, 4.2, 3.0, 3.5, 3.9, 3.1, 2.0, 2.5, 2.6, 2.7, 2.8, 2.9, 3.0]
    straight = build_schedule(name, _optimizer(), **SETTINGS[name])
    expected = _drive(straight, range(40), list(metrics))

    first = build_schedule(name, _optimizer(), **SETTINGS[name])
    remaining = list(metrics)
    head = _drive(first, range(20), remaining)
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    assert all(isinstance(value, (int, float, str, type(None))) for value in state.values())

    resumed = build_schedule(name, _optimizer(lr=999.0), **SETTINGS[name])
    resumed.load_state_dict(state)
    assert resumed.optimizer.param_groups[0]["lr"] == first.lr
    tail = _drive(resumed, range(20, 40), remaining)
    assert head + tail == expected  # bitwise equal


def test_plateau_state_holds_its_progress() -> None:
    schedule = Plateau(_optimizer(), lr=1.0, patience=2)
    for metric in (3.0, 2.0, 2.5, 2.6, 2.7):
        schedule.report(metric)
    schedule.step()
    assert schedule.state_dict() == {
        "name": "plateau",
        "updates": 1,
        "lr": 0.5,
        "best": 2.0,
        "bad_reports": 1,
        "reductions": 1,
    }


def test_loading_another_schedule_state_is_a_config_error() -> None:
    state = Noam(_optimizer(), d_model=8, warmup_steps=2).state_dict()
    with pytest.raises(
        ConfigError, match="saved learning-rate schedule is 'noam' but the configured one is 'plateau'"
    ):
        Plateau(_optimizer(), lr=1.0).load_state_dict(state)


def test_malformed_state_is_a_data_error_and_changes_nothing() -> None:
    schedule = Plateau(_optimizer(), lr=1.0)
    state = schedule.state_dict()
    with pytest.raises(DataError, match="'updates' must be an integer"):
        schedule.load_state_dict({**state, "lr": 0.5, "updates": "3"})
    assert schedule.lr == 1.0


def test_build_schedule_by_name() -> None:
    assert set(SCHEDULES) == {"constant", "inverse_sqrt", "noam", "plateau"}
    for name, options in SETTINGS.items():
        schedule = build_schedule(name, _optimizer(), **options)
        assert isinstance(schedule, SCHEDULES[name]) and schedule.name == name


def test_build_schedule_unknown_name() -> None:
    with pytest.raises(
        ConfigError, match="unknown learning-rate schedule 'cosine'; choose one of constant, inverse_sqrt"
    ):
        build_schedule("cosine", _optimizer(), lr=1.0)


def test_build_schedule_unknown_and_missing_options() -> None:
    with pytest.raises(
        ConfigError, match="'noam' has no option 'peak_lr'; its options are d_model, warmup_steps, factor"
    ):
        build_schedule("noam", _optimizer(), peak_lr=1.0, d_model=8, warmup_steps=4)
    with pytest.raises(ConfigError, match="'inverse_sqrt' needs option 'warmup_steps'"):
        build_schedule("inverse_sqrt", _optimizer(), peak_lr=1e-3)


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("constant", {"lr": 0.0}, "option 'lr' must be > 0, got 0.0"),
        ("constant", {"lr": -1.0}, "option 'lr' must be > 0"),
        ("constant", {"lr": float("inf")}, "option 'lr' must be finite"),
        ("constant", {"lr": True}, "option 'lr' must be a number, got True"),
        ("constant", {"lr": "1e-3"}, r"got the string '1e-3' \(YAML reads 1e-3 as text: write 1.0e-3\)"),
        ("constant", {"lr": 1.0, "warmup_steps": -1}, "option 'warmup_steps' must be >= 0, got -1"),
        ("constant", {"lr": 1.0, "warmup_steps": 2.5}, "option 'warmup_steps' must be an integer, got 2.5"),
        ("inverse_sqrt", {"peak_lr": 1e-3, "warmup_steps": 0}, "option 'warmup_steps' must be >= 1, got 0"),
        ("noam", {"d_model": 0, "warmup_steps": 4}, "option 'd_model' must be >= 1"),
        ("noam", {"d_model": 8, "warmup_steps": 4, "factor": 0}, "option 'factor' must be > 0"),
        ("plateau", {"lr": 1.0, "factor": 1.0}, r"option 'factor' must be in \(0, 1\), got 1.0"),
        ("plateau", {"lr": 1.0, "factor": 0.0}, r"option 'factor' must be in \(0, 1\)"),
        ("plateau", {"lr": 1.0, "patience": 0}, "option 'patience' must be >= 1"),
        ("plateau", {"lr": 1e-3, "min_lr": 1e-2}, r"option 'min_lr' must be in \[0, lr=0.001\]"),
        ("plateau", {"lr": 1.0, "min_lr": -1.0}, "option 'min_lr' must be in"),
        ("plateau", {"lr": 1.0, "mode": "median"}, "option 'mode' must be 'min' or 'max', got 'median'"),
        ("plateau", {"lr": 1.0, "threshold": -0.1}, "option 'threshold' must be >= 0"),
    ],
)
def test_build_schedule_rejects_bad_values(name: str, options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        build_schedule(name, _optimizer(), **options)
    assert f"learning-rate schedule {name!r}" in str(caught.value)
    assert "\n" not in str(caught.value)
