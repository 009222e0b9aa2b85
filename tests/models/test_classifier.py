"""Attention-pooling classifiers: shapes, exact zero weight on padding, weights summing to one,
batch and padding invariance, empty texts, gradient flow, and a tiny hierarchical task learned
from scratch."""

from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F

from seqattn.attention import padding_mask
from seqattn.config import ClassifierConfig
from seqattn.data.batching import pad_batch
from seqattn.data.tokenizer import PAD_ID, UNK_ID
from seqattn.errors import ConfigError
from seqattn.models.classifier import AttentionClassifier, HierarchicalClassifier, SequenceEncoder

VOCAB, CLASSES = 30, 3
ENCODERS = ("bilstm", "transformer", "none")
SCORES = ("scaled_dot", "additive")
QUERIES = (1, 2)
VARIANTS = [(e, s, q) for e in ENCODERS for s in SCORES for q in QUERIES]
IDS = [f"{e}-{s}-q{q}" for e, s, q in VARIANTS]


@pytest.fixture(autouse=True)
def _seeded(one_thread: None) -> None:
    """Deterministic parameters and inputs, on one intra-op thread (the models are tiny)."""
    torch.manual_seed(0)


def _flat(encoder: str, score: str, queries: int, *, dropout: float = 0.0) -> AttentionClassifier:
    return AttentionClassifier(
        VOCAB,
        CLASSES,
        embed_dim=8,
        encoder=encoder,
        hidden_size=6,
        num_heads=2,
        pooling_score=score,
        pooling_queries=queries,
        dropout=dropout,
    )


def _hierarchical(encoder: str, score: str, queries: int, **options) -> HierarchicalClassifier:
    settings = {"embed_dim": 8, "hidden_size": 6, "num_heads": 2, "dropout": 0.0, **options}
    return HierarchicalClassifier(
        VOCAB, CLASSES, encoder=encoder, pooling_score=score, pooling_queries=queries, **settings
    )


def _texts(lengths: list[int], seed: int = 0) -> list[list[int]]:
    generator = random.Random(seed)
    return [[generator.randrange(4, VOCAB) for _ in range(n)] for n in lengths]


def _documents(shape: list[list[int]], seed: int = 0) -> list[list[list[int]]]:
    """``shape[b]`` lists the sentence lengths of document ``b``."""
    generator = random.Random(seed)
    return [[[generator.randrange(4, VOCAB) for _ in range(n)] for n in doc] for doc in shape]


def _collate_documents(documents: list[list[list[int]]], *, sentences: int = 0, width: int = 0):
    """``(B, S, T)`` ids, ``(B, S)`` word lengths and ``(B,)`` counts, padded at least to the sizes given."""
    s = max(sentences, max(len(d) for d in documents), 1)
    t = max(width, max((len(x) for d in documents for x in d), default=1), 1)
    ids = torch.full((len(documents), s, t), PAD_ID, dtype=torch.long)
    word_lengths = torch.zeros(len(documents), s, dtype=torch.long)
    for b, doc in enumerate(documents):
        for i, sentence in enumerate(doc):
            ids[b, i, : len(sentence)] = torch.tensor(sentence)
            word_lengths[b, i] = len(sentence)
    return ids, word_lengths, torch.tensor([len(d) for d in documents])


# -- flat ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("encoder", "score", "queries"), VARIANTS, ids=IDS)
def test_flat_output_shapes(encoder: str, score: str, queries: int) -> None:
    model = _flat(encoder, score, queries).eval()
    ids, lengths = pad_batch(_texts([3, 7, 1, 5]))
    out = model(ids, lengths)
    assert out.logits.shape == (4, CLASSES)
    assert out.weights.shape == (4, queries, 7)
    assert out.sentence_weights is None
    assert torch.isfinite(out.logits).all()


@pytest.mark.parametrize(("encoder", "score", "queries"), VARIANTS, ids=IDS)
def test_flat_padding_gets_exactly_zero_weight_and_rows_sum_to_one(
    encoder: str, score: str, queries: int
) -> None:
    model = _flat(encoder, score, queries, dropout=0.3).train()  # also true with dropout active
    ids, lengths = pad_batch(_texts([2, 9, 5, 1, 9]))
    weights = model(ids, lengths).weights  # (B, Q, T)
    real = padding_mask(lengths, max_len=ids.size(1))[:, None, :].expand_as(weights)
    assert (weights[~real] == 0).all()
    assert (weights[real] > 0).all()
    torch.testing.assert_close(weights.sum(-1), torch.ones(5, queries), atol=1e-6, rtol=0)


