"""Crash-safe training: SIGINT/SIGTERM save a state that resumes exactly, SIGKILL at any moment
(checkpoint writes included) leaves only loadable checkpoints, and every resumed run ends with
the weights of an uninterrupted one, bit for bit.

The in-process tests drive :class:`~seqattn.training.trainer.Trainer` on the tiny reversal task
of ``test_trainer.py`` and raise signals from inside an update. The subprocess tests (marked
slow) run ``seqattn train`` through this file's ``__main__`` driver, which is ``seqattn`` itself
with SIGINT handled as in an interactive shell and, when ``CRASH_TEST_WRITE_DELAY`` is set,
``torch.save`` writing its bytes in 16 slow pieces, so that a kill can land mid-checkpoint.
"""

from __future__ import annotations

import io
import json
import os
import random
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from seqattn.errors import TrainingInterrupted
from seqattn.training import checkpoint as checkpoint_module
from seqattn.training.checkpoint import load_checkpoint
from seqattn.training.trainer import Trainer
from tests.training.test_trainer import ReverseTask, config, make_model, train_losses

REPO = Path(__file__).resolve().parents[2]
WRITE_DELAY = "CRASH_TEST_WRITE_DELAY"
"""Environment variable: seconds the driver spends writing each checkpoint file (0: no delay)."""
MAX_STEPS = 300
VALIDATE_EVERY = 10
SIGNALS = [pytest.param(signal.SIGINT, id="SIGINT"), pytest.param(signal.SIGTERM, id="SIGTERM")]


pytestmark = pytest.mark.usefixtures("one_thread")  # the subprocesses use one thread too


# --------------------------------------------------------------------------- helpers


