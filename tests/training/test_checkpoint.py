"""Atomic checkpoints, safe loading, retention and recovery of the index, and averaging."""

from __future__ import annotations

import json
import os
import pickle
import struct
import zipfile
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from seqattn.errors import ConfigError, DataError
from seqattn.training import checkpoint as checkpoint_module
from seqattn.training.checkpoint import (
    CheckpointEntry,
    CheckpointManager,
    average_checkpoints,
    load_checkpoint,
    save_checkpoint,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def _state(seed: int = 0) -> dict[str, Any]:
    torch.manual_seed(seed)
    model = nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.98))
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    return {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "schedule": {"name": "noam", "updates": seed, "best": None},
        "rng": {"torch": torch.get_rng_state(), "python": (3, tuple(range(5)), None)},
        "misc": [1, 2.5, "x", b"y", {1, 2}, 1j, torch.float16, torch.device("cpu"), torch.Size([2, 3])],
    }


def _assert_same(a: Any, b: Any) -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    elif isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b)
        for key in a:
            _assert_same(a[key], b[key])
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            _assert_same(x, y)
    else:
        assert a == b


def _files(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.iterdir())


# --------------------------------------------------------------------------- save and load


def test_round_trip(tmp_path: Path) -> None:
    state = _state()
    save_checkpoint(tmp_path / "sub" / "a.pt", state)
    _assert_same(state, load_checkpoint(tmp_path / "sub" / "a.pt"))
    _assert_same(state, load_checkpoint(str(tmp_path / "sub" / "a.pt")))
    assert _files(tmp_path / "sub") == ["a.pt"]


def test_an_exception_inside_the_write_keeps_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "a.pt"
    save_checkpoint(path, _state(1))
    before = path.read_bytes()
    real_save = torch.save

    def crash_midway(obj: Any, handle: Any, *args: Any, **kwargs: Any) -> None:
        real_save(obj, handle, *args, **kwargs)  # the whole checkpoint reaches the temporary file...
        handle.seek(0)
        handle.truncate(100)  # ...then it is cut short and the process "dies"
        raise RuntimeError("disk full")

    monkeypatch.setattr(torch, "save", crash_midway)
    with pytest.raises(RuntimeError, match="disk full"):
        save_checkpoint(path, _state(2))
    assert path.read_bytes() == before
    assert _files(tmp_path) == ["a.pt"]  # no temporary file left


def test_an_interrupt_during_the_write_keeps_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "a.pt"
    save_checkpoint(path, _state(1))
    before = path.read_bytes()

    def interrupted(obj: Any, handle: Any, *args: Any, **kwargs: Any) -> None:
        handle.write(b"PK\x03\x04 half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, _state(2))
    assert path.read_bytes() == before
    _assert_same(load_checkpoint(path), _state(1))
    assert _files(tmp_path) == ["a.pt"]


def test_state_that_weights_only_loading_refuses_is_rejected_before_writing(tmp_path: Path) -> None:
    from collections import defaultdict

    with pytest.raises(
        TypeError, match=r"checkpoint state\['rng'\]\['counts'\] is a collections.defaultdict"
    ):
        save_checkpoint(tmp_path / "a.pt", {"rng": {"counts": defaultdict(int)}})
    with pytest.raises(TypeError, match=r"state\['lr'\] is a numpy.float64"):
        import numpy as np

        save_checkpoint(tmp_path / "a.pt", {"lr": np.float64(0.1)})
    with pytest.raises(TypeError, match="must be a dict"):
        save_checkpoint(tmp_path / "a.pt", [1, 2])  # type: ignore[arg-type]
    assert _files(tmp_path) == []


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=f"checkpoint {tmp_path / 'nope.pt'} does not exist"):
        load_checkpoint(tmp_path / "nope.pt")
    with pytest.raises(DataError, match="is a directory, not a file"):
        load_checkpoint(tmp_path)


