"""Two toy models implementing :class:`~seqattn.models.protocol.Seq2Seq` for the decoding tests.

* :class:`ScriptedModel`: next-token probabilities read from a table keyed by the prefix
  (fairseq's ``test_sequence_generator`` style), so expected outputs and scores can be worked out
  by hand. Its attention is one-hot on source position ``sum(prefix) % src_len``, so a test can
  check that every hypothesis carries the attention of its own prefix.
* :class:`TinyAttentionModel`: a seeded random embedding + GRU-cell decoder with dot attention
  over the embedded source (``d = 16``), for equivalence tests on real floating-point models.

Shapes: ``B`` batch rows, ``S`` source length, ``T`` target length, ``V`` vocabulary.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace

import torch
from torch import Tensor, nn

from seqattn.attention import Dot, attend, padding_mask
from seqattn.data.tokenizer import BOS_ID, EOS_ID
from seqattn.models.protocol import StepOutput

Distribution = Mapping[int, float]
Script = Mapping[tuple[int, ...], Distribution]


def teacher_forced(model, src: Tensor, src_lengths: Tensor, tgt_in: Tensor) -> tuple[Tensor, Tensor]:
    """``forward`` by stepping through ``tgt_in`` ``(B, T)``: ``(B, T, V)`` logits, ``(B, T, S)`` attention."""
    state = model.encode(src, src_lengths)
    logits, attention = [], []
    for t in range(tgt_in.size(1)):
        out, state = model.step(tgt_in[:, t], state)
        logits.append(out.logits)
        attention.append(out.attention)
    return torch.stack(logits, dim=1), torch.stack(attention, dim=1)


# -- scripted ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScriptedState:
    script: Tensor
    """``(B,)`` which script each row follows (the first source id)."""
    src_lengths: Tensor
    """``(B,)``"""
    prefix: Tensor
    """``(B, t)`` tokens produced so far."""
    width: int
    """Padded source length ``S``."""
    started: bool = False


class ScriptedModel:
    """Probabilities from ``scripts[first source id][prefix]``; unlisted prefixes use ``fallback``.

    Tokens missing from a distribution have probability zero (log-probability ``-inf``).
    Distributions are normalised, so ``log_softmax`` gives back ``log p`` exactly as written.
    ``step_batch_sizes`` records the rows of every ``step`` call.
    """

    def __init__(
        self, scripts: Mapping[int, Script], *, vocab_size: int = 10, fallback: Distribution | None = None
    ) -> None:
        self.scripts = scripts
        self.vocab_size = vocab_size
        self.fallback: Distribution = fallback if fallback is not None else {EOS_ID: 1.0}
        self.step_batch_sizes: list[int] = []

    def encode(self, src: Tensor, src_lengths: Tensor) -> ScriptedState:
        prefix = src.new_zeros(src.size(0), 0)
        return ScriptedState(src[:, 0].clone(), src_lengths.clone(), prefix, src.size(1))

    def step(self, prev_tokens: Tensor, state: ScriptedState) -> tuple[StepOutput, ScriptedState]:
        self.step_batch_sizes.append(prev_tokens.size(0))
        if state.started:
            prefix = torch.cat([state.prefix, prev_tokens.unsqueeze(1)], dim=1)
        else:
            assert bool(prev_tokens.eq(BOS_ID).all())
            prefix = state.prefix
        rows = prev_tokens.size(0)
        logits = torch.full((rows, self.vocab_size), -math.inf)
        attention = torch.zeros(rows, state.width)
        for row in range(rows):
            seen = tuple(prefix[row].tolist())
            dist = self.scripts[int(state.script[row])].get(seen, self.fallback)
            for token, prob in dist.items():
                logits[row, token] = math.log(prob)
            length = int(state.src_lengths[row])
            if length:
                attention[row, sum(seen) % length] = 1.0
        return StepOutput(logits, attention), replace(state, prefix=prefix, started=True)

    def reorder_state(self, state: ScriptedState, index: Tensor) -> ScriptedState:
        return replace(
            state,
            script=state.script[index],
            src_lengths=state.src_lengths[index],
            prefix=state.prefix[index],
        )

    def forward(self, src: Tensor, src_lengths: Tensor, tgt_in: Tensor) -> tuple[Tensor, Tensor]:
        return teacher_forced(self, src, src_lengths, tgt_in)


def enumerate_outputs(
    script: Script, fallback: Distribution, *, max_len: int
) -> dict[tuple[int, ...], float]:
    """Every complete output of ``script`` (EOS forced at ``max_len``) -> its log-probability."""
    complete: dict[tuple[int, ...], float] = {}
    frontier = [((), 0.0)]
    while frontier:
        prefix, log_prob = frontier.pop()
        dist = script.get(prefix, fallback)
        if len(prefix) == max_len:
            if EOS_ID in dist:
                complete[prefix] = log_prob + math.log(dist[EOS_ID])
            continue
        for token, prob in dist.items():
            if token == EOS_ID:
                complete[prefix] = log_prob + math.log(prob)
            else:
                frontier.append(((*prefix, token), log_prob + math.log(prob)))
    return complete


# -- neural ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TinyState:
    memory: Tensor
    """``(B, S, D)`` encoded source (keys and values)."""
    mask: Tensor
    """``(B, S)`` ``True`` at real source positions."""
    hidden: Tensor
    """``(B, D)`` decoder state."""
    context: Tensor
    """``(B, D)`` last attention context (input feeding)."""
    overshoot: Tensor
    """``(B,)`` steps taken minus the source length (drives the ``EOS`` logit)."""


class TinyAttentionModel(nn.Module):
    """Embedding encoder, GRU-cell decoder with Luong dot attention and input feeding.

    The ``EOS`` logit gets ``eos_slope * (t - src_len)`` added at step ``t``, so outputs end at
    varied lengths near the source length rather than at once or at the maximum.
    """

    def __init__(self, *, vocab_size: int = 12, dim: int = 16, seed: int = 0, eos_slope: float = 1.0) -> None:
        super().__init__()
        generator_state = torch.random.get_rng_state()
        torch.manual_seed(seed)
        self.src_embed = nn.Embedding(vocab_size, dim)
        self.encoder = nn.Linear(dim, dim)
        self.tgt_embed = nn.Embedding(vocab_size, dim)
        self.cell = nn.GRUCell(2 * dim, dim)
        self.output = nn.Linear(2 * dim, vocab_size)
        torch.random.set_rng_state(generator_state)
        with torch.no_grad():
            self.output.weight.mul_(4.0)  # peakier distributions than the default init
        self.eos_slope = eos_slope
        self.score = Dot()
        self.eval()

    def encode(self, src: Tensor, src_lengths: Tensor) -> TinyState:
        mask = padding_mask(src_lengths, max_len=src.size(1))  # (B, S)
        memory = torch.tanh(self.encoder(self.src_embed(src))) * mask.unsqueeze(-1)  # (B, S, D)
        mean = memory.sum(dim=1) / src_lengths.clamp(min=1).unsqueeze(-1).to(memory.dtype)  # (B, D)
        return TinyState(memory, mask, mean, torch.zeros_like(mean), -src_lengths.to(memory.dtype))

    def step(self, prev_tokens: Tensor, state: TinyState) -> tuple[StepOutput, TinyState]:
        inputs = torch.cat([self.tgt_embed(prev_tokens), state.context], dim=-1)  # (B, 2D)
        hidden = self.cell(inputs, state.hidden)  # (B, D)
        context, weights = attend(
            hidden.unsqueeze(1),
            state.memory,
            state.memory,
            score=self.score,
            mask=state.mask.unsqueeze(1),
            need_weights=True,
        )  # (B, 1, D), (B, 1, S)
        context = context.squeeze(1)
        logits = self.output(torch.cat([hidden, context], dim=-1))  # (B, V)
        logits[:, EOS_ID] += self.eos_slope * state.overshoot
        assert weights is not None
        new_state = replace(state, hidden=hidden, context=context, overshoot=state.overshoot + 1)
        return StepOutput(logits, weights.squeeze(1)), new_state

    def reorder_state(self, state: TinyState, index: Tensor) -> TinyState:
        fields = (state.memory, state.mask, state.hidden, state.context, state.overshoot)
        return TinyState(*(t.index_select(0, index) for t in fields))

    def forward(self, src: Tensor, src_lengths: Tensor, tgt_in: Tensor) -> tuple[Tensor, Tensor]:
        return teacher_forced(self, src, src_lengths, tgt_in)