@pytest.mark.parametrize(("encoder", "score", "queries"), VARIANTS, ids=IDS)
def test_flat_prediction_ignores_batch_companions_and_padding(encoder: str, score: str, queries: int) -> None:
    model = _flat(encoder, score, queries, dropout=0.3).eval()
    texts = _texts([4, 11, 2, 7, 4])
    ids, lengths = pad_batch(texts)
    batched = model(ids, lengths)
    for row, text in enumerate(texts):
        alone = model(*pad_batch([text]))
        torch.testing.assert_close(batched.logits[row], alone.logits[0], atol=1e-5, rtol=0)
        torch.testing.assert_close(batched.weights[row, :, : len(text)], alone.weights[0], atol=1e-5, rtol=0)
        # Extra padding on the right changes nothing either.
        padded = torch.full((1, len(text) + 6), PAD_ID, dtype=torch.long)
        padded[0, : len(text)] = torch.tensor(text)
        longer = model(padded, torch.tensor([len(text)]))
        torch.testing.assert_close(longer.logits[0], alone.logits[0], atol=1e-5, rtol=0)
        assert (longer.weights[0, :, len(text) :] == 0).all()


@pytest.mark.parametrize(("encoder", "score", "queries"), VARIANTS, ids=IDS)
def test_flat_empty_text_gives_finite_logits(encoder: str, score: str, queries: int) -> None:
    model = _flat(encoder, score, queries).eval()
    ids, lengths = pad_batch([[], *_texts([3])])  # the empty text is padded to width 3
    out = model(ids, lengths)
    assert torch.isfinite(out.logits).all()
    assert torch.isfinite(out.weights).all()
    assert (out.weights[0, :, 1:] == 0).all()  # it attends to its single pad position at most
    # The other example is unaffected by the empty one.
    alone = model(*pad_batch(_texts([3])))
    torch.testing.assert_close(out.logits[1], alone.logits[0], atol=1e-5, rtol=0)


@pytest.mark.parametrize(("encoder", "score", "queries"), VARIANTS, ids=IDS)
def test_flat_gradients_reach_every_parameter(encoder: str, score: str, queries: int) -> None:
    model = _flat(encoder, score, queries, dropout=0.1).train()
    ids, lengths = pad_batch(_texts([3, 6, 5, 2]))
    out = model(ids, lengths)
    F.cross_entropy(out.logits, torch.tensor([0, 1, 2, 1])).backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None, name
        assert torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().sum() > 0, name


def test_unknown_encoder_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"model\.encoder"):
        SequenceEncoder(8, kind="gru", hidden_size=4, num_layers=1, num_heads=2, dropout=0.0)
    with pytest.raises(ConfigError, match="num_heads"):
        SequenceEncoder(10, kind="transformer", hidden_size=4, num_layers=1, num_heads=4, dropout=0.0)


@pytest.mark.parametrize("encoder", ENCODERS)
def test_sequence_encoder_zeroes_padding_rows(encoder: str) -> None:
    module = SequenceEncoder(8, kind=encoder, hidden_size=5, num_layers=2, num_heads=2, dropout=0.0).eval()
    x = torch.randn(3, 6, 8)
    lengths = torch.tensor([6, 2, 4])
    pad = ~padding_mask(lengths, max_len=6)
    x[pad] = 0.0  # as embeddings of PAD_ID are
    states = module(x, lengths)
    assert states.shape == (3, 6, module.output_dim)
    assert (states[pad] == 0).all()


# -- hierarchical --------------------------------------------------------------------------------

DOC_SHAPE = [[3, 5], [2, 4, 1], [6], [1, 1, 2]]  # sentence lengths per document


@pytest.mark.parametrize(("encoder", "score", "queries"), VARIANTS, ids=IDS)
def test_hierarchical_shapes_and_zero_weight_on_padding(encoder: str, score: str, queries: int) -> None:
    model = _hierarchical(encoder, score, queries).eval()
    ids, word_lengths, counts = _collate_documents(_documents(DOC_SHAPE))
    out = model(ids, word_lengths, counts)
    b, s, t = ids.shape
    assert (b, s, t) == (4, 3, 6)
    assert out.logits.shape == (b, CLASSES)
    assert out.weights.shape == (b, s, 1, t)
    assert out.sentence_weights is not None
    assert out.sentence_weights.shape == (b, queries, s)
    assert torch.isfinite(out.logits).all()

    present = padding_mask(counts, max_len=s)  # (B, S)
    words = word_lengths[..., None] > torch.arange(t)  # (B, S, T): real words of real sentences
    word_weights = out.weights[:, :, 0, :]
    assert (word_weights[~words] == 0).all()  # padded words and whole missing sentences
    assert (word_weights[words] > 0).all()
    torch.testing.assert_close(word_weights.sum(-1), present.float(), atol=1e-6, rtol=0)

    sentence_weights = out.sentence_weights
    missing = ~present[:, None, :].expand_as(sentence_weights)
    assert (sentence_weights[missing] == 0).all()
    assert (sentence_weights[~missing] > 0).all()
    torch.testing.assert_close(sentence_weights.sum(-1), torch.ones(b, queries), atol=1e-6, rtol=0)


