"""Lexical shortlists (:mod:`seqattn.decoding.shortlist`) and ``linear_outputs``.

* IBM Model 1 (:func:`ibm1_table`, :meth:`LexicalShortlist.build`) learns a synthetic lexicon
  that raw co-occurrence counts get wrong; frequent ids, unseen rows, short rows, bad arguments;
* :meth:`LexicalShortlist.columns`: sorted columns starting with the specials, each sentence's
  allowed set, independent of the rest of the batch (a hypothesis property);
* :class:`Shortlisted` with a shortlist of every id decodes exactly like the bare model (RNNs,
  Transformer, float32 and int8; greedy and beam search); a restrictive shortlist keeps every
  token of every hypothesis in its sentence's list, beam 1 equals greedy and the outputs do not
  depend on the batch; teacher forcing is unchanged; wrong models and vocabularies are refused;
* :func:`seqattn.quantization.linear_outputs` selects output features (exactly for int8 and for
  all features; float subsets may differ in the last bit);
* files: save/load roundtrip, one-line :class:`DataError` for every bad file, atomic saves.
"""

from __future__ import annotations

import functools
import os
import random
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor, nn

from seqattn.data.batching import pad_batch
from seqattn.data.tokenizer import BOS_ID, EOS_ID, PAD_ID, UNK_ID
from seqattn.decoding import Hypothesis, beam_search, greedy_search, translate_batches
from seqattn.decoding.shortlist import LexicalShortlist, Shortlisted, ibm1_table
from seqattn.errors import DataError
from seqattn.models.build import build_seq2seq
from seqattn.models.protocol import Seq2Seq
from seqattn.quantization import Int8Linear, linear_outputs, quantize_int8
from tests.decoding.tiny_configs import CONFIGS, VOCAB

SPECIALS = {PAD_ID, UNK_ID, BOS_ID, EOS_ID}
Search = Callable[..., list[list[Hypothesis]]]

# -- a synthetic parallel corpus with a known lexicon ---------------------------------------------

LEX_VOCAB = 48
CONTENT = range(8, 32)
"""Content ids, on both sides; source ids 32-47 (and the specials) never occur."""
SRC_FUNCTION = (4, 5, 6, 7)
TGT_FUNCTION = (5, 6, 7)
"""Function words; every target also holds id 4 twice."""


def translation(s: int) -> int:
    """The target id of content source id ``s`` (a permutation of ``CONTENT``)."""
    return 8 + ((s - 8) * 7 + 3) % 24


@functools.cache
def lexicon_corpus() -> tuple[tuple[tuple[int, ...], ...], tuple[tuple[int, ...], ...]]:
    """300 pairs: 1-4 content ids and their translations, with function words on both sides
    at random positions; the target function word 4 twice in every pair."""
    rng = random.Random(0)
    sources, targets = [], []
    for _ in range(300):
        content = rng.sample(CONTENT, rng.randint(1, 4))
        src = content + rng.choices(SRC_FUNCTION, k=rng.randint(1, 3))
        tgt = [translation(s) for s in content] + [4, 4] + rng.choices(TGT_FUNCTION, k=rng.randint(0, 2))
        rng.shuffle(src)
        rng.shuffle(tgt)
        sources.append(tuple(src))
        targets.append(tuple(tgt))
    return tuple(sources), tuple(targets)


@functools.cache
def lexicon_shortlist() -> LexicalShortlist:
    sources, targets = lexicon_corpus()
    return LexicalShortlist.build(
        sources, targets, src_vocab=LEX_VOCAB, tgt_vocab=LEX_VOCAB, top=3, frequent=2
    )


def cooccurrences(sources: Sequence[Sequence[int]], targets: Sequence[Sequence[int]]) -> dict[int, Counter]:
    """Per source id, how many target tokens of each id share a pair with it."""
    counts: dict[int, Counter] = {}
    for src, tgt in zip(sources, targets, strict=True):
        for s in set(src):
            counts.setdefault(s, Counter()).update(tgt)
    return counts