def assert_same(a: Any, b: Any, where: str = "state") -> None:
    """Tensors bitwise equal, containers equal element by element."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b), where
        for key in a:
            assert_same(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for index, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{where}[{index}]")
    else:
        assert a == b, where


def step_files(directory: Path) -> list[str]:
    return sorted(path.name for path in (directory / "checkpoints").glob("step_*.pt"))


def _step_name(step: int) -> str:
    return f"step_{step:08d}.pt"


def temporaries(directory: Path) -> list[Path]:
    """Temporary files of atomic writes (``.NAME.RANDOM.tmp``) anywhere in a model directory."""
    return sorted(directory.rglob(".*.tmp"))


class SignalDuring(ReverseTask):
    """Raises ``signals[i]`` inside the loss computation of update ``at[i]``."""

    def __init__(self, at: list[int], signals: list[int]) -> None:
        super().__init__()
        self.at = dict(zip(at, signals, strict=True))

    def loss(self, model, batch):
        if self.calls + 1 in self.at:
            signal.raise_signal(self.at[self.calls + 1])  # the handler only sets a flag
        return super().loss(model, batch)


@pytest.fixture
def handlers() -> Iterator[dict[int, Any]]:
    """The SIGINT/SIGTERM handlers before the test, checked to be in place again after it.

    A background job starts with SIGINT ignored, and training leaves ignored signals ignored;
    the test runs as a foreground process would (default handlers), whatever launched pytest."""
    before = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
    if before[signal.SIGINT] is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if before[signal.SIGTERM] is signal.SIG_IGN:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    yield {number: signal.getsignal(number) for number in before}
    for number, handler in before.items():
        signal.signal(number, handler)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("whole")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        Trainer(make_model(), ReverseTask(), config=config(), output_dir=directory).fit()
    finally:
        torch.set_num_threads(threads)
    return directory


# --------------------------------------------------------------------------- in process


@pytest.mark.parametrize("number", SIGNALS)
def test_signal_saves_the_current_step_and_resume_is_exact(
    uninterrupted: Path, tmp_path: Path, handlers: dict[int, Any], number: int
) -> None:
    # The signal arrives during update 6 (between the checkpoints of steps 4 and 8): update 6
    # completes, then the state at step 6 is saved and fit raises.
    task = SignalDuring(at=[6], signals=[number])
    with pytest.raises(TrainingInterrupted) as caught:
        Trainer(make_model(), task, config=config(), output_dir=tmp_path).fit()
    stopped = caught.value
    assert (stopped.signal_number, stopped.step, task.calls) == (number, 6, 6)
    assert stopped.exit_code == 128 + number
    assert stopped.checkpoint == tmp_path / "checkpoints" / "interrupted.pt"
    assert load_checkpoint(stopped.checkpoint)["state"]["step"] == 6
    assert max(train_losses(tmp_path)) == 6
    assert {n: signal.getsignal(n) for n in handlers} == handlers  # restored
    assert step_files(tmp_path) == ["step_00000004.pt"]  # interrupted.pt is not a step checkpoint

    # A crash mid-append leaves a damaged last line in the log: resuming drops it.
    with open(tmp_path / "metrics.jsonl", "a", encoding="utf-8") as log:
        log.write('{"step": 7, "train_n')
    torch.manual_seed(4321)  # the resumed run must not depend on the RNG state it starts with
    resumed = Trainer(make_model(), ReverseTask(), config=config(), output_dir=tmp_path)
    resumed.fit(resume=True)
    assert train_losses(tmp_path) == train_losses(uninterrupted)
    assert step_files(tmp_path) == step_files(uninterrupted)
    assert not (tmp_path / "checkpoints" / "interrupted.pt").exists()
    for name in ("model.pt", "checkpoints/last.pt", "checkpoints/best.pt"):
        assert_same(load_checkpoint(tmp_path / name)["model"], load_checkpoint(uninterrupted / name)["model"])
    assert_same(
        load_checkpoint(tmp_path / "checkpoints/last.pt")["optimizer"],
        load_checkpoint(uninterrupted / "checkpoints/last.pt")["optimizer"],
    )


def test_signal_at_a_checkpointed_step_names_that_checkpoint(
    tmp_path: Path, handlers: dict[int, Any]
) -> None:
    with pytest.raises(TrainingInterrupted) as caught:
        Trainer(make_model(), SignalDuring([8], [signal.SIGTERM]), config=config(), output_dir=tmp_path).fit()
    assert caught.value.step == 8
    assert caught.value.checkpoint == tmp_path / "checkpoints" / "step_00000008.pt"
    assert not (tmp_path / "checkpoints" / "interrupted.pt").exists()  # nothing to add


def test_more_signals_while_saving_are_ignored(
    uninterrupted: Path, tmp_path: Path, handlers: dict[int, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    real_save = torch.save
    saves: list[int] = []

    def save_under_fire(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        if isinstance(obj, dict) and obj.get("state", {}).get("step") == 5:
            saves.append(5)
            signal.raise_signal(signal.SIGINT)  # before and in the middle of the write
            real_save(obj, f, *args, **kwargs)
            signal.raise_signal(signal.SIGTERM)
            return
        real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(checkpoint_module.torch, "save", save_under_fire)
    with pytest.raises(TrainingInterrupted) as caught:
        Trainer(make_model(), SignalDuring([5], [signal.SIGTERM]), config=config(), output_dir=tmp_path).fit()
    assert saves == [5] and caught.value.signal_number == signal.SIGTERM and caught.value.step == 5
    assert load_checkpoint(caught.value.checkpoint)["state"]["step"] == 5
    assert temporaries(tmp_path) == []
    monkeypatch.undo()
    Trainer(make_model(), ReverseTask(), config=config(), output_dir=tmp_path).fit(resume=True)
    assert_same(load_checkpoint(tmp_path / "model.pt"), load_checkpoint(uninterrupted / "model.pt"))


def test_signal_after_the_last_update_finishes_the_run_first(
    uninterrupted: Path, tmp_path: Path, handlers: dict[int, Any]
) -> None:
    with pytest.raises(TrainingInterrupted) as caught:
        Trainer(make_model(), SignalDuring([12], [signal.SIGINT]), config=config(), output_dir=tmp_path).fit()
    assert caught.value.step == 12
    assert caught.value.checkpoint == tmp_path / "checkpoints" / "step_00000012.pt"
    assert_same(load_checkpoint(tmp_path / "model.pt"), load_checkpoint(uninterrupted / "model.pt"))
    # Resuming a finished run finishes it again without training further.
    again = Trainer(make_model(), ReverseTask(), config=config(), output_dir=tmp_path)
    assert again.fit(resume=True)["steps"] == 12 and again.task.calls == 0
    assert_same(load_checkpoint(tmp_path / "model.pt"), load_checkpoint(uninterrupted / "model.pt"))


SCRIPTED_LOSS = {4: 3.0, 8: 1.0, 12: 2.0}


class ScriptedMetric(ReverseTask):
    """Validation loss read from a table by the trainer's step: the best checkpoint is step 8."""

    def __init__(self) -> None:
        super().__init__()
        self.trainer: Trainer | None = None

    def validate(self, model) -> dict[str, float]:
        assert self.trainer is not None
        return {"loss": SCRIPTED_LOSS[self.trainer.state.step]}


def _scripted_run(directory: Path, *, resume: bool = False) -> Trainer:
    task = ScriptedMetric()
    trainer = Trainer(make_model(), task, config=config(keep_last=1), output_dir=directory)
    task.trainer = trainer
    trainer.fit(resume=resume)
    return trainer


