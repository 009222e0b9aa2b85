"""The classification task: document encoding and collation, epoch plans, the loss, validation
metrics against a hand computation, predictions in input order with weights cut to each item, a
planted-token task learned through the real Trainer, and `seqattn train` end to end."""

from __future__ import annotations

import io
import json
import math
import random
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml
from click.testing import CliRunner, Result
from rich.console import Console

from seqattn.cli import main
from seqattn.config import TrainConfig
from seqattn.data.batching import pad_batch
from seqattn.data.labels import LabelVocabulary
from seqattn.data.sentences import PARAGRAPH, split_sentences
from seqattn.data.tokenizer import PAD_ID, Tokenizer, TokenizerConfig
from seqattn.models.classifier import AttentionClassifier, HierarchicalClassifier
from seqattn.training.classification import ClassificationTask, DocumentEncoder, Prediction
from seqattn.training.trainer import Trainer

VOCAB = 40
WORDS = [
    "alpha",
    "beta",
    "gamma",
    "delta",
    "epsilon",
    "zeta",
    "eta",
    "theta",
    "iota",
    "kappa",
    "lambda",
    "mu",
    "nu",
    "xi",
    "omicron",
    "pi",
    "rho",
    "sigma",
    "tau",
    "upsilon",
    "phi",
    "chi",
    "psi",
    "omega",
]


@pytest.fixture(autouse=True)
def _seeded(one_thread: None) -> None:
    """Deterministic parameters and inputs, on one intra-op thread (the models are tiny)."""
    torch.manual_seed(0)
    random.seed(0)


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    """A small SentencePiece model over sentences of Greek letter names."""
    generator = random.Random(0)
    sentences = [
        " ".join(generator.choice(WORDS) for _ in range(generator.randint(3, 9))).capitalize()
        + generator.choice(".!?")
        for _ in range(300)
    ]
    return Tokenizer.train(sentences, config=TokenizerConfig(vocab_size=80))


def _items(lengths: list[int], seed: int = 0) -> list[list[int]]:
    generator = random.Random(seed)
    return [[generator.randrange(4, VOCAB) for _ in range(n)] for n in lengths]


def _task(
    encoder: DocumentEncoder,
    items: list,
    labels: list[int],
    *,
    classes: int = 3,
    max_tokens: int = 64,
    valid: tuple[list, list[int]] | None = None,
    adversarial: float = 0.0,
) -> ClassificationTask:
    valid_items, valid_labels = valid if valid is not None else (items, labels)
    return ClassificationTask(
        encoder=encoder,
        labels=LabelVocabulary([f"c{i}" for i in range(classes)]),
        train_items=items,
        train_labels=labels,
        valid_items=valid_items,
        valid_labels=valid_labels,
        max_tokens=max_tokens,
        seed=3,
        label_smoothing=0.0,
        adversarial=adversarial,
    )


def _flat_model(encoder: str = "bilstm", *, queries: int = 1, classes: int = 3) -> AttentionClassifier:
    model = AttentionClassifier(
        VOCAB,
        classes,
        embed_dim=8,
        encoder=encoder,
        hidden_size=6,
        num_heads=2,
        pooling_queries=queries,
        dropout=0.3,
    )
    return model.eval()


# -- DocumentEncoder -----------------------------------------------------------------------------


def test_flat_encode_is_the_tokenizer_encoding(tokenizer: Tokenizer) -> None:
    texts = ["Alpha beta. Gamma delta!", "", "Omega psi chi"]
    encoder = DocumentEncoder(tokenizer, hierarchical=False)
    assert encoder.encode(texts) == [tokenizer.encode(t) for t in texts]


def test_hierarchical_encode_splits_sentences_per_document(tokenizer: Tokenizer) -> None:
    texts = [
        f"Alpha beta gamma. Delta epsilon! Zeta eta theta iota kappa? Lambda mu. {PARAGRAPH} Nu xi",
        "Omicron pi rho sigma",
        "",
        "Tau upsilon. Phi chi psi omega.",
    ]
    encoder = DocumentEncoder(tokenizer, hierarchical=True, max_sentences=100, max_sentence_len=100)
    documents = encoder.encode(texts)
    assert [len(doc) for doc in documents] == [5, 1, 1, 2]
    expected = [
        ["Alpha beta gamma.", "Delta epsilon!", "Zeta eta theta iota kappa?", "Lambda mu.", "Nu xi"],
        ["Omicron pi rho sigma"],
        [""],
        ["Tau upsilon.", "Phi chi psi omega."],
    ]
    for doc, sentences in zip(documents, expected, strict=True):
        assert [tokenizer.decode(ids) for ids in doc] == sentences
        assert doc == [tokenizer.encode(s) for s in sentences]


