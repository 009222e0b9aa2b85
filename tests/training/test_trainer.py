"""The Trainer: exact resume, loss normalisation over accumulated batches, DDP (gloo, 2
processes) == accumulation, early stopping, checkpoints and the final model."""

from __future__ import annotations

import json
import os
import random
import socket
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from seqattn.config import TrainConfig
from seqattn.data.tokenizer import BOS_ID, EOS_ID
from seqattn.models.rnn import RNNSeq2Seq
from seqattn.training.checkpoint import load_checkpoint
from seqattn.training.loss import label_smoothed_cross_entropy
from seqattn.training.trainer import Trainer
from seqattn.training.translation import collate_pairs

VOCAB = 16


class ReverseTask:
    """Reverse random symbol strings; 12 batches per epoch, planned from the epoch number."""

    def __init__(self, *, batches: int = 12, crash_at: int | None = None) -> None:
        generator = random.Random(0)
        self.pairs = []
        for _ in range(batches * 8):
            symbols = [generator.randrange(4, VOCAB) for _ in range(generator.randrange(2, 7))]
            self.pairs.append((symbols, symbols[::-1]))
        self.batches = batches
        self.crash_at = crash_at
        self.calls = 0

    def plan(self, epoch: int) -> list[list[int]]:
        order = list(range(len(self.pairs)))
        random.Random(epoch).shuffle(order)
        return [order[i : i + 8] for i in range(0, len(order), 8)]

    def loss(self, model, batch):
        self.calls += 1
        if self.crash_at is not None and self.calls == self.crash_at:
            raise KeyboardInterrupt("simulated crash")
        pairs = collate_pairs([self.pairs[i][0] for i in batch], [self.pairs[i][1] for i in batch])
        logits, _ = model(pairs.src, pairs.src_lengths, pairs.tgt_in, need_attention=False)
        return label_smoothed_cross_entropy(logits, pairs.tgt_out, smoothing=0.1)

    def validate(self, model) -> dict[str, float]:
        pairs = collate_pairs([p[0] for p in self.pairs[:16]], [p[1] for p in self.pairs[:16]])
        logits, _ = model(pairs.src, pairs.src_lengths, pairs.tgt_in, need_attention=False)
        out = label_smoothed_cross_entropy(logits, pairs.tgt_out)
        return {"loss": float(out.nll) / out.tokens}


def make_model(dropout: float = 0.3) -> RNNSeq2Seq:
    torch.manual_seed(0)
    return RNNSeq2Seq(
        VOCAB,
        VOCAB,
        embed_dim=8,
        hidden_size=8,
        decoder_size=16,
        style="bahdanau",
        score="additive",
        dropout=dropout,
    )


def config(**kw) -> TrainConfig:
    base = TrainConfig(
        lr=3e-3,
        warmup_steps=3,
        max_steps=12,
        validate_every=4,
        log_every=1,
        metric="loss",
        patience=None,
        keep_last=2,
        keep_best=1,
    )
    return replace(base, **kw)


def train_losses(directory: Path) -> dict[int, float]:
    lines = (directory / "metrics.jsonl").read_text().splitlines()
    return {r["step"]: r["train_nll"] for r in map(json.loads, lines) if "train_nll" in r}