def expected_allowed(shortlist: LexicalShortlist, sentence: Sequence[int]) -> set[int]:
    """The ids a sentence may produce, from the table, computed independently of ``columns``."""
    ids = set(SPECIALS) | set(shortlist.frequent.tolist())
    for s in sentence:
        ids.update(shortlist.table[s].tolist())
    return ids


def allowed_sets(shortlist: LexicalShortlist, src: Tensor) -> list[set[int]]:
    vocab, allowed = shortlist.columns(src)
    return [set(vocab[row].tolist()) for row in allowed]


# -- IBM Model 1 ----------------------------------------------------------------------------------


def test_em_learns_the_lexicon_that_cooccurrence_counts_get_wrong() -> None:
    sources, targets = lexicon_corpus()
    counts = cooccurrences(sources, targets)
    for s in CONTENT:  # the premise: a function word co-occurs more often than the translation
        assert counts[s][4] > counts[s][translation(s)], s

    shortlist = lexicon_shortlist()
    assert shortlist.table.shape == (LEX_VOCAB, 3) and shortlist.pairs == len(sources)
    assert {s: int(shortlist.table[s, 0]) for s in CONTENT} == {s: translation(s) for s in CONTENT}

    # One EM iteration is co-occurrence counting (from uniform): the function word wins there.
    once = LexicalShortlist.build(
        sources, targets, src_vocab=LEX_VOCAB, tgt_vocab=LEX_VOCAB, top=1, frequent=0, iterations=1
    )
    assert all(int(once.table[s, 0]) == 4 for s in CONTENT)


def test_ibm1_table_is_a_distribution_over_the_cooccurring_pairs() -> None:
    sources, targets = lexicon_corpus()
    calls: list[int] = []
    src_ids, tgt_ids, probs = ibm1_table(
        sources, targets, src_vocab=LEX_VOCAB, tgt_vocab=LEX_VOCAB, iterations=3, progress=calls.append
    )
    assert calls == [0, 1, 2]
    counts = cooccurrences(sources, targets)
    all_targets = {t for tgt in targets for t in tgt}
    expected = {(s, t) for s, counter in counts.items() for t in counter}
    expected |= {(LEX_VOCAB, t) for t in all_targets}  # the NULL source
    pairs = list(zip(src_ids.tolist(), tgt_ids.tolist(), strict=True))
    assert len(pairs) == len(set(pairs)) and set(pairs) == expected
    assert bool((probs > 0).all())
    totals = torch.zeros(LEX_VOCAB + 1, dtype=torch.float64).index_add_(0, src_ids, probs)
    seen = [*sorted(counts), LEX_VOCAB]
    torch.testing.assert_close(totals[seen], torch.ones(len(seen), dtype=torch.float64))


def test_ibm1_table_does_not_depend_on_the_em_chunk_size(monkeypatch: pytest.MonkeyPatch) -> None:
    sources, targets = lexicon_corpus()
    options = {"src_vocab": LEX_VOCAB, "tgt_vocab": LEX_VOCAB, "iterations": 3}
    whole = ibm1_table(sources, targets, **options)
    monkeypatch.setattr("seqattn.decoding.shortlist._CHUNK_CELLS", 40)  # chunks of a few pairs
    chunked = ibm1_table(sources, targets, **options)
    assert torch.equal(whole[0], chunked[0]) and torch.equal(whole[1], chunked[1])
    torch.testing.assert_close(whole[2], chunked[2], rtol=1e-12, atol=1e-15)