def test_hierarchical_encode_truncates_sentences_and_pieces(tokenizer: Tokenizer) -> None:
    texts = [
        "Alpha beta gamma. Delta epsilon! Zeta eta theta iota kappa? Lambda mu.",
        "Omicron. Pi rho sigma tau upsilon phi.",
    ]
    encoder = DocumentEncoder(tokenizer, hierarchical=True, max_sentences=3, max_sentence_len=4)
    documents = encoder.encode(texts)
    assert [len(doc) for doc in documents] == [3, 2]
    for doc, text in zip(documents, texts, strict=True):
        for ids, sentence in zip(doc, split_sentences(text), strict=False):
            assert ids == tokenizer.encode(sentence)[:4]
    assert max(len(ids) for doc in documents for ids in doc) == 4  # some sentences were cut


def test_length_is_the_padded_cost() -> None:
    flat = DocumentEncoder(None, hierarchical=False)  # type: ignore[arg-type]
    assert [flat.length(x) for x in ([], [5], [5, 6, 7])] == [1, 1, 3]
    hierarchical = DocumentEncoder(None, hierarchical=True)  # type: ignore[arg-type]
    assert hierarchical.length([[5, 6], [7, 8, 9], [4]]) == 3 * 3
    assert hierarchical.length([]) == 1
    assert hierarchical.length([[5], [6]]) == 2


def test_a_document_of_empty_sentences_costs_at_least_one_position() -> None:
    encoder = DocumentEncoder(None, hierarchical=True)  # type: ignore[arg-type]
    assert encoder.length([[]]) == 1
    task = _task(encoder, [[[]] for _ in range(10)], [0] * 10, max_tokens=4)
    assert all(len(batch) <= 4 for batch in task.plan(0))


def test_flat_collate_pads_to_the_longest_item() -> None:
    items = [[5, 6, 7], [8], [9, 10, 11, 12, 13]]
    ids, lengths = DocumentEncoder(None, hierarchical=False).collate(items)  # type: ignore[arg-type]
    assert ids.shape == (3, 5) and ids.dtype == torch.long
    assert lengths.tolist() == [3, 1, 5]
    assert ids[0].tolist() == [5, 6, 7, PAD_ID, PAD_ID]
    assert ids[1].tolist() == [8, PAD_ID, PAD_ID, PAD_ID, PAD_ID]


def test_hierarchical_collate_shapes_and_padding() -> None:
    documents = [[[5, 6], [7, 8, 9]], [[10]], [], [[], [11, 12, 13, 14]]]
    encoder = DocumentEncoder(None, hierarchical=True)  # type: ignore[arg-type]
    ids, word_lengths, counts = encoder.collate(documents)
    assert ids.shape == (4, 2, 4)
    assert word_lengths.shape == (4, 2)
    assert counts.tolist() == [2, 1, 0, 2]
    assert word_lengths.tolist() == [[2, 3], [1, 0], [0, 0], [0, 4]]
    assert ids[0, 1].tolist() == [7, 8, 9, PAD_ID]
    assert ids[3, 1].tolist() == [11, 12, 13, 14]
    assert (ids[2] == PAD_ID).all() and (ids[3, 0] == PAD_ID).all()
    # Nothing but empty documents still gives one (padded) sentence of one position.
    ids, word_lengths, counts = encoder.collate([[], [[]]])
    assert ids.shape == (2, 1, 1) and word_lengths.tolist() == [[0], [0]] and counts.tolist() == [0, 1]


# -- plans and loss ------------------------------------------------------------------------------


