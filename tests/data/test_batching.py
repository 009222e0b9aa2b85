"""Token-budget batching, inference ordering and padding."""

from __future__ import annotations

import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from seqattn.data.batching import BatchPlan, inference_batches, pad_batch, restore_order, token_batches
from seqattn.data.tokenizer import PAD_ID

LENGTHS = st.lists(st.integers(min_value=1, max_value=120), max_size=300)
BUDGET = st.integers(min_value=1, max_value=600)
MAX_LEN = st.one_of(st.none(), st.integers(min_value=1, max_value=150))
MAX_SENTENCES = st.one_of(st.none(), st.integers(min_value=1, max_value=40))
SEED = st.integers(min_value=0, max_value=2**31)
EPOCH = st.integers(min_value=0, max_value=1000)

PROPERTY = settings(max_examples=150, deadline=None)


def _padded(batch: list[int], lengths: list[int]) -> int:
    return len(batch) * max(lengths[i] for i in batch)


# -- training plans --------------------------------------------------------------------------------


@PROPERTY
@given(
    lengths=LENGTHS,
    max_tokens=BUDGET,
    max_len=MAX_LEN,
    max_sentences=MAX_SENTENCES,
    seed=SEED,
    epoch=EPOCH,
    shuffle=st.booleans(),
)
def test_training_plan_invariants(
    lengths: list[int],
    max_tokens: int,
    max_len: int | None,
    max_sentences: int | None,
    seed: int,
    epoch: int,
    shuffle: bool,
) -> None:
    plan = token_batches(
        lengths,
        max_tokens=max_tokens,
        seed=seed,
        epoch=epoch,
        shuffle=shuffle,
        max_len=max_len,
        max_sentences=max_sentences,
    )
    limit = max_tokens if max_len is None else min(max_len, max_tokens)
    expected_filtered = [i for i, n in enumerate(lengths) if n > limit]
    kept = [i for i, n in enumerate(lengths) if n <= limit]

    # Filtered: exactly the examples longer than min(max_len, max_tokens).
    assert sorted(plan.filtered) == expected_filtered
    # Every kept example exactly once.
    flat = [i for batch in plan.batches for i in batch]
    assert sorted(flat) == kept
    assert len(flat) == len(set(flat))
    assert all(plan.batches), "no empty batches"
    for batch in plan.batches:
        assert _padded(batch, lengths) <= max_tokens
        if max_sentences is not None:
            assert len(batch) <= max_sentences
    # The accounting matches a count by hand.
    assert plan.real_tokens == sum(lengths[i] for i in kept)
    assert plan.padded_tokens == sum(_padded(batch, lengths) for batch in plan.batches)
    assert len(plan) == len(plan.batches)
    assert list(plan) == plan.batches
    if kept:
        assert 0 < plan.padding_efficiency <= 1
        assert plan.padding_efficiency == pytest.approx(plan.real_tokens / plan.padded_tokens)
    else:
        assert plan.batches == []
        assert plan.padding_efficiency == 1.0


@PROPERTY
@given(lengths=LENGTHS, max_tokens=BUDGET, max_sentences=MAX_SENTENCES, seed=SEED, epoch=EPOCH)
def test_training_plan_is_reproducible(
    lengths: list[int], max_tokens: int, max_sentences: int | None, seed: int, epoch: int
) -> None:
    def plan() -> BatchPlan:
        return token_batches(
            lengths, max_tokens=max_tokens, seed=seed, epoch=epoch, max_sentences=max_sentences
        )

    first, second = plan(), plan()
    assert first.batches == second.batches
    assert first.filtered == second.filtered


@PROPERTY
@given(lengths=LENGTHS, max_tokens=BUDGET, seed=SEED, epoch=EPOCH)
def test_batches_are_cut_from_length_sorted_runs(
    lengths: list[int], max_tokens: int, seed: int, epoch: int
) -> None:
    """Batches hold neighbours in length order: their length ranges never interleave."""
    plan = token_batches(lengths, max_tokens=max_tokens, seed=seed, epoch=epoch)
    ranges = sorted((min(lengths[i] for i in b), max(lengths[i] for i in b)) for b in plan.batches)
    for (_, high), (low, _) in itertools.pairwise(ranges):
        assert high <= low


@PROPERTY
@given(lengths=LENGTHS, max_tokens=BUDGET)
def test_without_shuffle_batches_go_shortest_first(lengths: list[int], max_tokens: int) -> None:
    plan = token_batches(lengths, max_tokens=max_tokens, shuffle=False)
    flat = [lengths[i] for batch in plan.batches for i in batch]
    assert flat == sorted(flat)
    assert plan.batches == token_batches(lengths, max_tokens=max_tokens, shuffle=False, seed=99).batches