def test_a_crash_before_the_index_write_does_not_lose_the_best_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _scripted_run(tmp_path / "whole")
    writes: list[str] = []
    real_write = checkpoint_module.atomic_write_text

    def crash_on_second_index(path: Any, text: str) -> None:
        writes.append(Path(path).name)
        if writes.count("checkpoints.json") == 2:  # step_00000008.pt is written, its entry not
            raise KeyboardInterrupt("killed")
        real_write(path, text)

    monkeypatch.setattr(checkpoint_module, "atomic_write_text", crash_on_second_index)
    with pytest.raises(KeyboardInterrupt):
        _scripted_run(tmp_path / "crashed")
    monkeypatch.undo()
    index = json.loads((tmp_path / "crashed" / "checkpoints" / "checkpoints.json").read_text())
    assert [entry["step"] for entry in index["entries"]] == [4]
    assert step_files(tmp_path / "crashed") == ["step_00000004.pt", "step_00000008.pt"]

    _scripted_run(tmp_path / "crashed", resume=True)
    assert (
        step_files(tmp_path / "crashed")
        == step_files(tmp_path / "whole")
        == [
            "step_00000008.pt",
            "step_00000012.pt",
        ]
    )
    assert_same(
        load_checkpoint(tmp_path / "crashed" / "model.pt"), load_checkpoint(tmp_path / "whole" / "model.pt")
    )
    assert_same(
        load_checkpoint(tmp_path / "crashed" / "model.pt")["model"],
        load_checkpoint(tmp_path / "whole" / "checkpoints" / "step_00000008.pt")["model"],
    )


def test_an_ignored_signal_stays_ignored(
    uninterrupted: Path, tmp_path: Path, handlers: dict[int, Any]
) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # as for a job started in the background
    Trainer(make_model(), SignalDuring([6], [signal.SIGINT]), config=config(), output_dir=tmp_path).fit()
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    assert train_losses(tmp_path) == train_losses(uninterrupted)


def test_outside_the_main_thread_signals_are_left_alone(tmp_path: Path, handlers: dict[int, Any]) -> None:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            Trainer(make_model(), ReverseTask(), config=config(max_steps=2), output_dir=tmp_path).fit()
        except BaseException as error:
            errors.append(error)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    assert errors == [] and (tmp_path / "model.pt").is_file()
    assert {n: signal.getsignal(n) for n in handlers} == handlers


# --------------------------------------------------------------------------- subprocesses


def write_task(directory: Path) -> Path:
    """A tiny reversal task (2,000 pairs) and a config checkpointing every 10 of 300 updates."""
    rng = random.Random(0)
    words = [f"w{i}" for i in range(12)]
    for split, count in (("train", 2000), ("valid", 20)):
        pairs = [rng.sample(words, rng.randint(2, 6)) for _ in range(count)]
        (directory / f"{split}.src").write_text("".join(" ".join(p) + "\n" for p in pairs))
        (directory / f"{split}.tgt").write_text("".join(" ".join(reversed(p)) + "\n" for p in pairs))
    path = directory / "config.yaml"
    path.write_text(
        f"""
task: translation
model: {{arch: rnn, style: bahdanau, score: additive, embed_dim: 16, hidden_size: 16, decoder_size: 32, dropout: 0.2}}
data:
  train: {{src: {directory}/train.src, tgt: {directory}/train.tgt}}
  valid: {{src: {directory}/valid.src, tgt: {directory}/valid.tgt}}
tokenizer: {{vocab_size: 18}}
train: {{max_steps: {MAX_STEPS}, max_tokens: 256, validate_every: {VALIDATE_EVERY}, log_every: 1, metric: loss,
         patience: null, keep_last: 2, keep_best: 1, valid_max_sentences: 4, lr: 0.003, warmup_steps: 10, seed: 3}}
"""
    )
    return path


def launch(args: list[str], *, cache: Path, logs: Path, write_delay: float = 0.0) -> subprocess.Popen:
    """``seqattn ARGS`` through this file's driver: one CPU thread, offline, its own cache."""
    env = os.environ | {
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "HF_DATASETS_OFFLINE": "1",
        "HF_HUB_OFFLINE": "1",
        "SEQATTN_CACHE": str(cache),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        WRITE_DELAY: str(write_delay),
    }
    logs.parent.mkdir(parents=True, exist_ok=True)
    with open(logs.with_suffix(".out"), "wb") as out, open(logs.with_suffix(".err"), "wb") as err:
        return subprocess.Popen([sys.executable, __file__, *args], env=env, stdout=out, stderr=err)