@pytest.mark.parametrize("hierarchical", [False, True], ids=["flat", "hierarchical"])
def test_plan_covers_every_example_once_per_epoch(hierarchical: bool) -> None:
    generator = random.Random(1)
    if hierarchical:
        items = [[[4] * generator.randint(1, 6) for _ in range(generator.randint(1, 4))] for _ in range(57)]
    else:
        items = _items([generator.randint(1, 15) for _ in range(57)])
    encoder = DocumentEncoder(None, hierarchical=hierarchical)  # type: ignore[arg-type]
    task = _task(encoder, items, [i % 3 for i in range(57)], max_tokens=40)
    assert task.filtered == 0
    plans = [task.plan(epoch) for epoch in range(3)]
    for plan in plans:
        assert sorted(i for batch in plan for i in batch) == list(range(57))
        for batch in plan:
            assert len(batch) * max(encoder.length(items[i]) for i in batch) <= 40
    assert task.plan(1) == plans[1]  # deterministic
    assert plans[0] != plans[1]  # but reshuffled every epoch


def test_loss_is_the_summed_cross_entropy_of_the_batch() -> None:
    items = _items([3, 5, 2, 7])
    labels = [0, 2, 1, 2]
    encoder = DocumentEncoder(None, hierarchical=False)  # type: ignore[arg-type]
    task = _task(encoder, items, labels)
    model = _flat_model().eval()
    batch = [3, 0, 2]
    out = task.loss(model, batch)
    logits = model(*pad_batch([items[i] for i in batch])).logits
    expected = F.cross_entropy(logits, torch.tensor([labels[i] for i in batch]), reduction="sum")
    assert out.tokens == 3
    torch.testing.assert_close(out.loss, expected)
    torch.testing.assert_close(out.nll, expected.detach())


def _documents(count: int, seed: int = 0) -> list[list[list[int]]]:
    generator = random.Random(seed)
    return [
        [
            _items([generator.randint(1, 6)], seed=seed * 100 + d * 10 + s)[0]
            for s in range(generator.randint(1, 4))
        ]
        for d in range(count)
    ]


def _hierarchical_model() -> HierarchicalClassifier:
    return HierarchicalClassifier(VOCAB, 3, embed_dim=8, hidden_size=6, dropout=0.3).eval()


@pytest.mark.parametrize("hierarchical", [False, True], ids=["flat", "hierarchical"])
def test_adversarial_loss_adds_the_loss_at_the_normalised_gradient(hierarchical: bool) -> None:
    """Clean loss + loss at ``embeddings + eps * g / ||g||`` per text (sentence, hierarchical)."""
    items = _documents(5) if hierarchical else _items([3, 5, 2, 7, 4])
    labels = [0, 2, 1, 2, 0]
    encoder = DocumentEncoder(None, hierarchical=hierarchical)  # type: ignore[arg-type]
    task = _task(encoder, items, labels, adversarial=0.7)
    model = _hierarchical_model() if hierarchical else _flat_model()
    batch = [3, 0, 4, 1]
    out = task.loss(model, batch)

    tensors = encoder.collate([items[i] for i in batch])
    target = torch.tensor([labels[i] for i in batch])
    clean = model(*tensors)
    embedded = clean.embedded.detach().requires_grad_()
    clean_loss = F.cross_entropy(model(*tensors, embedded=embedded).logits, target, reduction="sum")
    (gradient,) = torch.autograd.grad(clean_loss, embedded)
    rows = embedded.size(0)
    assert rows == (sum(len(items[i]) for i in batch) if hierarchical else len(batch))
    direction = torch.stack([g / g.norm() for g in gradient])
    perturbed = F.cross_entropy(
        model(*tensors, embedded=embedded + 0.7 * direction).logits, target, reduction="sum"
    )
    assert out.tokens == len(batch)
    torch.testing.assert_close(out.nll, clean_loss.detach())
    torch.testing.assert_close(out.loss, clean_loss + perturbed)
    assert perturbed > clean_loss  # the perturbation points uphill


def test_adversarial_direction_raises_the_loss_more_than_random_ones() -> None:
    items = _items([6, 4, 7, 5, 3, 6, 5, 4])
    labels = [0, 1, 2, 0, 1, 2, 0, 1]
    encoder = DocumentEncoder(None, hierarchical=False)  # type: ignore[arg-type]
    model = _flat_model()
    batch = list(range(8))
    clean = _task(encoder, items, labels).loss(model, batch).loss
    adversarial = _task(encoder, items, labels, adversarial=0.5).loss(model, batch).loss - clean

    tensors = encoder.collate(items)
    embedded = model(*tensors).embedded.detach()
    target = torch.tensor(labels)
    generator = torch.Generator().manual_seed(0)
    for _ in range(20):
        noise = torch.randn(embedded.shape, generator=generator)
        noise = 0.5 * noise / noise.flatten(1).norm(dim=1).view(-1, 1, 1)
        random_loss = F.cross_entropy(
            model(*tensors, embedded=embedded + noise).logits, target, reduction="sum"
        )
        assert adversarial > random_loss


