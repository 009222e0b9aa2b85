"""benchmarks/train_rounds.py: the peers' config edit and the harness's counting rule."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from train_rounds import onmt_tokens_per_s, peer_config

RENDERED = """# rendered by run.sh
save_model: /tmp/peers/runs/onmt_rnn/model/model
save_checkpoint_steps: 200
keep_checkpoint: 1
train_steps: 200
report_every: 20
"""


def test_peer_config_changes_only_steps_and_saving(tmp_path: Path) -> None:
    rendered = tmp_path / "train.yaml"
    rendered.write_text(RENDERED)
    text = peer_config(rendered, steps=121, model_dir=tmp_path / "m")
    assert "train_steps: 121\n" in text
    assert "save_checkpoint_steps: 1121\n" in text  # no checkpoint inside the run
    assert f"save_model: {tmp_path / 'm' / 'model'}\n" in text
    assert "keep_checkpoint: 1\nreport_every: 20\n" in text.replace("train_steps: 121\n", "")


def test_peer_config_refuses_an_unexpected_layout(tmp_path: Path) -> None:
    rendered = tmp_path / "train.yaml"
    rendered.write_text(RENDERED.replace("train_steps: 200\n", ""))
    with pytest.raises(SystemExit, match="train_steps"):
        peer_config(rendered, steps=121, model_dir=tmp_path)


def test_tokens_per_s_counts_as_the_harness(tmp_path: Path) -> None:
    """Steps warmup+1 .. warmup+steps, timed from entry to entry: the last entry only ends it."""
    record = tmp_path / "train.jsonl"
    entries = [{"ev": "start"}] + [
        {"ev": "step", "t": 2.0 * i, "nseqs": 1, "src_pieces": 10 * i, "tgt_pieces": 1} for i in range(6)
    ]
    record.write_text("".join(json.dumps(e) + "\n" for e in entries))
    # warmup 2, steps 3: entries 2, 3, 4 (src 20 + 30 + 40, tgt 3), from t=4 to t=10
    assert onmt_tokens_per_s(record, warmup=2, steps=3) == pytest.approx(93 / 6)
    with pytest.raises(SystemExit, match="need 7"):
        onmt_tokens_per_s(record, warmup=2, steps=4)