def finish(process: subprocess.Popen, logs: Path, *, timeout: float = 300) -> str:
    """Wait for the process; its stderr."""
    process.wait(timeout=timeout)
    return logs.with_suffix(".err").read_text(errors="replace")


def wait_for(condition: Callable[[], bool], process: subprocess.Popen, *, timeout: float = 120) -> bool:
    """Poll ``condition`` every 2 ms until it holds (True) or the process ends or time is up (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        if process.poll() is not None:
            return condition()
        time.sleep(0.002)
    return False


def last_logged(model_dir: Path) -> int:
    """Step of the last training record of the metrics log (0 if there is none)."""
    try:
        lines = (model_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return 0
    steps = [0]
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a line being written
        if "train_nll" in record:
            steps.append(record["step"])
    return steps[-1]


def assert_every_checkpoint_loads(model_dir: Path) -> list[str]:
    """Load every ``*.pt`` with the project's loader, check the index; the names found."""
    directory = model_dir / "checkpoints"
    files = sorted(directory.glob("*.pt")) if directory.is_dir() else []
    if (model_dir / "model.pt").exists():
        files.append(model_dir / "model.pt")
    for path in files:
        state = load_checkpoint(path)  # raises DataError for a truncated or corrupt file
        assert "model" in state, path
    index = directory / "checkpoints.json"
    if index.exists():
        for entry in json.loads(index.read_text())["entries"]:
            assert (directory / entry["path"]).is_file(), entry  # the index never lists a missing file
    return [path.name for path in files]


def index_entries(model_dir: Path, *, recovered: bool) -> list[tuple[int, float | None]]:
    """(step, metric) of the index entries that are (not) marked recovered."""
    document = json.loads((model_dir / "checkpoints" / "checkpoints.json").read_text())
    return [
        (entry["step"], entry["metric"])
        for entry in document["entries"]
        if entry.get("recovered", False) == recovered
    ]


def final_state(model_dir: Path) -> dict[str, Any]:
    """What must not differ from an uninterrupted run: weights, optimizer, schedule, RNG, the
    retained checkpoints with their metrics, the training log."""
    last = load_checkpoint(model_dir / "checkpoints" / "last.pt")
    return {
        "model.pt": load_checkpoint(model_dir / "model.pt")["model"],
        "last": {key: last[key] for key in ("model", "optimizer", "schedule", "rng")},
        "entries": index_entries(model_dir, recovered=False),
        "train_nll": train_losses(model_dir),
    }


@pytest.fixture(scope="module")
def task_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("crash-task")
    write_task(directory)
    return directory


@pytest.fixture(scope="module")
def reference(task_dir: Path) -> Path:
    """The uninterrupted run of the subprocess tests' config."""
    model_dir = task_dir / "uninterrupted"
    logs = task_dir / "logs" / "uninterrupted"
    process = launch(
        ["train", str(task_dir / "config.yaml"), "-o", str(model_dir)], cache=task_dir / "cache", logs=logs
    )
    stderr = finish(process, logs)
    assert process.returncode == 0, stderr
    assert last_logged(model_dir) == MAX_STEPS
    return model_dir