@pytest.mark.parametrize("hierarchical", [False, True], ids=["flat", "hierarchical"])
def test_adversarial_training_backpropagates_into_the_embeddings(hierarchical: bool) -> None:
    items = _documents(4, seed=2) if hierarchical else _items([3, 5, 2, 7], seed=2)
    encoder = DocumentEncoder(None, hierarchical=hierarchical)  # type: ignore[arg-type]
    model = (_hierarchical_model() if hierarchical else _flat_model()).train()
    _task(encoder, items, [0, 1, 2, 0], adversarial=1.0).loss(model, [0, 1, 2, 3]).loss.backward()
    embed = model.words.embed if hierarchical else model.embed
    assert embed.weight.grad is not None and embed.weight.grad.abs().sum() > 0
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


# -- validation and prediction -------------------------------------------------------------------


def _hand_metrics(probabilities: list[torch.Tensor], gold: list[int], classes: int) -> dict[str, float]:
    predicted = [int(p.argmax()) for p in probabilities]
    correct = sum(p == g for p, g in zip(predicted, gold, strict=True))
    f1s = []
    for c in range(classes):
        tp = sum(p == c and g == c for p, g in zip(predicted, gold, strict=True))
        fp = sum(p == c and g != c for p, g in zip(predicted, gold, strict=True))
        fn = sum(p != c and g == c for p, g in zip(predicted, gold, strict=True))
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1s.append(2 * precision * recall / (precision + recall) if precision + recall else 0.0)
    nll = -sum(math.log(float(p[g])) for p, g in zip(probabilities, gold, strict=True)) / len(gold)
    return {"loss": nll, "accuracy": 100 * correct / len(gold), "macro_f1": 100 * sum(f1s) / classes}


def test_validate_matches_a_hand_computation() -> None:
    items = _items([random.Random(2).randint(1, 12) for _ in range(13)], seed=2)
    model = _flat_model()
    with torch.no_grad():
        probabilities = [torch.softmax(model(*pad_batch([x])).logits[0], -1) for x in items]
    # Gold labels: the model's prediction for the first 8 items, another class for the rest.
    gold = [int(p.argmax()) if i < 8 else (int(p.argmax()) + 1) % 3 for i, p in enumerate(probabilities)]
    encoder = DocumentEncoder(None, hierarchical=False)  # type: ignore[arg-type]
    task = _task(encoder, _items([3]), [0], valid=(items, gold), max_tokens=30)
    with torch.no_grad():
        metrics = task.validate(model)
    expected = _hand_metrics(probabilities, gold, 3)
    assert set(metrics) == {"loss", "accuracy", "macro_f1"}
    assert metrics["accuracy"] == pytest.approx(round(100 * 8 / 13, 2))
    assert metrics["accuracy"] == pytest.approx(expected["accuracy"], abs=0.005)
    assert metrics["macro_f1"] == pytest.approx(expected["macro_f1"], abs=0.005)
    assert metrics["loss"] == pytest.approx(expected["loss"], abs=1e-4)


@pytest.mark.parametrize("queries", [1, 2])
def test_flat_predict_in_input_order_with_weights_cut_to_length(queries: int) -> None:
    lengths = [3, 12, 1, 7, 7, 2, 9, 4, 12, 5]
    items = _items(lengths, seed=4)
    model = _flat_model("bilstm", queries=queries)
    encoder = DocumentEncoder(None, hierarchical=False)  # type: ignore[arg-type]
    task = _task(encoder, items, [0] * len(items), max_tokens=24)  # several batches
    with torch.no_grad():
        predictions = task.predict(model, items)
    assert len(predictions) == len(items)
    for item, prediction in zip(items, predictions, strict=True):
        assert isinstance(prediction, Prediction)
        with torch.no_grad():
            alone = model(*pad_batch([item]))
        probabilities = torch.softmax(alone.logits[0], -1)
        torch.testing.assert_close(torch.tensor(prediction.probabilities), probabilities, atol=1e-5, rtol=0)
        best = int(probabilities.argmax())
        assert prediction.label == f"c{best}"
        assert prediction.probability == pytest.approx(float(probabilities[best]), abs=1e-5)
        assert prediction.weights.shape == (queries, len(item))
        torch.testing.assert_close(prediction.weights, alone.weights[0], atol=1e-5, rtol=0)
        assert prediction.sentence_weights is None


