"""Shared-source decoding states: regroup keeps every row pointing at its own source."""

from __future__ import annotations

from dataclasses import replace

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from seqattn.config import RNNConfig, TransformerConfig
from seqattn.models.build import build_seq2seq
from seqattn.models.groups import regroup
from seqattn.models.rnn import RNNState
from seqattn.models.transformer import TransformerState


def _memory_after(memory: torch.Tensor, take: torch.Tensor | None) -> torch.Tensor:
    return memory if take is None else memory[take]


@settings(max_examples=300, deadline=None)
@given(
    memory_rows=st.integers(1, 6),
    group=st.integers(1, 4),
    data=st.data(),
)
def test_every_row_keeps_its_source(memory_rows: int, group: int, data: st.DataObject) -> None:
    rows = memory_rows * group
    index = torch.tensor(
        data.draw(st.lists(st.integers(0, rows - 1), min_size=0, max_size=12)), dtype=torch.long
    )
    memory = torch.arange(memory_rows) * 10  # a memory row's "content" is its id x 10
    take, new_group = regroup(index, group=group, memory_rows=memory_rows)
    after = _memory_after(memory, take)
    for row, old in enumerate(index.tolist()):
        assert after[row // new_group] == memory[old // group]
    if index.numel():
        assert after.numel() * new_group == index.numel()


def test_beam_layouts() -> None:
    # Expansion to 3 beams: memory untouched, groups of 3.
    take, group = regroup(torch.arange(2).repeat_interleave(3), group=1, memory_rows=2)
    assert take is None and group == 3
    # Beams moving within their sentences: untouched.
    take, group = regroup(torch.tensor([2, 2, 0, 4, 5, 5]), group=3, memory_rows=2)
    assert take is None and group == 3
    # The first sentence finished: keep memory row 1 only.
    take, group = regroup(torch.tensor([4, 3, 3]), group=3, memory_rows=2)
    assert take.tolist() == [1] and group == 3
    # Greedy rows (group 1), some finished.
    take, group = regroup(torch.tensor([0, 2]), group=1, memory_rows=3)
    assert take.tolist() == [0, 2] and group == 1
    # Not grouped (uneven): one memory row per hypothesis.
    take, group = regroup(torch.tensor([0, 0, 1]), group=1, memory_rows=2)
    assert take.tolist() == [0, 0, 1] and group == 1


def _models():
    torch.manual_seed(0)
    rnn = build_seq2seq(
        RNNConfig(embed_dim=16, hidden_size=8, decoder_size=16, num_layers=1, dropout=0.0),
        src_vocab=30,
        tgt_vocab=30,
    )
    transformer = build_seq2seq(
        TransformerConfig(
            d_model=16, num_heads=2, ffn_dim=32, encoder_layers=1, decoder_layers=2, dropout=0.0
        ),
        src_vocab=30,
        tgt_vocab=30,
    )
    return [rnn.eval(), transformer.eval()]


def _ungroup(state):
    """The same state with one copy of the source per hypothesis row (``group = 1``)."""
    if isinstance(state, RNNState):
        rows = torch.arange(state.memory.size(0)).repeat_interleave(state.group)
        return replace(
            state,
            memory=state.memory[rows],
            keys=state.keys.index_select(0, rows),
            mask=state.mask[rows],
            group=1,
        )
    assert isinstance(state, TransformerState)
    rows = torch.arange(state.memory_mask.size(0)).repeat_interleave(state.group)
    return replace(
        state,
        memories=[m.index_select(0, rows) for m in state.memories],
        memory_mask=state.memory_mask[rows],
        group=1,
    )


def _run(model, src, lengths, reorders, *, ungrouped: bool):
    outputs, groups = [], []
    with torch.no_grad():
        state = model.encode(src, lengths)
        tokens = torch.full((src.size(0),), 1)
        for index in reorders:
            state = model.reorder_state(state, index)
            groups.append(state.group)
            if ungrouped:
                state = _ungroup(state)
            out, state = model.step(tokens[index], state)
            outputs.append((out.logits, out.attention))
            tokens = out.logits.argmax(-1)
    return outputs, groups


def test_grouped_steps_equal_one_source_copy_per_row() -> None:
    """Beam-like reorders (grouped) and arbitrary ones (not grouped) give the logits and
    attention of decoding every row over its own copy of the source."""
    src = torch.randint(4, 30, (3, 7))
    lengths = torch.tensor([7, 5, 2])
    reorders = [
        torch.arange(3).repeat_interleave(2),  # 2 beams each: groups of 2
        torch.tensor([1, 0, 3, 3, 5, 4]),  # within sentences: memory untouched
        torch.tensor([2, 3, 4, 5]),  # sentence 0 finished
        torch.tensor([3, 0, 0, 2]),  # across sentences: one source per row
        torch.tensor([1, 2]),
    ]
    for model in _models():
        grouped, groups = _run(model, src, lengths, reorders, ungrouped=False)
        reference, _ = _run(model, src, lengths, reorders, ungrouped=True)
        assert groups == [2, 2, 2, 1, 1]
        for (logits, attention), (ref_logits, ref_attention) in zip(grouped, reference, strict=True):
            torch.testing.assert_close(logits, ref_logits, rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(attention, ref_attention, rtol=1e-5, atol=1e-6)


def test_positions_select_logits_of_real_target_positions() -> None:
    """``forward(..., positions=mask)`` returns exactly the full logits at the masked positions
    (training uses it to skip the output projection on padding)."""
    src = torch.randint(4, 30, (3, 7))
    lengths = torch.tensor([7, 5, 2])
    tgt_in = torch.randint(4, 30, (3, 6))
    mask = torch.tensor([[True] * 6, [True] * 4 + [False] * 2, [True] + [False] * 5])
    for model in _models():
        with torch.no_grad():
            full, _ = model(src, lengths, tgt_in, need_attention=False)
            selected, _ = model(src, lengths, tgt_in, need_attention=False, positions=mask)
        assert selected.shape == (int(mask.sum()), 30)
        torch.testing.assert_close(selected, full[mask], rtol=1e-5, atol=1e-6)