@pytest.mark.slow
def test_sigkill_at_ten_random_moments_then_resume_equals_an_uninterrupted_run(
    task_dir: Path, reference: Path, tmp_path: Path
) -> None:
    rng = random.Random(20240917)
    planned = sorted(rng.sample(range(3, MAX_STEPS - 10), 10))
    mid_write = set(rng.sample(range(10), 4))  # these kills land while a step checkpoint is written
    model_dir = tmp_path / "model"
    command = ["train", str(task_dir / "config.yaml"), "-o", str(model_dir)]
    killed_at: list[int] = []
    killed_mid_write = 0
    for kill in range(10):
        # Past the previous kill: a resumed run's log still shows the old steps until it starts.
        target = max(planned[kill], (killed_at[-1] if killed_at else 0) + 1)
        delay = 0.4 if kill in mid_write else 0.0
        logs = tmp_path / "logs" / f"run{kill}"
        process = launch(
            command + (["--resume"] if kill else []), cache=task_dir / "cache", logs=logs, write_delay=delay
        )
        reached = wait_for(lambda: last_logged(model_dir) >= target, process)  # noqa: B023
        if kill in mid_write:
            reached = reached and wait_for(
                lambda: any((model_dir / "checkpoints").glob(".step_*.tmp")),
                process,
            )
            # In the first quarter of the write: slack for a busy machine's scheduling delays.
            time.sleep(rng.uniform(0, delay / 4))
        else:
            time.sleep(rng.uniform(0, 0.03))
        process.kill()
        stderr = finish(process, logs)
        assert reached and process.returncode == -signal.SIGKILL, (kill, target, process.returncode, stderr)
        if kill in mid_write:
            assert list((model_dir / "checkpoints").glob(".step_*.tmp")), "the kill missed the write"
            killed_mid_write += 1
        killed_at.append(last_logged(model_dir))
        names = assert_every_checkpoint_loads(model_dir)
        assert "last.pt" in names or killed_at[-1] <= VALIDATE_EVERY, names

    logs = tmp_path / "logs" / "final"
    process = launch([*command, "--resume"], cache=task_dir / "cache", logs=logs)
    stderr = finish(process, logs)
    assert process.returncode == 0, stderr
    assert killed_mid_write == 4 and killed_at == sorted(killed_at), killed_at
    assert temporaries(model_dir) == []  # the resumed runs removed what the kills left
    assert_every_checkpoint_loads(model_dir)
    assert_same(final_state(model_dir), final_state(reference))
    # A kill between the index write and the deletion of a checkpoint it dropped leaves that
    # file, adopted as a "recovered" entry (kept, never best; see CheckpointManager). Nothing
    # else may differ.
    orphans = index_entries(model_dir, recovered=True)
    assert all(metric is None for _, metric in orphans)
    assert set(step_files(model_dir)) == set(step_files(reference)) | {_step_name(s) for s, _ in orphans}


@pytest.mark.slow
@pytest.mark.parametrize("number", SIGNALS)
def test_sigint_and_sigterm_exit_with_a_resumable_checkpoint(
    task_dir: Path, reference: Path, tmp_path: Path, number: int
) -> None:
    model_dir = tmp_path / "model"
    logs = tmp_path / "logs" / "stopped"
    process = launch(
        ["train", str(task_dir / "config.yaml"), "-o", str(model_dir)],
        cache=task_dir / "cache",
        logs=logs,
        write_delay=0.2,
    )
    # Signal just after the update that follows a checkpoint, so the stop falls between two.
    checkpointed = 2 * VALIDATE_EVERY
    assert wait_for(lambda: last_logged(model_dir) >= checkpointed + 1, process), finish(process, logs)
    process.send_signal(number)
    # A second signal while the state is being written changes nothing.
    saving = wait_for(lambda: any((model_dir / "checkpoints").glob(".interrupted.pt.*.tmp")), process)
    process.send_signal(number)
    stderr = finish(process, logs)
    assert saving, stderr
    assert process.returncode == 128 + number, stderr
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if "interrupted" in line]
    assert len(lines) == 1 and lines == stderr.strip().splitlines()[-1:], stderr
    name = signal.Signals(number).name
    step = last_logged(model_dir)
    checkpoint = model_dir / "checkpoints" / "interrupted.pt"
    assert f"interrupted by {name} at step {step}; checkpoint saved to {checkpoint}" in lines[0]
    assert checkpointed < step < checkpointed + VALIDATE_EVERY
    assert load_checkpoint(checkpoint)["state"]["step"] == step
    assert_every_checkpoint_loads(model_dir)

    # The command the message gives goes on from there.
    again = shlex.split(lines[0].split("resume with: ", 1)[1])
    assert again[0] == "seqattn" and again[-1] == "--resume"
    logs = tmp_path / "logs" / "resumed"
    process = launch(again[1:], cache=task_dir / "cache", logs=logs)
    stderr = finish(process, logs)
    assert process.returncode == 0, stderr
    assert not checkpoint.exists() and temporaries(model_dir) == []
    assert_same(final_state(model_dir), final_state(reference))


# --------------------------------------------------------------------------- the driver


def _drive(argv: list[str]) -> None:
    """Run ``seqattn ARGV`` (exits with its status)."""
    signal.signal(signal.SIGINT, signal.default_int_handler)  # as in an interactive shell
    delay = float(os.environ.get(WRITE_DELAY) or 0)
    if delay > 0:
        real_save = torch.save

        def slow_save(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
            if not hasattr(f, "write"):
                real_save(obj, f, *args, **kwargs)
                return
            buffer = io.BytesIO()
            real_save(obj, buffer, *args, **kwargs)
            data = buffer.getvalue()
            piece = -(-len(data) // 16)
            for start in range(0, len(data), piece):
                f.write(data[start : start + piece])
                f.flush()
                time.sleep(delay / 16)

        torch.save = slow_save
    from seqattn.cli import main

    main(argv, prog_name="seqattn")


if __name__ == "__main__":
    _drive(sys.argv[1:])