def test_hierarchical_predict_in_input_order_with_weights_cut_to_size() -> None:
    generator = random.Random(5)
    documents = [
        [[generator.randrange(4, VOCAB) for _ in range(generator.randint(1, 6))] for _ in range(n)]
        for n in (3, 1, 4, 2, 2, 5, 1)
    ]
    model = HierarchicalClassifier(
        VOCAB, 3, embed_dim=8, encoder="bilstm", hidden_size=6, pooling_queries=2, dropout=0.3
    ).eval()
    encoder = DocumentEncoder(None, hierarchical=True)  # type: ignore[arg-type]
    task = _task(encoder, documents, [0] * len(documents), max_tokens=30)
    with torch.no_grad():
        predictions = task.predict(model, documents)
    assert len(predictions) == len(documents)
    for doc, prediction in zip(documents, predictions, strict=True):
        with torch.no_grad():
            alone = model(*encoder.collate([doc]))
        width = max(len(s) for s in doc)
        torch.testing.assert_close(
            torch.tensor(prediction.probabilities), torch.softmax(alone.logits[0], -1), atol=1e-5, rtol=0
        )
        assert prediction.weights.shape == (len(doc), width)
        assert prediction.sentence_weights is not None
        assert prediction.sentence_weights.shape == (2, len(doc))
        torch.testing.assert_close(prediction.weights, alone.weights[0, :, 0, :], atol=1e-5, rtol=0)
        torch.testing.assert_close(prediction.sentence_weights, alone.sentence_weights[0], atol=1e-5, rtol=0)
        for s, sentence in enumerate(doc):
            assert (prediction.weights[s, len(sentence) :] == 0).all()
            assert float(prediction.weights[s].sum()) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("encoder", ["bilstm", "transformer", "none"])
def test_predict_on_an_empty_text_alone(encoder: str) -> None:
    model = _flat_model(encoder, queries=2)
    task = _task(DocumentEncoder(None, hierarchical=False), [[5]], [0])  # type: ignore[arg-type]
    with torch.no_grad():
        (prediction,) = task.predict(model, [[]])
    assert all(math.isfinite(p) for p in prediction.probabilities)
    assert prediction.weights.shape == (2, 1)


# -- a planted token, learned through the Trainer ------------------------------------------------

GOOD, BAD = 4, 5  # the planted tokens; filler tokens are 10..99


def _planted(count: int, seed: int) -> tuple[list[list[int]], list[int], list[int]]:
    """Filler texts of 5-20 tokens with one planted token deciding the label; returns positions."""
    generator = random.Random(seed)
    items, labels, positions = [], [], []
    for _ in range(count):
        text = [generator.randrange(10, 100) for _ in range(generator.randint(5, 20))]
        label = generator.randrange(2)
        position = generator.randrange(len(text))
        text[position] = (GOOD, BAD)[label]
        items.append(text)
        labels.append(label)
        positions.append(position)
    return items, labels, positions


@pytest.mark.parametrize("score", ["scaled_dot", "additive"])
def test_attention_finds_the_planted_token(score: str, tmp_path: Path) -> None:
    train_items, train_labels, _ = _planted(600, seed=1)
    valid_items, valid_labels, _ = _planted(100, seed=2)
    test_items, test_labels, test_positions = _planted(200, seed=3)
    task = ClassificationTask(
        encoder=DocumentEncoder(None, hierarchical=False),  # type: ignore[arg-type]
        labels=LabelVocabulary(["good", "bad"]),
        train_items=train_items,
        train_labels=train_labels,
        valid_items=valid_items,
        valid_labels=valid_labels,
        max_tokens=640,
        seed=1,
        label_smoothing=0.0,
    )
    model = AttentionClassifier(100, 2, embed_dim=16, encoder="none", pooling_score=score, dropout=0.1)
    config = TrainConfig(
        seed=1,
        max_tokens=640,
        max_epochs=15,
        lr=1e-2,
        schedule="constant",
        warmup_steps=0,
        label_smoothing=0.0,
        metric="loss",
        validate_every=10_000,
        patience=None,
        log_every=10_000,
    )
    trainer = Trainer(model, task, config=config, output_dir=tmp_path, console=Console(file=io.StringIO()))
    summary = trainer.fit()
    assert summary["epochs"] == 15
    model.eval()
    with torch.no_grad():
        predictions = task.predict(model, test_items)
    correct = sum(p.label == ("good", "bad")[y] for p, y in zip(predictions, test_labels, strict=True))
    found = sum(
        int(p.weights[0].argmax()) == position
        for p, position in zip(predictions, test_positions, strict=True)
    )
    assert correct >= 0.95 * len(test_items), correct
    assert found >= 0.95 * len(test_items), found


