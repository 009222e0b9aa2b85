"""The README's Python example runs (against a tiny trained model instead of the dates one)."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def python_example() -> str:
    text = README.read_text(encoding="utf-8")
    marker = text.index("this example is run by tests/test_readme.py")
    match = re.compile(r"```python\n(.*?)```", re.DOTALL).search(text, marker)
    assert match is not None
    return match.group(1)


def test_readme_python_example_runs(
    translator_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the example writes its plots to the working directory
    code = python_example()
    assert 'seqattn.load("runs/dates-transformer")' in code
    code = code.replace("runs/dates-transformer", str(translator_dir))
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code, str(README), "exec"), {})
    lines = printed.getvalue().splitlines()
    assert lines[0].endswith(", '']")  # the empty input got an empty answer
    assert len(lines) == 6
    assert lines[4].startswith("torch.Size([2, 4, ")  # the fixture: 2 decoder layers x 4 heads
    assert (tmp_path / "attention.png").stat().st_size > 1000
    assert b"<svg" in (tmp_path / "heads.svg").read_bytes()[:3000]