def test_frequent_ids_unseen_rows_and_short_rows() -> None:
    sources, targets = lexicon_corpus()
    shortlist = lexicon_shortlist()
    frequency = Counter(t for tgt in targets for t in tgt).most_common()
    assert frequency[1][1] > frequency[2][1]  # no tie at the cut
    assert shortlist.frequent.tolist() == sorted(t for t, _ in frequency[:2])

    seen = {s for src in sources for s in src}
    for s in range(LEX_VOCAB):
        if s not in seen:
            assert shortlist.table[s].tolist() == [EOS_ID] * shortlist.top, s

    # More translations asked for than co-occur: the candidates, then EOS.
    wide = LexicalShortlist.build(
        sources, targets, src_vocab=LEX_VOCAB, tgt_vocab=LEX_VOCAB, top=LEX_VOCAB + 5, frequent=100
    )
    assert wide.table.shape == (LEX_VOCAB, LEX_VOCAB + 5)
    counts = cooccurrences(sources, targets)
    for s in seen:
        row, n = wide.table[s].tolist(), len(counts[s])
        assert sorted(row[:n]) == sorted(counts[s]) and row[n:] == [EOS_ID] * (len(row) - n), s
    assert wide.frequent.tolist() == sorted({t for tgt in targets for t in tgt})  # only ids that occur


@pytest.mark.parametrize(
    ("sources", "targets", "options"),
    [
        ([[4]], [[5]], {"top": 0}),
        ([[4]], [[5]], {"frequent": -1}),
        ([[4]], [[5]], {"iterations": 0}),
        ([], [], {}),
        ([[4], [5]], [[5]], {}),
    ],
    ids=["top-0", "frequent-negative", "iterations-0", "empty", "mismatched"],
)
def test_build_refuses_bad_arguments(
    sources: list[list[int]], targets: list[list[int]], options: dict[str, int]
) -> None:
    with pytest.raises(ValueError):
        LexicalShortlist.build(sources, targets, src_vocab=8, tgt_vocab=8, **options)


def test_ibm1_table_refuses_mismatched_lengths() -> None:
    with pytest.raises(ValueError):
        ibm1_table([[4], [5]], [[4]], src_vocab=8, tgt_vocab=8)


def test_shortlist_refuses_ids_outside_the_target_vocabulary() -> None:
    with pytest.raises(ValueError):
        LexicalShortlist(torch.full((4, 2), 8), torch.arange(0), 8)
    with pytest.raises(ValueError):
        LexicalShortlist(torch.full((4, 2), 3), torch.tensor([-1]), 8)


def test_padding_adds_no_candidates() -> None:
    """``columns`` looks padding up like a source piece, so the ``<pad>`` row must stay empty:
    ``build`` keeps it so even when a training source holds id 0, and a table whose ``<pad>``
    row lists pieces is refused."""
    shortlist = LexicalShortlist.build(
        [[0, 5], [6]], [[7], [8]], src_vocab=10, tgt_vocab=10, top=2, frequent=0
    )
    alone, padded = (shortlist.columns(torch.tensor(src)) for src in ([[6]], [[6, PAD_ID]]))
    assert alone[0][alone[1][0]].tolist() == padded[0][padded[1][0]].tolist()
    table = torch.full((4, 2), EOS_ID)
    table[PAD_ID, 0] = 5
    with pytest.raises(ValueError, match="pad"):
        LexicalShortlist(table, torch.arange(0), 8)


# -- columns ---------------------------------------------------------------------------------------


def test_columns_are_sorted_ids_starting_with_the_specials() -> None:
    shortlist = lexicon_shortlist()
    sentences = [[8, 4, 9], [31], [12, 13, 14, 15, 5, 40], [33]]
    src, _ = pad_batch(sentences)
    vocab, allowed = shortlist.columns(src)
    assert vocab[:4].tolist() == [PAD_ID, UNK_ID, BOS_ID, EOS_ID] == [0, 1, 2, 3]
    assert bool((vocab[1:] > vocab[:-1]).all())
    assert allowed.shape == (len(sentences), vocab.numel()) and allowed.dtype == torch.bool
    assert bool(allowed.any(dim=0).all())  # no column nobody may use
    for i, sentence in enumerate(sentences):
        assert set(vocab[allowed[i]].tolist()) == expected_allowed(shortlist, sentence), i
    # The lexicon's translations are in the list, other content ids are not.
    assert translation(8) in set(vocab[allowed[0]].tolist())
    assert translation(31) not in set(vocab[allowed[0]].tolist())
    assert set(vocab[allowed[3]].tolist()) == SPECIALS | set(shortlist.frequent.tolist())  # unseen id