# -- `seqattn train` end to end ------------------------------------------------------------------

SUBJECTS = (
    "the film",
    "this movie",
    "the show",
    "that play",
    "our meal",
    "the book",
    "my quiz",
    "the jazz club",
    "your hotel view",
    "a new exhibit",
)
VERBS = ("was", "seemed", "looked", "felt", "is")
FILLERS = (
    "today",
    "again",
    "for me",
    "at last",
    "so far",
    "overall",
    "as expected",
    "in my opinion",
    "this week",
    "honestly",
    "on sunday",
    "with friends",
)


def _reviews(count: int, seed: int) -> str:
    generator = random.Random(seed)
    rows = ["label\ttext"]
    for _ in range(count):
        label = generator.choice(("pos", "neg"))
        word = "good" if label == "pos" else "bad"
        text = f"{generator.choice(SUBJECTS)} {generator.choice(VERBS)} {word} {generator.choice(FILLERS)}"
        rows.append(f"{label}\t{text}")
    return "\n".join(rows) + "\n"


@pytest.fixture
def experiment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    monkeypatch.setenv("SEQATTN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    for name, count, seed in (("train", 200, 1), ("valid", 40, 2), ("test", 40, 3)):
        (tmp_path / f"{name}.tsv").write_text(_reviews(count, seed), encoding="utf-8")
    return {
        "task": "classification",
        "model": {
            "arch": "classifier",
            "embed_dim": 16,
            "encoder": "bilstm",
            "hidden_size": 8,
            "dropout": 0.1,
        },
        "data": {name: {"path": str(tmp_path / f"{name}.tsv")} for name in ("train", "valid", "test")},
        "tokenizer": {"vocab_size": 60, "byte_fallback": False},
        "train": {
            "seed": 1,
            "max_tokens": 256,
            "max_epochs": 3,
            "lr": 0.01,
            "schedule": "constant",
            "warmup_steps": 0,
            "label_smoothing": 0.0,
            "metric": "accuracy",
            "validate_every": 1000,
            "patience": None,
        },
    }


def _train(config: dict, directory: Path) -> Result:
    path = directory / "experiment.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return CliRunner().invoke(main, ["train", str(path), "-o", str(directory / "model"), "--device", "cpu"])


def test_cli_trains_a_classifier(experiment: dict, tmp_path: Path) -> None:
    result = _train(experiment, tmp_path)
    assert result.exit_code == 0, result.output
    model_dir = tmp_path / "model"
    for name in ("model.pt", "config.yaml", "spm.model", "labels.json", "results.json", "metrics.jsonl"):
        assert (model_dir / name).is_file(), name
    assert json.loads((model_dir / "labels.json").read_text(encoding="utf-8")) == ["neg", "pos"]
    results = json.loads((model_dir / "results.json").read_text(encoding="utf-8"))
    assert results["task"] == "classification"
    assert results["labels"] == ["neg", "pos"]
    assert results["training"]["epochs"] == 3
    assert results["test"]["examples"] == 40
    assert 0.0 <= results["test"]["macro_f1"] <= 100.0
    assert results["test"]["accuracy"] >= 90.0, results["test"]
    assert sum(map(sum, results["test"]["confusion"])) == 40
    assert Tokenizer.load(model_dir / "spm.model").vocab_size == 60


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: c["model"].update(pooling="mean"), "model.pooling: unknown key"),
        (lambda c: c["train"].update(metric="bleu"), "train.metric: 'bleu' is not a classification metric"),
        (lambda c: c["train"].update(adversarial=-1.0), "train.adversarial: must be >= 0"),
    ],
    ids=["unknown-key", "translation-metric", "negative-adversarial"],
)
def test_cli_rejects_a_bad_classifier_config(experiment: dict, tmp_path: Path, change, message: str) -> None:
    change(experiment)
    result = _train(experiment, tmp_path)
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert message in lines[0]
    assert not (tmp_path / "model").exists()