PAIRS = st.lists(
    st.tuples(st.integers(min_value=0, max_value=60), st.integers(min_value=0, max_value=60)), max_size=300
)


@PROPERTY
@given(pairs=PAIRS, max_tokens=BUDGET, seed=SEED, epoch=EPOCH, shuffle=st.booleans())
def test_second_key_keeps_plan_invariants(
    pairs: list[tuple[int, int]], max_tokens: int, seed: int, epoch: int, shuffle: bool
) -> None:
    """A second key changes only the order inside equal lengths: every example once, budget held,
    and, without shuffling, batches follow (length, second key)."""
    lengths = [max(a, b) + 1 for a, b in pairs]
    within = [a - b for a, b in pairs]
    plan = token_batches(
        lengths, max_tokens=max_tokens, seed=seed, epoch=epoch, shuffle=shuffle, within=within
    )
    plain = token_batches(lengths, max_tokens=max_tokens, seed=seed, epoch=epoch, shuffle=shuffle)
    kept = sorted(i for batch in plan.batches for i in batch)
    assert kept == sorted(i for batch in plain.batches for i in batch)
    assert plan.filtered == plain.filtered
    assert all(_padded(batch, lengths) <= max_tokens for batch in plan.batches)
    if not shuffle:
        flat = [(lengths[i], within[i]) for batch in plan.batches for i in batch]
        assert flat == sorted(flat)


def test_second_key_lowers_padding_of_both_sides() -> None:
    """Pairs of one length but mixed sides: ordering by ``len(src) - len(tgt)`` pads less."""
    from seqattn.training.translation import pair_lengths, pair_order

    sources = [[7] * (3 + (i * 7) % 20) for i in range(400)]
    targets = [[7] * (3 + (i * 11) % 20) for i in range(400)]
    lengths = pair_lengths(sources, targets)

    def padded(plan: BatchPlan) -> int:
        return sum(
            len(batch) * (max(len(sources[i]) for i in batch) + max(len(targets[i]) for i in batch))
            for batch in plan.batches
        )

    plain = token_batches(lengths, max_tokens=100, seed=1)
    ordered = token_batches(lengths, max_tokens=100, seed=1, within=pair_order(sources, targets))
    assert padded(ordered) < 0.9 * padded(plain)


def test_second_key_must_match_lengths() -> None:
    with pytest.raises(ValueError, match="within"):
        token_batches([1, 2, 3], max_tokens=10, within=[0, 1])


def test_different_epochs_give_different_orders() -> None:
    lengths = [(i * 37) % 50 + 1 for i in range(500)]
    plans = [token_batches(lengths, max_tokens=200, seed=3, epoch=epoch).batches for epoch in range(4)]
    assert all(a != b for a, b in itertools.pairwise(plans))
    # The batches themselves (as sets) change too: the tie-break inside equal lengths is reshuffled.
    as_sets = [{frozenset(batch) for batch in plan} for plan in plans]
    assert as_sets[0] != as_sets[1]


def test_different_seeds_give_different_orders() -> None:
    lengths = [(i * 37) % 50 + 1 for i in range(500)]
    a = token_batches(lengths, max_tokens=200, seed=1, epoch=0).batches
    b = token_batches(lengths, max_tokens=200, seed=2, epoch=0).batches
    assert a != b


def test_budget_fills_batches() -> None:
    """Equal lengths: each batch takes as many examples as the budget allows."""
    plan = token_batches([10] * 25, max_tokens=100, shuffle=False)
    assert [len(batch) for batch in plan.batches] == [10, 10, 5]
    assert plan.padding_efficiency == 1.0


def test_padding_efficiency_by_hand() -> None:
    lengths = [2, 3, 10]
    plan = token_batches(lengths, max_tokens=10, shuffle=False)
    # Sorted: 2, 3 | 10  ->  padded 2*3 + 1*10 = 16, real 15.
    assert plan.batches == [[0, 1], [2]]
    assert (plan.real_tokens, plan.padded_tokens) == (15, 16)
    assert plan.padding_efficiency == pytest.approx(15 / 16)


def test_max_len_and_budget_filter() -> None:
    plan = token_batches([5, 50, 8, 200, 9], max_tokens=100, max_len=8, shuffle=False)
    assert plan.filtered == [1, 3, 4]
    assert sorted(i for batch in plan for i in batch) == [0, 2]
    plan = token_batches([5, 150], max_tokens=100)
    assert plan.filtered == [1]