@settings(max_examples=30, deadline=None)
@given(
    sentences=st.lists(
        st.lists(st.integers(4, LEX_VOCAB - 1), min_size=1, max_size=8), min_size=1, max_size=6
    ),
    seed=st.integers(0, 2**16),
    extra_padding=st.integers(0, 3),
)
def test_a_sentences_list_does_not_depend_on_its_batch(
    sentences: list[list[int]], seed: int, extra_padding: int
) -> None:
    shortlist = lexicon_shortlist()
    alone = [allowed_sets(shortlist, torch.tensor([sentence]))[0] for sentence in sentences]
    for i, sentence in enumerate(sentences):
        assert alone[i] == expected_allowed(shortlist, sentence)
    order = list(range(len(sentences)))
    random.Random(seed).shuffle(order)
    src, _ = pad_batch([sentences[i] for i in order])
    src = torch.cat([src, torch.full((src.size(0), extra_padding), PAD_ID)], dim=1)
    together = allowed_sets(shortlist, src)
    for position, index in enumerate(order):
        assert together[position] == alone[index]


# -- decoding with real models ---------------------------------------------------------------------

SEARCHES: dict[str, tuple[Search, dict]] = {
    "greedy": (greedy_search, {}),
    "beam": (beam_search, {"beam_size": 3, "n_best": 2, "length_penalty": 0.6}),
}


def make_model(name: str, *, int8: bool = False) -> nn.Module:
    """A seeded random model in eval mode; weights scaled by 1.5 so that outputs vary more with
    the input (as in ``test_batch_invariance``)."""
    torch.manual_seed(0)
    model = build_seq2seq(CONFIGS[name], src_vocab=VOCAB, tgt_vocab=VOCAB)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.mul_(1.5)
    return quantize_int8(model) if int8 else model.eval()


def decode_sources(count: int, seed: int) -> list[list[int]]:
    """``count`` sources of 1 to 12 content ids."""
    rng = random.Random(seed)
    return [[rng.randrange(4, VOCAB) for _ in range(1 + i % 12)] for i in range(count)]


@functools.cache
def restrictive_shortlist() -> LexicalShortlist:
    """Built on random pairs with ``top=2, frequent=1``: a few ids per source piece."""
    rng = random.Random(1)
    sources = [[rng.randrange(4, VOCAB) for _ in range(rng.randint(1, 6))] for _ in range(200)]
    targets = [[rng.randrange(4, VOCAB) for _ in range(rng.randint(1, 6))] for _ in range(200)]
    return LexicalShortlist.build(sources, targets, src_vocab=VOCAB, tgt_vocab=VOCAB, top=2, frequent=1)


def everything(vocab: int) -> LexicalShortlist:
    """A shortlist that allows every target id (through every row but ``<pad>``'s)."""
    table = torch.arange(vocab).repeat(vocab, 1)
    table[PAD_ID] = EOS_ID
    return LexicalShortlist(table, torch.arange(0), vocab)


def decode(
    model: nn.Module, sources: list[list[int]], search: Search, options: dict
) -> list[list[Hypothesis]]:
    src, lengths = pad_batch(sources)
    return search(model, src, lengths, **options)


def assert_same(got: list[Hypothesis], want: list[Hypothesis], where: str, *, tolerance: float) -> None:
    assert [h.tokens for h in got] == [h.tokens for h in want], where
    for a, b in zip(got, want, strict=True):
        assert abs(a.score - b.score) <= tolerance, (where, a.score, b.score)
        assert abs(a.log_prob - b.log_prob) <= tolerance * max(1.0, abs(b.log_prob)), where
        torch.testing.assert_close(
            a.token_log_probs, b.token_log_probs, atol=tolerance, rtol=tolerance, msg=where
        )