def test_resumed_run_equals_uninterrupted_run(tmp_path: Path) -> None:
    whole = Trainer(make_model(), ReverseTask(), config=config(), output_dir=tmp_path / "whole")
    whole.fit()

    crashed = tmp_path / "crashed"
    # Crash inside update 10 (after the checkpoint at update 8), then resume.
    with pytest.raises(KeyboardInterrupt):
        Trainer(make_model(), ReverseTask(crash_at=10), config=config(), output_dir=crashed).fit()
    assert max(train_losses(crashed)) == 9
    torch.manual_seed(1234)  # the resumed run must not depend on the RNG state it starts with
    random.seed(99)
    resumed = Trainer(make_model(), ReverseTask(), config=config(), output_dir=crashed)
    resumed.fit(resume=True)

    assert train_losses(crashed) == train_losses(whole.output_dir)  # bitwise-equal floats
    for a, b in zip(whole.model.state_dict().values(), resumed.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    final_whole = load_checkpoint(tmp_path / "whole" / "model.pt")["model"]
    final_resumed = load_checkpoint(crashed / "model.pt")["model"]
    assert all(torch.equal(final_whole[k], final_resumed[k]) for k in final_whole)


def test_update_gradient_is_the_token_mean_over_accumulated_batches(tmp_path: Path) -> None:
    task = ReverseTask()
    model = make_model(dropout=0.0)
    trainer = Trainer(model, task, config=config(accumulate=2, clip_norm=None), output_dir=tmp_path)
    trainer.optimizer.step = lambda: None  # keep the gradients of one update
    trainer.optimizer.zero_grad = lambda set_to_none=True: None
    group = task.plan(0)[:2]
    trainer.update(group)
    got = {n: p.grad.clone() for n, p in model.named_parameters()}

    model.zero_grad()
    union = [i for batch in group for i in batch]
    out = task.loss(model, union)
    (out.loss / out.tokens).backward()
    for name, p in model.named_parameters():
        torch.testing.assert_close(got[name], p.grad, atol=1e-6, rtol=1e-5, msg=name)


def test_early_stopping_and_best_checkpoint(tmp_path: Path) -> None:
    class Worsening(ReverseTask):
        def __init__(self) -> None:
            super().__init__()
            self.validations = 0

        def validate(self, model) -> dict[str, float]:
            self.validations += 1
            return {"loss": float(self.validations)}  # best at the first validation

    trainer = Trainer(make_model(), Worsening(), config=config(max_steps=40, patience=2), output_dir=tmp_path)
    summary = trainer.fit()
    assert summary["steps"] == 12  # validations at 4 (best), 8, 12: two without improvement
    assert summary["best_loss"] == 1.0
    assert summary["selected"] == "best.pt" or summary["selected"].startswith("step_")
    best = load_checkpoint(tmp_path / "checkpoints" / "best.pt")
    assert best["state"]["step"] == 4
    assert torch.equal(
        load_checkpoint(tmp_path / "model.pt")["model"]["output.weight"], best["model"]["output.weight"]
    )


def test_average_last_checkpoints(tmp_path: Path) -> None:
    trainer = Trainer(make_model(), ReverseTask(), config=config(average_last=2), output_dir=tmp_path)
    summary = trainer.fit()
    assert len(summary["averaged"]) == 2
    a, b = (load_checkpoint(tmp_path / "checkpoints" / name)["model"] for name in summary["averaged"])
    final = load_checkpoint(tmp_path / "model.pt")["model"]
    torch.testing.assert_close(final["output.weight"], (a["output.weight"] + b["output.weight"]) / 2)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, directory: str) -> None:
    os.environ.update(
        {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": str(world), "RANK": str(rank)}
    )
    torch.set_num_threads(1)
    trainer = Trainer(make_model(dropout=0.0), ReverseTask(), config=config(), output_dir=directory)
    trainer.fit()
    torch.save(trainer.model.state_dict(), Path(directory) / f"rank{rank}.pt")
    torch.distributed.destroy_process_group()


def test_ddp_on_two_gloo_processes_equals_accumulating_two_batches(tmp_path: Path) -> None:
    port = _free_port()
    mp.spawn(_ddp_worker, args=(2, port, str(tmp_path / "ddp")), nprocs=2, join=True)
    rank0 = torch.load(tmp_path / "ddp" / "rank0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "ddp" / "rank1.pt", weights_only=True)
    for name in rank0:
        assert torch.equal(rank0[name], rank1[name]), name  # the processes stay in sync

    # One process accumulating the same pairs of batches: same updates up to summation order.
    single = Trainer(
        make_model(dropout=0.0), ReverseTask(), config=config(accumulate=2), output_dir=tmp_path / "one"
    )
    single.fit()
    for name, value in single.model.state_dict().items():
        torch.testing.assert_close(rank0[name], value, atol=1e-5, rtol=1e-4, msg=name)
    assert (tmp_path / "ddp" / "model.pt").is_file()


def test_bos_and_eos_conventions() -> None:
    pairs = collate_pairs([[5, 6]], [[7]])
    assert pairs.src.tolist() == [[5, 6, EOS_ID]]
    assert pairs.tgt_in.tolist() == [[BOS_ID, 7]]
    assert pairs.tgt_out.tolist() == [[7, EOS_ID]]