@pytest.mark.parametrize(("encoder", "score", "queries"), VARIANTS, ids=IDS)
def test_hierarchical_prediction_ignores_batch_companions_and_padding(
    encoder: str, score: str, queries: int
) -> None:
    model = _hierarchical(encoder, score, queries, dropout=0.3).eval()
    documents = _documents(DOC_SHAPE, seed=1)
    batched = model(*_collate_documents(documents))
    for row, doc in enumerate(documents):
        alone = model(*_collate_documents([doc]))
        extra = model(*_collate_documents([doc], sentences=len(doc) + 2, width=9))  # more padding
        width = max(len(x) for x in doc)
        for other in (batched, extra):
            index = row if other is batched else 0
            torch.testing.assert_close(other.logits[index], alone.logits[0], atol=1e-5, rtol=0)
            torch.testing.assert_close(
                other.weights[index, : len(doc), :, :width], alone.weights[0], atol=1e-5, rtol=0
            )
            torch.testing.assert_close(
                other.sentence_weights[index, :, : len(doc)], alone.sentence_weights[0], atol=1e-5, rtol=0
            )


@pytest.mark.parametrize("encoder", ENCODERS)
def test_hierarchical_empty_document_gives_finite_logits(encoder: str) -> None:
    model = _hierarchical(encoder, "additive", 2).eval()
    # A document without sentences and one whose only sentence is empty, next to a real one.
    ids, word_lengths, counts = _collate_documents([[], [[]], [[5, 6, 7]]])
    out = model(ids, word_lengths, counts)
    assert torch.isfinite(out.logits).all()
    assert torch.isfinite(out.weights).all() and torch.isfinite(out.sentence_weights).all()
    alone = model(*_collate_documents([[[5, 6, 7]]]))
    torch.testing.assert_close(out.logits[2], alone.logits[0], atol=1e-5, rtol=0)


@pytest.mark.parametrize("encoder", ENCODERS)
def test_hierarchical_gradients_reach_every_parameter(encoder: str) -> None:
    model = _hierarchical(encoder, "additive", 2, dropout=0.1).train()
    out = model(*_collate_documents(_documents(DOC_SHAPE, seed=2)))
    F.cross_entropy(out.logits, torch.tensor([0, 1, 2, 0])).backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None, name
        assert torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().sum() > 0, name


KEYWORDS = {0: (4, 5, 6), 1: (7, 8, 9), 2: (10, 11, 12)}  # topic -> its keyword ids; filler is 13..29


def _topic_documents(count: int, seed: int) -> tuple[list[list[list[int]]], list[int]]:
    """Documents of 2-4 filler sentences; one or two sentences carry keywords of the topic."""
    generator = random.Random(seed)
    documents, topics = [], []
    for index in range(count):
        topic = index % len(KEYWORDS)
        doc = [
            [generator.randrange(13, VOCAB) for _ in range(generator.randint(2, 5))]
            for _ in range(generator.randint(2, 4))
        ]
        for s in generator.sample(range(len(doc)), generator.randint(1, 2)):
            doc[s].insert(generator.randrange(len(doc[s]) + 1), generator.choice(KEYWORDS[topic]))
        documents.append(doc)
        topics.append(topic)
    return documents, topics


def test_hierarchical_model_learns_keyword_topics() -> None:
    documents, topics = _topic_documents(42, seed=3)
    model = _hierarchical("bilstm", "additive", 1, embed_dim=16, hidden_size=8)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    batch = _collate_documents(documents)
    target = torch.tensor(topics)
    model.train()
    for _ in range(100):
        loss = F.cross_entropy(model(*batch).logits, target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        out = model(*batch)
    accuracy = (out.logits.argmax(-1) == target).float().mean().item()
    assert accuracy >= 0.9, accuracy


@pytest.mark.parametrize("hierarchical", [False, True])
def test_word_dropout_replaces_real_tokens_in_training_only(hierarchical: bool) -> None:
    """Word dropout feeds ``<unk>`` for dropped tokens (never for padding) and is off in eval."""

    cls = HierarchicalClassifier if hierarchical else AttentionClassifier
    model = cls(VOCAB, CLASSES, embed_dim=8, hidden_size=4, encoder="none", dropout=0.0, word_dropout=0.999)
    flat = model.words if hierarchical else model
    seen: list[torch.Tensor] = []
    flat.embed.register_forward_hook(lambda _m, args, _out: seen.append(args[0].clone()))
    ids = torch.tensor([[5, 6, 7, PAD_ID], [8, 9, PAD_ID, PAD_ID]])
    lengths = torch.tensor([3, 2])
    inputs = (ids[:, None], lengths[:, None], torch.tensor([1, 1])) if hierarchical else (ids, lengths)

    model.eval()
    reference = model(*inputs).logits
    assert torch.equal(seen[-1], ids)
    model.train()
    model(*inputs)
    assert torch.equal(seen[-1], torch.where(ids.eq(PAD_ID), ids, torch.full_like(ids, UNK_ID)))
    model.eval()
    torch.testing.assert_close(model(*inputs).logits, reference)


def test_word_dropout_is_validated() -> None:

    with pytest.raises(ConfigError, match=r"model\.word_dropout"):
        ClassifierConfig(word_dropout=1.0)