@pytest.mark.parametrize("search_name", SEARCHES)
@pytest.mark.parametrize("int8", [False, True], ids=["float32", "int8"])
@pytest.mark.parametrize("name", CONFIGS)
def test_a_shortlist_of_every_id_decodes_like_the_model(name: str, int8: bool, search_name: str) -> None:
    model = make_model(name, int8=int8)
    wrapped = Shortlisted(model, everything(VOCAB)).eval()
    assert isinstance(wrapped, Seq2Seq)
    search, options = SEARCHES[search_name]
    sources = decode_sources(16, seed=2)
    want = decode(model, sources, search, options)
    got = decode(wrapped, sources, search, options)
    assert len({tuple(h[0].tokens) for h in want}) >= 4, "too few distinct outputs to mean much"
    if search_name == "beam":
        assert all(len(h) == options["n_best"] for h in want)
    for i, (a, b) in enumerate(zip(got, want, strict=True)):
        assert_same(a, b, f"sentence {i}", tolerance=1e-6)


def test_step_reports_the_columns_and_masks_each_sentences_list() -> None:
    model = make_model("transformer")
    shortlist = restrictive_shortlist()
    wrapped = Shortlisted(model, shortlist)
    sources = decode_sources(5, seed=3)
    src, lengths = pad_batch(sources)
    vocab, allowed = shortlist.columns(src)
    assert vocab.numel() < VOCAB  # the batch's columns are a proper subset
    with torch.no_grad():
        out, _ = wrapped.step(torch.full((len(sources),), BOS_ID), wrapped.encode(src, lengths))
    assert out.vocab is not None and torch.equal(out.vocab, vocab)
    assert out.logits.shape == (len(sources), vocab.numel())
    assert torch.equal(torch.isfinite(out.logits), allowed)
    with torch.no_grad():
        full, _ = model.step(torch.full((len(sources),), BOS_ID), model.encode(src, lengths))
    torch.testing.assert_close(out.logits[allowed], full.logits[:, vocab][allowed], rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", CONFIGS)
def test_a_restrictive_shortlist_keeps_every_token_in_the_sentences_list(name: str) -> None:
    model = make_model(name)
    shortlist = restrictive_shortlist()
    wrapped = Shortlisted(model, shortlist)
    sources = decode_sources(24, seed=4)
    lists = [expected_allowed(shortlist, sentence) for sentence in sources]
    assert any(len(ids) < VOCAB // 2 for ids in lists)

    outside = 0  # the bare model does produce ids outside the lists: the test can fail
    for hyps, ids in zip(decode(model, sources, greedy_search, {}), lists, strict=True):
        outside += sum(t not in ids for h in hyps for t in h.tokens)
    assert outside > 0

    greedy = decode(wrapped, sources, greedy_search, {})
    beam = decode(wrapped, sources, beam_search, {"beam_size": 3, "n_best": 3})
    beam1 = decode(wrapped, sources, beam_search, {"beam_size": 1})
    for i, ids in enumerate(lists):
        assert len(greedy[i]) == 1 and len(beam[i]) == 3, i
        for hypothesis in greedy[i] + beam[i]:
            assert set(hypothesis.tokens) <= ids, (i, hypothesis.tokens, ids)
            assert bool(torch.isfinite(hypothesis.token_log_probs).all())
        assert_same(beam1[i], greedy[i], f"beam 1 vs greedy, sentence {i}", tolerance=1e-5)


@pytest.mark.parametrize("search_name", SEARCHES)
@pytest.mark.parametrize("name", CONFIGS)
def test_shortlisted_outputs_do_not_depend_on_the_batch(name: str, search_name: str) -> None:
    wrapped = Shortlisted(make_model(name), restrictive_shortlist())
    search, options = SEARCHES[search_name]
    sources = decode_sources(21, seed=5)
    alone = [decode(wrapped, [source], search, options)[0] for source in sources]
    assert len({tuple(h[0].tokens) for h in alone}) >= 5, "too few distinct outputs to mean much"
    sevens = [
        hyps
        for start in range(0, 21, 7)
        for hyps in decode(wrapped, sources[start : start + 7], search, options)
    ]
    together = decode(wrapped, sources, search, options)
    sorted_batches = translate_batches(
        wrapped, sources, max_tokens=1 << 20, max_sentences=7, search=search, **options
    )
    for way, results in (("sevens", sevens), ("together", together), ("translate_batches", sorted_batches)):
        for i, hyps in enumerate(results):
            assert_same(hyps, alone[i], f"{way}, sentence {i}", tolerance=1e-5)


@pytest.mark.parametrize("name", CONFIGS)
def test_teacher_forcing_is_not_restricted(name: str) -> None:
    model = make_model(name)
    wrapped = Shortlisted(model, restrictive_shortlist())
    src, lengths = pad_batch(decode_sources(6, seed=6))
    tgt_in, _ = pad_batch([[BOS_ID, *source[::-1]] for source in decode_sources(6, seed=7)])
    with torch.no_grad():
        want_logits, want_attention = model(src, lengths, tgt_in)
        got_logits, got_attention = wrapped(src, lengths, tgt_in)
    assert got_logits.shape[-1] == VOCAB
    assert torch.equal(got_logits, want_logits) and torch.equal(got_attention, want_attention)


def test_shortlisted_refuses_models_without_an_output_projection() -> None:
    shortlist = everything(VOCAB)
    with pytest.raises(TypeError):
        Shortlisted(nn.Module(), shortlist)
    no_features = make_model("transformer")
    no_features.output = nn.Identity()
    with pytest.raises(TypeError):
        Shortlisted(no_features, shortlist)


@pytest.mark.parametrize("int8", [False, True], ids=["float32", "int8"])
def test_shortlisted_refuses_a_shortlist_for_another_vocabulary(int8: bool) -> None:
    model = make_model("rnn-bahdanau", int8=int8)
    for vocab in (VOCAB - 1, VOCAB + 1):
        with pytest.raises(DataError, match=f"{vocab}"):
            Shortlisted(model, LexicalShortlist(torch.full((VOCAB, 2), EOS_ID), torch.arange(0), vocab))


# -- linear_outputs ---------------------------------------------------------------------------------


@pytest.mark.parametrize("int8", [False, True], ids=["float", "int8"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
def test_linear_outputs_selects_output_features(bias: bool, int8: bool) -> None:
    """Exactly for int8 (integer sums, then per-element scaling) and for all features in order;
    a float product over fewer output features may take another BLAS kernel and round the last
    bit differently (seen for 1 and 2 features), so float subsets get a 1e-6 tolerance."""
    torch.manual_seed(0)
    linear: nn.Module = nn.Linear(16, 40, bias=bias)
    if int8:
        linear = Int8Linear.from_float(linear)
    indices = [
        torch.arange(40),
        torch.tensor([0, 1, 2, 3, 7, 19, 39]),
        torch.tensor([5]),
        torch.tensor([5, 6]),
        torch.tensor([30, 2, 11, 2]),
    ]
    for index in indices:
        selected = linear_outputs(linear, index)
        assert (selected.in_features, selected.out_features) == (16, index.numel())
        exact = int8 or index.numel() == 40
        for x in (torch.randn(5, 16), torch.randn(2, 3, 16), torch.randn(1, 16)):
            with torch.no_grad():
                got, want = selected(x), linear(x)[..., index]
            assert got.shape == want.shape, index.tolist()
            if exact:
                assert torch.equal(got, want), index.tolist()
            else:
                torch.testing.assert_close(got, want, rtol=0, atol=1e-6, msg=str(index.tolist()))


# -- files ----------------------------------------------------------------------------------------


def assert_same_shortlist(a: LexicalShortlist, b: LexicalShortlist) -> None:
    assert torch.equal(a.table, b.table) and a.table.dtype == b.table.dtype == torch.long
    assert torch.equal(a.frequent, b.frequent) and a.frequent.dtype == b.frequent.dtype
    assert (a.tgt_vocab, a.pairs, a.src_vocab, a.top) == (b.tgt_vocab, b.pairs, b.src_vocab, b.top)


def test_save_load_roundtrip_leaves_no_temporary_files(tmp_path: Path) -> None:
    shortlist = lexicon_shortlist()
    path = tmp_path / "shortlist.pt"
    shortlist.save(path)
    assert os.listdir(tmp_path) == ["shortlist.pt"]
    assert_same_shortlist(LexicalShortlist.load(path), shortlist)
    assert_same_shortlist(LexicalShortlist.load(path, src_vocab=LEX_VOCAB, tgt_vocab=LEX_VOCAB), shortlist)

    other = restrictive_shortlist()
    other.save(path)  # over the existing file
    assert os.listdir(tmp_path) == ["shortlist.pt"]
    assert_same_shortlist(LexicalShortlist.load(path), other)


def test_a_failed_save_keeps_the_old_file_and_leaves_no_temporary_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "shortlist.pt"
    lexicon_shortlist().save(path)

    def fail(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", fail)
    with pytest.raises(OSError, match="disk full"):
        restrictive_shortlist().save(path)
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["shortlist.pt"]
    assert_same_shortlist(LexicalShortlist.load(path), lexicon_shortlist())


def saved_state(**changes: object) -> dict[str, object]:
    """What :meth:`LexicalShortlist.save` writes for a small shortlist, with ``changes``."""
    state: dict[str, object] = {
        "format": "seqattn-shortlist",
        "version": 1,
        "table": torch.full((6, 2), EOS_ID, dtype=torch.int32),
        "frequent": torch.tensor([4], dtype=torch.int32),
        "tgt_vocab": 8,
        "pairs": 3,
    }
    state.update(changes)
    return {key: value for key, value in state.items() if value is not None}


BAD_FILES: dict[str, Callable[[Path], None]] = {
    "missing": lambda path: None,
    "garbage": lambda path: path.write_bytes(b"\x00\x01not a torch file\xff" * 10),
    "empty": lambda path: path.write_bytes(b""),
    "a-list": lambda path: torch.save([1, 2, 3], path),
    "another-format": lambda path: torch.save({"format": "seqattn-checkpoint", "version": 1}, path),
    "no-format": lambda path: torch.save({"table": torch.zeros(2, 2)}, path),
    "wrong-version": lambda path: torch.save(saved_state(version=2), path),
    "no-version": lambda path: torch.save(saved_state(version=None), path),
    "no-table": lambda path: torch.save(saved_state(table=None), path),
    "table-not-a-tensor": lambda path: torch.save(saved_state(table=[[3, 3]]), path),
    "ids-outside-vocab": lambda path: torch.save(saved_state(frequent=torch.tensor([9])), path),
}


@pytest.mark.parametrize("kind", BAD_FILES)
def test_load_reports_bad_files_in_one_line(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "bad.pt"
    BAD_FILES[kind](path)
    with pytest.raises(DataError) as error:
        LexicalShortlist.load(path)
    message = str(error.value)
    assert str(path) in message and "\n" not in message, message


@pytest.mark.parametrize(
    ("src_vocab", "tgt_vocab", "words"),
    [(7, None, "source vocabulary of 6"), (None, 9, "target vocabulary of 8"), (7, 9, "source")],
)
def test_load_refuses_other_vocabulary_sizes(
    tmp_path: Path, src_vocab: int | None, tgt_vocab: int | None, words: str
) -> None:
    path = tmp_path / "shortlist.pt"
    torch.save(saved_state(), path)
    shortlist = LexicalShortlist.load(path, src_vocab=6, tgt_vocab=8)  # the right sizes load
    assert (shortlist.src_vocab, shortlist.tgt_vocab, shortlist.pairs) == (6, 8, 3)
    with pytest.raises(DataError) as error:
        LexicalShortlist.load(path, src_vocab=src_vocab, tgt_vocab=tgt_vocab)
    message = str(error.value)
    assert str(path) in message and words in message and "\n" not in message, message
