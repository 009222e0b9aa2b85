"""benchmarks/training_floor.py: FLOPs of a recorded matrix-multiply call, checked against the
profiler's own shapes of real calls."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from training_floor import PRODUCTS, product_flops


def test_product_flops_from_recorded_shapes() -> None:
    """mm (also into ``out``), addmm with a 1-D and a 2-D bias, addmm_, bmm and baddbmm:
    2 x batch x M x K x N each."""
    a, b = torch.randn(3, 4), torch.randn(4, 5)
    x, y = torch.randn(2, 3, 4), torch.randn(2, 4, 5)
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as profiler:
        torch.mm(a, b)
        torch.mm(a, b, out=torch.empty(3, 5))
        torch.addmm(torch.randn(5), a, b)
        torch.addmm(torch.randn(3, 5), a, b)
        torch.zeros(3, 5).addmm_(a, b)
        torch.bmm(x, y)
        torch.baddbmm(torch.randn(2, 3, 5), x, y)
    calls = [(e.name, e.input_shapes) for e in profiler.events() if e.name in PRODUCTS]
    assert [name for name, _ in calls] == [
        "aten::mm",
        "aten::mm",
        "aten::addmm",
        "aten::addmm",
        "aten::addmm_",
        "aten::bmm",
        "aten::baddbmm",
    ]
    expected = [2 * 3 * 4 * 5] * 5 + [2 * 2 * 3 * 4 * 5] * 2
    assert [product_flops(name, shapes) for name, shapes in calls] == pytest.approx(expected)
