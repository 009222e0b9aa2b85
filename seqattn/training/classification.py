"""The classification task: batches of texts, cross-entropy, accuracy/F1 validation, prediction.

Texts are encoded without special tokens. For the hierarchical model a text is first split into
sentences (:func:`~seqattn.data.sentences.split_sentences`), keeping at most ``max_sentences``
sentences of at most ``max_sentence_len`` pieces.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from seqattn.data.batching import inference_batches, pad_batch, restore_order, token_batches
from seqattn.data.labels import LabelVocabulary
from seqattn.data.sentences import split_sentences
from seqattn.data.tokenizer import PAD_ID, Tokenizer
from seqattn.metrics import classification_report
from seqattn.training.loss import LossOutput, label_smoothed_cross_entropy

__all__ = ["ClassificationTask", "DocumentEncoder", "Prediction", "predict"]

Encoded = list[int] | list[list[int]]  # flat: piece ids; hierarchical: one id list per sentence


@dataclass(frozen=True)
class Prediction:
    label: str
    probability: float
    probabilities: list[float]
    weights: Tensor
    """Flat: ``(Q, T)`` token weights; hierarchical: ``(S, T)`` word weights per sentence."""
    sentence_weights: Tensor | None = None
    """Hierarchical: ``(Q, S)`` sentence weights."""


class DocumentEncoder:
    """Text -> ids (flat) or sentences of ids (hierarchical), and ids -> padded tensors."""

    def __init__(
        self, tokenizer: Tokenizer, *, hierarchical: bool, max_sentences: int = 40, max_sentence_len: int = 80
    ) -> None:
        self.tokenizer = tokenizer
        self.hierarchical = hierarchical
        self.max_sentences = max_sentences
        self.max_sentence_len = max_sentence_len

    def encode(self, texts: list[str]) -> list[Encoded]:
        if not self.hierarchical:
            return self.tokenizer.encode_batch(texts)  # type: ignore[return-value]
        documents = [split_sentences(text)[: self.max_sentences] for text in texts]
        flat = self.tokenizer.encode_batch([s for doc in documents for s in doc])
        result: list[Encoded] = []
        position = 0
        for doc in documents:
            result.append([ids[: self.max_sentence_len] for ids in flat[position : position + len(doc)]])
            position += len(doc)
        return result

    def length(self, item: Encoded) -> int:
        """Batching cost of one item (for a document: sentences x longest sentence)."""
        if not self.hierarchical:
            return max(len(item), 1)
        return max(len(item), 1) * (max((len(s) for s in item), default=1) or 1)

    def collate(self, items: list[Encoded]) -> tuple[Tensor, ...]:
        if not self.hierarchical:
            return pad_batch(items)  # (B, T), (B,)
        counts = torch.tensor([len(doc) for doc in items])
        sentences = max(int(counts.max()), 1)
        width = max((len(s) for doc in items for s in doc), default=1) or 1
        ids = torch.full((len(items), sentences, width), PAD_ID, dtype=torch.long)
        word_lengths = torch.zeros(len(items), sentences, dtype=torch.long)
        for b, doc in enumerate(items):
            for s, sentence in enumerate(doc):
                ids[b, s, : len(sentence)] = torch.as_tensor(sentence, dtype=torch.long)
                word_lengths[b, s] = len(sentence)
        return ids, word_lengths, counts  # (B, S, T), (B, S), (B,)


class ClassificationTask:
    """Training batches, loss and validation for a classifier."""

    def __init__(
        self,
        *,
        encoder: DocumentEncoder,
        labels: LabelVocabulary,
        train_items: list[Encoded],
        train_labels: list[int],
        valid_items: list[Encoded],
        valid_labels: list[int],
        max_tokens: int,
        seed: int,
        label_smoothing: float,
        adversarial: float = 0.0,
        device: torch.device | str = "cpu",
    ) -> None:
        self.encoder = encoder
        self.labels = labels
        self.train_items, self.train_labels = train_items, train_labels
        self.valid_items, self.valid_labels = valid_items, valid_labels
        self.max_tokens, self.seed = max_tokens, seed
        self.label_smoothing = label_smoothing
        self.adversarial = adversarial
        self.device = torch.device(device)
        self.lengths = [encoder.length(item) for item in train_items]
        first = token_batches(self.lengths, max_tokens=max_tokens, seed=seed, epoch=0)
        self.filtered = len(first.filtered)
        self.padding_efficiency = first.padding_efficiency

    def plan(self, epoch: int) -> list[list[int]]:
        return token_batches(self.lengths, max_tokens=self.max_tokens, seed=self.seed, epoch=epoch).batches

    def loss(self, model: nn.Module, batch: Any) -> LossOutput:
        """Cross-entropy of a batch; with ``adversarial`` > 0, plus the adversarial loss.

        Adversarial training (Miyato et al. 2017, after Goodfellow et al. 2015): the gradient
        ``g`` of the loss with respect to each text's embeddings gives the perturbation
        ``r = eps * g / ||g||`` (L2 norm over the text's tokens and dimensions) that increases the
        loss most to first order; the model also learns to classify ``embeddings + r``. The
        reported nll is the clean one.
        """
        tensors = [t.to(self.device) for t in self.encoder.collate([self.train_items[i] for i in batch])]
        target = torch.tensor([self.train_labels[i] for i in batch], device=self.device)

        def criterion(logits: Tensor) -> LossOutput:
            return label_smoothed_cross_entropy(
                logits, target, smoothing=self.label_smoothing, ignore_index=-100
            )

        out = model(*tensors)
        clean = criterion(out.logits)
        if not self.adversarial:
            return clean
        (gradient,) = torch.autograd.grad(clean.loss, out.embedded, retain_graph=True)
        perturbed = out.embedded + self.adversarial * _unit_per_text(gradient.detach())
        adversarial = criterion(model(*tensors, embedded=perturbed).logits)
        return LossOutput(loss=clean.loss + adversarial.loss, nll=clean.nll, tokens=clean.tokens)

    def validate(self, model: nn.Module) -> dict[str, float]:
        probabilities = self.probabilities(model, self.valid_items)
        predicted = [self.labels.name(int(p.argmax())) for p in probabilities]
        gold = [self.labels.name(i) for i in self.valid_labels]
        nll = -sum(
            math.log(max(float(p[i]), 1e-12)) for p, i in zip(probabilities, self.valid_labels, strict=True)
        )
        report = classification_report(predicted, gold, classes=self.labels.labels)
        return {
            "loss": round(nll / max(len(gold), 1), 4),
            "accuracy": round(report.accuracy, 2),
            "macro_f1": round(report.macro_f1, 2),
        }

    def probabilities(self, model: nn.Module, items: list[Encoded]) -> list[Tensor]:
        """Class probabilities ``(C,)`` per item, in input order."""
        return [torch.tensor(p.probabilities) for p in self.predict(model, items)]

    def predict(self, model: nn.Module, items: list[Encoded]) -> list[Prediction]:
        """Per item: the label, its probability and the attention weights (input order)."""
        return predict(
            model,
            items,
            encoder=self.encoder,
            labels=self.labels,
            max_tokens=self.max_tokens,
            device=self.device,
        )


def _unit_per_text(gradient: Tensor) -> Tensor:
    """Scale each text's slice of ``(B, T, E)`` (or ``(N, T, E)``) to unit L2 norm.

    Hierarchical: the ``N`` rows are sentences; normalising per sentence gives every sentence the
    same budget, which is what a per-sentence encoder sees.
    """
    norm = gradient.flatten(1).norm(dim=1).clamp(min=1e-12)
    return torch.nan_to_num(gradient / norm.view(-1, *([1] * (gradient.dim() - 1))))


def predict(
    model: nn.Module,
    items: list[Encoded],
    *,
    encoder: DocumentEncoder,
    labels: LabelVocabulary,
    max_tokens: int,
    device: torch.device | str = "cpu",
) -> list[Prediction]:
    """Predictions for encoded items, batched by length, returned in input order."""
    plan = inference_batches([encoder.length(i) for i in items], max_tokens=max_tokens)
    outputs = []
    for batch in plan.batches:
        tensors = [t.to(device) for t in encoder.collate([items[i] for i in batch])]
        out = model(*tensors)
        probs = torch.softmax(out.logits.float(), dim=-1).cpu()
        outputs.append(
            [
                _prediction(probs[row], out, row, items[i], hierarchical=encoder.hierarchical, labels=labels)
                for row, i in enumerate(batch)
            ]
        )
    return restore_order(plan, outputs)


def _prediction(
    probabilities: Tensor, out: Any, row: int, item: Encoded, *, hierarchical: bool, labels: LabelVocabulary
) -> Prediction:
    """One item's slice of a batch output, weights cut to the item's real size."""
    best = int(probabilities.argmax())
    sentence_weights = None
    if hierarchical:
        sentences = max(len(item), 1)
        width = max((len(s) for s in item), default=1) or 1
        weights = out.weights[row, :sentences, 0, :width].detach().float().cpu()  # (S, T)
        sentence_weights = out.sentence_weights[row, :, :sentences].detach().float().cpu()  # (Q, S)
    else:
        weights = out.weights[row, :, : max(len(item), 1)].detach().float().cpu()  # (Q, T)
    return Prediction(
        label=labels.name(best),
        probability=float(probabilities[best]),
        probabilities=probabilities.tolist(),
        weights=weights,
        sentence_weights=sentence_weights,
    )