def _corrupt_data_pickle(source: Path, target: Path) -> None:
    """Rewrite a torch zip checkpoint with its data.pkl record cut in half (CRCs still valid)."""
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as copy:
        for item in original.infolist():
            data = original.read(item.filename)
            if item.filename.endswith("data.pkl"):
                data = data[: len(data) // 2]
            copy.writestr(item, data)


@pytest.mark.parametrize(
    "damage", ["truncated", "empty", "garbage", "cut-pickle", "legacy-cut", "flipped-bit"]
)
def test_truncated_or_corrupt_files(tmp_path: Path, damage: str) -> None:
    good = tmp_path / "good.pt"
    save_checkpoint(good, _state())
    path = tmp_path / "bad.pt"
    if damage == "truncated":
        path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "garbage":
        path.write_bytes(b"hello, this is not a checkpoint at all")
    elif damage == "flipped-bit":
        data = bytearray(good.read_bytes())
        with zipfile.ZipFile(good) as archive:
            record = archive.getinfo(next(name for name in archive.namelist() if name.endswith("data/0")))
        name_length, extra_length = struct.unpack(
            "<HH", data[record.header_offset + 26 : record.header_offset + 30]
        )
        data[record.header_offset + 30 + name_length + extra_length + 1] ^= 0x01  # in the tensor's bytes
        path.write_bytes(bytes(data))
        assert load_checkpoint(path, verify=False)  # torch.load itself does not notice
    elif damage == "cut-pickle":
        _corrupt_data_pickle(good, path)
    else:
        path.write_bytes(pickle.dumps({"a": [1, 2, 3]}, protocol=2)[:-4])
    with pytest.raises(DataError, match="truncated or corrupt checkpoint") as caught:
        load_checkpoint(path)
    message = str(caught.value)
    assert str(path) in message and "\n" not in message


class _Planted:
    """Unpickling this creates the file at ``marker`` (it calls ``open(marker, "w")``)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.marker), "w"))


def test_the_planted_pickle_really_runs_code_when_unpickled_unsafely(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    pickle.loads(pickle.dumps(_Planted(marker))).close()
    assert marker.exists()


@pytest.mark.parametrize("container", ["torch.save", "pickle.dump"])
def test_a_malicious_pickle_is_refused_and_never_run(tmp_path: Path, container: str) -> None:
    marker = tmp_path / "marker"
    path = tmp_path / "evil.pt"
    payload = {"model": {"weight": torch.ones(2)}, "hook": _Planted(marker)}
    if container == "torch.save":
        torch.save(payload, path)
    else:
        with path.open("wb") as handle:
            pickle.dump(payload, handle)
    with pytest.raises(DataError) as caught:
        load_checkpoint(path)
    message = str(caught.value)
    assert message.startswith(
        f"refusing to load {path}: it contains objects other than tensors and plain data"
    )
    assert "(unsafe pickle" in message and "\n" not in message
    assert not marker.exists()


def test_torch_save_payload_names_the_refused_global(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"hook": _Planted(tmp_path / "marker")}, path)
    with pytest.raises(DataError, match="open"):
        load_checkpoint(path)


def test_a_checkpoint_must_hold_a_dict(tmp_path: Path) -> None:
    path = tmp_path / "list.pt"
    torch.save([torch.ones(1)], path)
    with pytest.raises(DataError, match="holds a list, not a dict"):
        load_checkpoint(path)


# --------------------------------------------------------------------------- retention


def _tiny(value: float) -> dict[str, Any]:
    return {"model": {"w": torch.full((2,), value)}}


def _steps(manager: CheckpointManager) -> list[int]:
    return [entry.step for entry in manager.entries()]


def _index(directory: Path) -> dict[str, Any]:
    return json.loads((directory / "checkpoints.json").read_text())


def _loaded_value(path: Path) -> float:
    return load_checkpoint(path)["model"]["w"][0].item()


def test_retention_in_max_mode(tmp_path: Path) -> None:
    manager = CheckpointManager(tmp_path, keep_best=2, keep_last=1, mode="max")
    metrics = {100: 1.0, 200: 5.0, 300: 3.0, 400: 4.0, 500: 2.0, 600: 0.0}
    kept = []
    for step, metric in metrics.items():
        path = manager.save(step, _tiny(metric), metric=metric)
        assert path == tmp_path / f"step_{step:08d}.pt"
        kept.append(_steps(manager))
    assert kept == [[100], [100, 200], [200, 300], [200, 400], [200, 400, 500], [200, 400, 600]]
    assert _files(tmp_path) == [
        "best.pt",
        "checkpoints.json",
        "last.pt",
        "step_00000200.pt",
        "step_00000400.pt",
        "step_00000600.pt",
    ]
    assert manager.best() == tmp_path / "step_00000200.pt"
    assert manager.last() == tmp_path / "step_00000600.pt"
    assert _loaded_value(tmp_path / "best.pt") == 5.0
    assert _loaded_value(tmp_path / "last.pt") == 0.0
    assert _index(tmp_path) == {
        "version": 1,
        "mode": "max",
        "entries": [
            {"step": 200, "path": "step_00000200.pt", "metric": 5.0},
            {"step": 400, "path": "step_00000400.pt", "metric": 4.0},
            {"step": 600, "path": "step_00000600.pt", "metric": 0.0},
        ],
    }


def test_retention_in_min_mode_with_ties_and_missing_metrics(tmp_path: Path) -> None:
    manager = CheckpointManager(tmp_path, keep_best=1, keep_last=2, mode="min")
    for step, metric in [(1, 3.0), (2, 2.0), (3, None), (4, 2.0), (5, float("nan")), (6, 2.5)]:
        manager.save(step, _tiny(step), metric=metric)
    # best: step 2 (2.0, earlier than the tie at step 4); last two: 5 and 6
    assert _steps(manager) == [2, 5, 6]
    assert [entry.metric for entry in manager.entries()] == [2.0, None, 2.5]
    assert manager.best() == tmp_path / "step_00000002.pt"
    assert _loaded_value(tmp_path / "best.pt") == 2.0
    assert manager.last_k(2) == [tmp_path / "step_00000005.pt", tmp_path / "step_00000006.pt"]
    assert manager.last_k(10) == [entry.path for entry in manager.entries()]
    assert manager.last_k(0) == []


def test_keep_best_zero_keeps_only_the_latest(tmp_path: Path) -> None:
    manager = CheckpointManager(tmp_path, keep_best=0, keep_last=2)
    for step in range(1, 5):
        manager.save(step, _tiny(step), metric=float(10 - step))
    assert _steps(manager) == [3, 4]
    assert not (tmp_path / "best.pt").exists()


def test_no_metric_yet_means_no_best(tmp_path: Path) -> None:
    manager = CheckpointManager(tmp_path)
    manager.save(1, _tiny(1), metric=None)
    assert manager.best() is None and manager.last() == tmp_path / "step_00000001.pt"
    assert not (tmp_path / "best.pt").exists()


def test_aliases_are_hard_links(tmp_path: Path) -> None:
    manager = CheckpointManager(tmp_path, keep_best=1, keep_last=1)
    manager.save(1, _tiny(1), metric=9.0)
    manager.save(2, _tiny(2), metric=1.0)
    assert os.path.samefile(tmp_path / "best.pt", tmp_path / "step_00000001.pt")
    assert os.path.samefile(tmp_path / "last.pt", tmp_path / "step_00000002.pt")


def test_aliases_fall_back_to_copies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_links(source: Any, target: Any) -> None:
        raise OSError("hard links not supported")

    monkeypatch.setattr(os, "link", no_links)
    manager = CheckpointManager(tmp_path, keep_best=1, keep_last=1)
    for step, metric in [(1, 1.0), (2, 3.0), (3, 2.0)]:
        manager.save(step, _tiny(step), metric=metric)
    assert not os.path.samefile(tmp_path / "best.pt", tmp_path / "step_00000002.pt")
    assert (tmp_path / "best.pt").read_bytes() == (tmp_path / "step_00000002.pt").read_bytes()
    assert (tmp_path / "last.pt").read_bytes() == (tmp_path / "step_00000003.pt").read_bytes()
    assert not [name for name in _files(tmp_path) if name.endswith(".tmp")]


def test_files_are_deleted_only_after_the_index_stops_listing_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    deleted = []
    real_delete = checkpoint_module._delete

    def checked_delete(path: Path) -> None:
        assert path.name not in {entry["path"] for entry in _index(tmp_path)["entries"]}
        deleted.append(path.name)
        real_delete(path)

    monkeypatch.setattr(checkpoint_module, "_delete", checked_delete)
    manager = CheckpointManager(tmp_path, keep_best=1, keep_last=1)
    for step in range(1, 5):
        manager.save(step, _tiny(step), metric=float(step % 2))
    assert deleted == ["step_00000002.pt", "step_00000003.pt"]


def test_a_failed_checkpoint_write_leaves_the_index_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manager = CheckpointManager(tmp_path)
    manager.save(1, _tiny(1), metric=1.0)
    before = _index(tmp_path)

    def failing(obj: Any, handle: Any, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(torch, "save", failing)
    with pytest.raises(RuntimeError):
        manager.save(2, _tiny(2), metric=2.0)
    assert _index(tmp_path) == before and _steps(manager) == [1]
    assert _files(tmp_path) == ["best.pt", "checkpoints.json", "last.pt", "step_00000001.pt"]


def test_reload_resumes_the_index(tmp_path: Path) -> None:
    first = CheckpointManager(tmp_path, keep_best=2, keep_last=1)
    for step, metric in [(10, 1.0), (20, 4.0), (30, 2.0)]:
        first.save(step, _tiny(step), metric=metric)
    second = CheckpointManager(tmp_path, keep_best=2, keep_last=1)
    assert second.entries() == first.entries()
    assert second.best() == first.best() and second.last() == first.last()
    second.save(40, _tiny(40), metric=3.0)
    assert _steps(second) == [20, 40]  # 4.0 and 3.0 are the best two; 40 is also the last
    assert _loaded_value(tmp_path / "last.pt") == 40.0


def test_entries_whose_file_is_missing_are_dropped(tmp_path: Path) -> None:
    first = CheckpointManager(tmp_path, keep_best=2, keep_last=1)
    for step, metric in [(1, 5.0), (2, 4.0), (3, 1.0)]:
        first.save(step, _tiny(step), metric=metric)
    (tmp_path / "step_00000001.pt").unlink()
    second = CheckpointManager(tmp_path, keep_best=2, keep_last=1)
    assert _steps(second) == [2, 3]
    assert second.best() == tmp_path / "step_00000002.pt"
    second.save(4, _tiny(4), metric=0.5)
    assert _steps(second) == [2, 3, 4]


def test_a_corrupt_index_is_rebuilt_from_the_files(tmp_path: Path) -> None:
    first = CheckpointManager(tmp_path, keep_best=1, keep_last=1)
    for step, metric in [(1, 5.0), (2, 4.0)]:
        first.save(step, _tiny(step), metric=metric)
    (tmp_path / "checkpoints.json").write_text('{"version": 1, "mode": "max", "entr')
    with pytest.warns(UserWarning, match="unreadable checkpoint index"):
        second = CheckpointManager(tmp_path, keep_best=1, keep_last=1)
    assert second.entries() == [
        CheckpointEntry(step=1, path=tmp_path / "step_00000001.pt", metric=None, recovered=True),
        CheckpointEntry(step=2, path=tmp_path / "step_00000002.pt", metric=None, recovered=True),
    ]
    assert second.best() is None and second.last() == tmp_path / "step_00000002.pt"
    for step in (3, 4):
        second.save(step, _tiny(step), metric=1.0)
    assert _steps(second) == [1, 2, 3, 4]  # recovered files are never deleted by retention
    assert _index(tmp_path)["entries"][0] == {
        "step": 1,
        "path": "step_00000001.pt",
        "metric": None,
        "recovered": True,
    }
    third = CheckpointManager(tmp_path, keep_best=1, keep_last=1)
    assert third.entries() == second.entries()


def test_an_index_pointing_outside_the_directory_is_not_trusted(tmp_path: Path) -> None:
    directory = tmp_path / "ckpt"
    outside = tmp_path / "precious.txt"
    outside.write_text("keep me")
    manager = CheckpointManager(directory)
    manager.save(1, _tiny(1), metric=1.0)
    document = _index(directory)
    document["entries"].insert(0, {"step": 0, "path": "../precious.txt", "metric": 0.0})
    (directory / "checkpoints.json").write_text(json.dumps(document))
    with pytest.warns(UserWarning, match="does not match step 0"):
        manager = CheckpointManager(directory)
    manager.save(2, _tiny(2), metric=2.0)
    assert outside.read_text() == "keep me"


def test_a_checkpoint_written_before_a_crash_is_adopted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manager = CheckpointManager(tmp_path)
    manager.save(1, _tiny(1), metric=1.0)

    def crash(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint_module, "atomic_write_text", crash)  # dies before the index write
    with pytest.raises(KeyboardInterrupt):
        manager.save(2, _tiny(2), metric=2.0)
    monkeypatch.undo()
    assert [entry["step"] for entry in _index(tmp_path)["entries"]] == [1]
    resumed = CheckpointManager(tmp_path)
    assert resumed.last() == tmp_path / "step_00000002.pt"
    assert resumed.entries()[-1].recovered


def test_temporaries_from_a_hard_kill_are_removed(tmp_path: Path) -> None:
    leftovers = [
        ".step_00000003.pt.abc123.tmp",
        ".checkpoints.json.x1.tmp",
        ".best.pt.ff.tmp",
        ".last.pt.0.tmp",
    ]
    for name in [*leftovers, ".unrelated.tmp", "notes.txt"]:
        (tmp_path / name).write_bytes(b"partial")
    manager = CheckpointManager(tmp_path)
    assert manager.entries() == []
    assert _files(tmp_path) == [".unrelated.tmp", "notes.txt"]


def test_saving_an_earlier_step_replaces_the_abandoned_future(tmp_path: Path) -> None:
    manager = CheckpointManager(tmp_path, keep_best=1, keep_last=3)
    for step, metric in [(1, 1.0), (2, 5.0), (3, 2.0), (4, 3.0)]:
        manager.save(step, _tiny(step), metric=metric)
    assert _steps(manager) == [2, 3, 4]
    manager.save(3, _tiny(30), metric=0.0)  # a run resumed from step 2
    assert _steps(manager) == [2, 3]
    assert not (tmp_path / "step_00000004.pt").exists()
    assert _loaded_value(tmp_path / "last.pt") == 30.0
    assert _loaded_value(tmp_path / "best.pt") == 2.0


def test_a_mode_change_is_a_config_error(tmp_path: Path) -> None:
    CheckpointManager(tmp_path, mode="max").save(1, _tiny(1), metric=1.0)
    with pytest.raises(
        ConfigError, match="written with mode 'max' but this checkpoint manager has mode 'min'"
    ):
        CheckpointManager(tmp_path, mode="min")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"keep_best": -1}, "keep_best must be an integer >= 0"),
        ({"keep_last": 0}, "keep_last must be an integer >= 1"),
        ({"keep_last": 1.5}, "keep_last must be an integer >= 1"),
        ({"mode": "best"}, "mode must be 'max' or 'min', got 'best'"),
    ],
)
def test_manager_option_errors(tmp_path: Path, options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        CheckpointManager(tmp_path, **options)


# --------------------------------------------------------------------------- averaging


def _linear_checkpoint(path: Path, seed: int, *, counter: int = 7) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    weights = dict(nn.Linear(3, 2).state_dict())
    weights["counter"] = torch.tensor(counter)
    weights["flags"] = torch.tensor([True, False])
    save_checkpoint(path, {"model": weights, "step": seed})
    return weights


def test_average_of_two_linear_layers(tmp_path: Path) -> None:
    a = _linear_checkpoint(tmp_path / "a.pt", 0)
    b = _linear_checkpoint(tmp_path / "b.pt", 1)
    average = average_checkpoints([tmp_path / "a.pt", str(tmp_path / "b.pt")])
    assert list(average) == list(a)
    for name in ("weight", "bias"):
        expected = ((a[name].double() + b[name].double()) / 2).float()
        assert average[name].dtype == torch.float32
        assert torch.equal(average[name], expected)
    assert torch.equal(average["counter"], torch.tensor(7))
    assert torch.equal(average["flags"], torch.tensor([True, False]))


def test_average_accumulates_in_float64(tmp_path: Path) -> None:
    values = [2.0**24, 1.0, 1.0]  # float32 sums: 2^24 + 1 rounds back to 2^24
    for index, value in enumerate(values):
        save_checkpoint(
            tmp_path / f"{index}.pt", {"model": {"w": torch.tensor([value], dtype=torch.float32)}}
        )
    average = average_checkpoints([tmp_path / f"{index}.pt" for index in range(3)])
    assert average["w"].item() == torch.tensor((2.0**24 + 2) / 3, dtype=torch.float32).item()
    naive = sum(torch.tensor([value], dtype=torch.float32) for value in values) / 3
    assert average["w"].item() != naive.item()


def test_average_keeps_low_precision_dtypes(tmp_path: Path) -> None:
    for index, value in enumerate([1.0, 2.0]):
        save_checkpoint(
            tmp_path / f"{index}.pt", {"model": {"w": torch.full((3,), value, dtype=torch.bfloat16)}}
        )
    average = average_checkpoints([tmp_path / "0.pt", tmp_path / "1.pt"])
    assert average["w"].dtype == torch.bfloat16 and average["w"].tolist() == [1.5, 1.5, 1.5]


def test_average_takes_the_last_integer_buffer(tmp_path: Path) -> None:
    _linear_checkpoint(tmp_path / "a.pt", 0, counter=3)
    _linear_checkpoint(tmp_path / "b.pt", 1, counter=9)
    assert average_checkpoints([tmp_path / "a.pt", tmp_path / "b.pt"])["counter"].item() == 9
    assert average_checkpoints([tmp_path / "b.pt", tmp_path / "a.pt"])["counter"].item() == 3


def test_average_of_manager_files(tmp_path: Path) -> None:
    manager = CheckpointManager(tmp_path, keep_best=0, keep_last=3)
    for step in range(1, 6):
        manager.save(step, _tiny(float(step)), metric=None)
    average = average_checkpoints(manager.last_k(3))
    assert average["w"].tolist() == [4.0, 4.0]


def test_average_errors(tmp_path: Path) -> None:
    _linear_checkpoint(tmp_path / "a.pt", 0)
    save_checkpoint(
        tmp_path / "renamed.pt", {"model": {"weight": torch.zeros(2, 3), "offset": torch.zeros(2)}}
    )
    save_checkpoint(
        tmp_path / "wide.pt", {"model": {**_linear_checkpoint(tmp_path / "c.pt", 2), "bias": torch.zeros(4)}}
    )
    save_checkpoint(tmp_path / "no_model.pt", {"weights": {}})
    with pytest.raises(
        DataError, match=r"cannot average .*renamed.pt with .*a.pt: 'bias' is only in .*a.pt's 'model'"
    ):
        average_checkpoints([tmp_path / "a.pt", tmp_path / "renamed.pt"])
    with pytest.raises(
        DataError, match=r"'bias' is \(4,\) torch.float32 there but \(2,\) torch.float32 in the first"
    ):
        average_checkpoints([tmp_path / "a.pt", tmp_path / "wide.pt"])
    with pytest.raises(DataError, match=r"no_model.pt has no 'model' entry \(it has 'weights'\)"):
        average_checkpoints([tmp_path / "no_model.pt"])
    with pytest.raises(DataError, match="does not exist"):
        average_checkpoints([tmp_path / "a.pt", tmp_path / "missing.pt"])
    with pytest.raises(ConfigError, match="at least one checkpoint"):
        average_checkpoints([])