def test_empty_input() -> None:
    plan = token_batches([], max_tokens=10)
    assert plan.batches == [] and plan.filtered == []
    assert plan.padding_efficiency == 1.0
    assert inference_batches([], max_tokens=10).batches == []


@pytest.mark.parametrize("max_tokens", [0, -5])
def test_non_positive_budget_rejected(max_tokens: int) -> None:
    with pytest.raises(ValueError, match="max_tokens"):
        token_batches([1, 2], max_tokens=max_tokens)
    with pytest.raises(ValueError, match="max_tokens"):
        inference_batches([1, 2], max_tokens=max_tokens)


# -- inference plans ---------------------------------------------------------------------------------


@PROPERTY
@given(lengths=LENGTHS, max_tokens=BUDGET, max_sentences=MAX_SENTENCES)
def test_inference_plan_invariants(lengths: list[int], max_tokens: int, max_sentences: int | None) -> None:
    plan = inference_batches(lengths, max_tokens=max_tokens, max_sentences=max_sentences)
    flat = [i for batch in plan.batches for i in batch]
    # Every index exactly once, nothing filtered, even examples over the budget.
    assert sorted(flat) == list(range(len(lengths)))
    assert plan.filtered == []
    # Sorted by length, longest first.
    flat_lengths = [lengths[i] for i in flat]
    assert flat_lengths == sorted(flat_lengths, reverse=True)
    for batch in plan.batches:
        assert batch
        if len(batch) > 1:
            assert _padded(batch, lengths) <= max_tokens
        if max_sentences is not None:
            assert len(batch) <= max_sentences
    assert plan.real_tokens == sum(lengths)
    assert plan.padded_tokens == sum(_padded(batch, lengths) for batch in plan.batches)

    # Outputs per batch in plan order come back in input order.
    outputs = [[f"out{i}" for i in batch] for batch in plan.batches]
    assert restore_order(plan, outputs) == [f"out{i}" for i in range(len(lengths))]


def test_inference_example_over_budget_gets_its_own_batch() -> None:
    plan = inference_batches([3, 500, 4], max_tokens=10)
    assert plan.batches[0] == [1]
    assert sorted(i for batch in plan.batches[1:] for i in batch) == [0, 2]


def test_inference_ties_keep_input_order() -> None:
    plan = inference_batches([4, 4, 4, 9], max_tokens=100)
    assert [i for batch in plan for i in batch] == [3, 0, 1, 2]


def test_restore_order_checks_output_counts() -> None:
    plan = inference_batches([1, 2, 3], max_tokens=2)
    with pytest.raises(ValueError):
        restore_order(plan, [["a"] * (len(batch) + 1) for batch in plan.batches])
    with pytest.raises(ValueError):
        restore_order(plan, [["a"] * len(batch) for batch in plan.batches[:-1]])


# -- padding ----------------------------------------------------------------------------------------


def test_pad_batch_shapes_values_and_lengths() -> None:
    padded, lengths = pad_batch([[5, 6, 7], [8], [9, 10]])
    assert padded.dtype == torch.long and lengths.dtype == torch.long
    assert padded.tolist() == [[5, 6, 7], [8, PAD_ID, PAD_ID], [9, 10, PAD_ID]]
    assert lengths.tolist() == [3, 1, 2]


def test_pad_batch_custom_pad_id_and_empty_sequence() -> None:
    padded, lengths = pad_batch([[4, 4], []], pad_id=-1)
    assert padded.tolist() == [[4, 4], [-1, -1]]
    assert lengths.tolist() == [2, 0]


def test_pad_batch_of_nothing() -> None:
    padded, lengths = pad_batch([])
    assert padded.shape == (0, 0)
    assert lengths.shape == (0,)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.lists(st.integers(min_value=4, max_value=1000), max_size=20), min_size=1, max_size=16))
def test_pad_batch_property(sequences: list[list[int]]) -> None:
    padded, lengths = pad_batch(sequences)
    # At least one position, so a batch of empty sequences still has a (pad) key to attend to.
    assert padded.shape == (len(sequences), max(1, *(len(s) for s in sequences)))
    assert lengths.tolist() == [len(s) for s in sequences]
    for row, sequence in enumerate(sequences):
        assert padded[row, : len(sequence)].tolist() == sequence
        assert (padded[row, len(sequence) :] == PAD_ID).all()
