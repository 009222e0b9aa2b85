"""From an experiment config to a trained model directory.

A model directory holds everything needed to use the model later, and nothing else is read::

    config.yaml          the experiment config (validated on load)
    spm.model            the joint SentencePiece model (or src.model + tgt.model)
    model.pt             the final weights: {"model": state_dict}, loaded with weights_only=True
    checkpoints/         training states for exact resume (best-k and last), checkpoints.json
    metrics.jsonl        training and validation metrics, one JSON object per line
    results.json         the summary of the run (steps, time, validation and test metrics)
    shortlist.pt         translation: the lexical shortlist of the training pairs (train.shortlist)
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import random
import shutil
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from rich.console import Console

from seqattn.config import ClassifierConfig, ExperimentConfig, save_config
from seqattn.data.corpora import load_corpus
from seqattn.data.encoded import encode_corpus
from seqattn.data.labels import LabelVocabulary
from seqattn.data.text import open_binary
from seqattn.data.tokenizer import EOS_ID, Tokenizer
from seqattn.decoding.shortlist import MAX_PAIRS, SHORTLIST_FILE, LexicalShortlist
from seqattn.errors import ConfigError, DataError
from seqattn.io import atomic_write_text
from seqattn.metrics import classification_report, corpus_bleu, corpus_chrf, exact_match
from seqattn.models.build import build_classifier, build_seq2seq
from seqattn.training.classification import ClassificationTask, DocumentEncoder
from seqattn.training.trainer import Trainer
from seqattn.training.translation import TranslationTask

__all__ = ["load_tokenizers", "resolve_device", "train", "train_classifier", "train_translation"]


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {name}: CUDA is not available on this machine")
    try:
        return torch.device(name)
    except RuntimeError:
        raise ConfigError(f"--device {name}: not a device (use cpu, cuda, cuda:N or auto)") from None


def _joint(config: ExperimentConfig) -> bool:
    """Classifiers have one vocabulary; translation models follow tokenizer.joint."""
    return config.task == "classification" or config.tokenizer.joint


def tokenizer_paths(model_dir: Path, *, joint: bool) -> tuple[Path, Path]:
    if joint:
        return model_dir / "spm.model", model_dir / "spm.model"
    return model_dir / "src.model", model_dir / "tgt.model"


def load_tokenizers(model_dir: Path, *, joint: bool) -> tuple[Tokenizer, Tokenizer]:
    src_path, tgt_path = tokenizer_paths(model_dir, joint=joint)
    source = Tokenizer.load(src_path)
    return source, (source if joint else Tokenizer.load(tgt_path))


def _train_tokenizers(
    config: ExperimentConfig, model_dir: Path, console: Console
) -> tuple[Tokenizer, Tokenizer]:
    """Train (or, when resuming, reload) the model's SentencePiece model(s)."""
    section = config.tokenizer
    joint = _joint(config)
    src_path, tgt_path = tokenizer_paths(model_dir, joint=joint)
    if src_path.is_file() and tgt_path.is_file():
        return load_tokenizers(model_dir, joint=joint)
    with console.status("training the SentencePiece model(s)..."):
        train = load_corpus(config.data.train, task=config.task, strict=config.data.strict)
        if config.task == "classification":
            model = Tokenizer.train(train["text"], config=section.settings())
            model.save(src_path)
            return model, model
        sources, targets = train["source"], train["target"]
        if section.joint:
            source = target = Tokenizer.train([*sources, *targets], config=section.settings())
        else:
            source = Tokenizer.train(sources, config=section.settings())
            target = Tokenizer.train(targets, config=section.settings())
    source.save(src_path)
    if not section.joint:
        target.save(tgt_path)
    return source, target


def _check_files(config: ExperimentConfig) -> None:
    """Every corpus file the config names can be opened (a one-line DataError naming its key)."""
    for split in ("train", "valid", "test"):
        spec = getattr(config.data, split)
        for path in spec.files() if spec is not None else []:
            try:
                open_binary(path).close()
            except DataError as error:
                raise DataError(f"data.{split}: {error}") from None


def _prepare(
    config: ExperimentConfig, model_dir: Path, *, resume: bool, device: str, console: Console
) -> tuple[torch.device, int]:
    """Check and create the model directory, save the config, train the tokenizer(s).

    Under torchrun, the main process does this and the others wait; returns (device, rank).
    """
    torch_device = resolve_device(device)
    world, rank = int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch_device.type == "cuda" else "gloo")
    if rank == 0:
        _check_files(config)  # before anything is created
        if model_dir.exists() and not model_dir.is_dir():
            raise ConfigError(f"--output-dir {model_dir}: exists and is not a directory")
        if not resume and (model_dir / "checkpoints").exists():
            raise ConfigError(
                f"--output-dir {model_dir}: already holds a training run (use --resume, or another directory)"
            )
        created = not model_dir.exists()
        try:
            model_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise ConfigError(f"--output-dir {model_dir}: cannot create it ({error.strerror})") from None
        try:
            save_config(config, model_dir / "config.yaml")
            _train_tokenizers(config, model_dir, console)
        except BaseException:
            if created:  # a directory with only a config in it would look like a model directory
                shutil.rmtree(model_dir, ignore_errors=True)
            raise
    if world > 1:
        dist.barrier()
    torch.manual_seed(config.train.seed)
    random.seed(config.train.seed)  # saved in checkpoints too: a run is reproducible as a whole
    return torch_device, rank


def _fit(
    config: ExperimentConfig,
    model: torch.nn.Module,
    task: Any,
    model_dir: Path,
    *,
    device: torch.device,
    resume: bool,
    console: Console,
) -> dict[str, Any]:
    """Train with the Trainer, then validate the final model; the start of results.json."""
    trainer = Trainer(model, task, config=config.train, output_dir=model_dir, device=device, console=console)
    start = time.perf_counter()
    summary = trainer.fit(resume=resume)
    if not trainer.is_main:
        return {"training": summary}
    model.eval()
    with torch.no_grad():
        valid_metrics = task.validate(model)
    return {
        "task": config.task,
        "model_dir": str(model_dir),
        "device": describe_device(device),
        "parameters": sum(p.numel() for p in model.parameters()),
        "train_seconds": summary["train_seconds"],
        "wall_seconds": round(time.perf_counter() - start, 1),
        "training": summary,
        "valid": valid_metrics,
    }


def train(
    config: ExperimentConfig,
    model_dir: str | Path,
    *,
    resume: bool = False,
    device: str = "auto",
    console: Console | None = None,
) -> dict[str, Any]:
    """Train the model ``config`` describes (translation or classification) into ``model_dir``."""
    run = train_classifier if config.task == "classification" else train_translation
    return run(config, model_dir, resume=resume, device=device, console=console)


def train_translation(
    config: ExperimentConfig,
    model_dir: str | Path,
    *,
    resume: bool = False,
    device: str = "auto",
    console: Console | None = None,
) -> dict[str, Any]:
    """Train a translation model as configured into ``model_dir``; returns the results dict."""
    console = console or Console(stderr=True)
    model_dir = Path(model_dir)
    torch_device, rank = _prepare(config, model_dir, resume=resume, device=device, console=console)
    source_tok, target_tok = load_tokenizers(model_dir, joint=_joint(config))
    with console.status("encoding the corpora..."):
        train = encode_corpus(
            config.data.train,
            task="translation",
            tokenizer=source_tok,
            target_tokenizer=target_tok,
            strict=config.data.strict,
        )
        valid_raw = load_corpus(config.data.valid, task="translation", strict=config.data.strict)
        valid_src = source_tok.encode_batch(valid_raw["source"])
        valid_tgt = target_tok.encode_batch(valid_raw["target"])
    if config.model.arch == "transformer" and config.model.tie == "all" and not config.tokenizer.joint:
        raise ConfigError("model.tie: 'all' needs tokenizer.joint: true (one vocabulary)")
    model = build_seq2seq(config.model, src_vocab=source_tok.vocab_size, tgt_vocab=target_tok.vocab_size)
    task = TranslationTask(
        train_src=train.first,
        train_tgt=train.second,  # type: ignore[arg-type]
        valid_src=valid_src,
        valid_tgt=valid_tgt,
        valid_references=list(valid_raw["target"]),
        target_tokenizer=target_tok,
        max_tokens=config.train.max_tokens,
        max_len=config.data.max_len,
        seed=config.train.seed,
        label_smoothing=config.train.label_smoothing,
        beam=config.train.beam,
        valid_max_sentences=config.train.valid_max_sentences,
        device=torch_device,
    )
    parameters = sum(p.numel() for p in model.parameters())
    if rank == 0:
        console.print(
            f"[bold]{config.model.arch}[/] model, {parameters:,} parameters on {torch_device}; "
            f"{len(train):,} training pairs ({train.report.dropped_empty} empty dropped, {task.filtered} over "
            f"max_len skipped), padding efficiency {task.padding_efficiency:.1%}; vocabulary {source_tok.vocab_size:,}"
        )
    results = _fit(config, model, task, model_dir, device=torch_device, resume=resume, console=console)
    if rank != 0:  # the main process evaluates and writes the results
        return results
    results |= {
        "signature": task.signature,
        "data": {
            "train_pairs": len(train),
            "train_dropped_empty": train.report.dropped_empty,
            "train_skipped_long": task.filtered,
        },
    }
    if config.data.test is not None:
        test_raw = load_corpus(config.data.test, task="translation")
        hypotheses = task.translate(
            model, source_tok.encode_batch(test_raw["source"]), beam=config.train.test_beam
        )
        references = list(test_raw["target"])
        bleu, chrf = corpus_bleu(hypotheses, references), corpus_chrf(hypotheses, references)
        results["test"] = {
            "bleu": round(bleu.score, 2),
            "chrf": round(chrf.score, 2),
            "exact_match": round(exact_match(hypotheses, references), 2),
            "sentences": len(references),
            "beam": config.train.test_beam,
        }
        results["test_signature"] = f"BLEU {bleu.signature} | chrF {chrf.signature}"
    if config.train.shortlist:
        start = time.perf_counter()
        with console.status("building the lexical shortlist of the training pairs..."):
            lexical = LexicalShortlist.build(
                [[*ids, EOS_ID] for ids in train.first[:MAX_PAIRS]],  # sources as the decoders read them
                train.second[:MAX_PAIRS],  # type: ignore[index]
                src_vocab=source_tok.vocab_size,
                tgt_vocab=target_tok.vocab_size,
            )
            lexical.save(model_dir / SHORTLIST_FILE)
        results["shortlist"] = {
            "file": SHORTLIST_FILE,
            "pairs": lexical.pairs,
            "top": lexical.top,
            "frequent": int(lexical.frequent.numel()),
            "seconds": round(time.perf_counter() - start, 1),
        }
    atomic_write_text(model_dir / "results.json", json.dumps(results, indent=2) + "\n")
    return results


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def train_classifier(
    config: ExperimentConfig,
    model_dir: str | Path,
    *,
    resume: bool = False,
    device: str = "auto",
    console: Console | None = None,
) -> dict[str, Any]:
    """Train an attention-pooling classifier as configured into ``model_dir``."""
    console = console or Console(stderr=True)
    model_dir = Path(model_dir)
    assert isinstance(config.model, ClassifierConfig)
    torch_device, rank = _prepare(config, model_dir, resume=resume, device=device, console=console)
    tokenizer, _ = load_tokenizers(model_dir, joint=True)
    encoder = DocumentEncoder(
        tokenizer,
        hierarchical=config.model.hierarchical,
        max_sentences=config.model.max_sentences,
        max_sentence_len=config.model.max_sentence_len,
    )
    with console.status("encoding the corpora..."):
        train_raw = load_corpus(config.data.train, task="classification", strict=config.data.strict)
        valid_raw = load_corpus(config.data.valid, task="classification", strict=config.data.strict)
        labels = LabelVocabulary.from_data(train_raw["label"])
        train_items, valid_items = (
            encoder.encode(list(train_raw["text"])),
            encoder.encode(list(valid_raw["text"])),
        )
        train_labels = labels.encode(
            list(train_raw["label"]),
            where=[f"{config.data.train.describe()} example {i + 1}" for i in range(len(train_raw))],
        )
        valid_labels = labels.encode(
            list(valid_raw["label"]),
            where=[f"{config.data.valid.describe()} example {i + 1}" for i in range(len(valid_raw))],
        )
    if rank == 0:
        atomic_write_text(model_dir / "labels.json", json.dumps(labels.labels, ensure_ascii=False) + "\n")
    model = build_classifier(config.model, vocab_size=tokenizer.vocab_size, num_classes=len(labels))
    task = ClassificationTask(
        encoder=encoder,
        labels=labels,
        train_items=train_items,
        train_labels=train_labels,
        valid_items=valid_items,
        valid_labels=valid_labels,
        max_tokens=config.train.max_tokens,
        seed=config.train.seed,
        label_smoothing=config.train.label_smoothing,
        adversarial=config.train.adversarial,
        device=torch_device,
    )
    parameters = sum(p.numel() for p in model.parameters())
    if rank == 0:
        kind = "hierarchical classifier" if config.model.hierarchical else "classifier"
        console.print(
            f"[bold]{kind}[/] ({config.model.encoder} encoder, {config.model.pooling_score} pooling), "
            f"{parameters:,} parameters on {torch_device}; {len(train_items):,} training examples, "
            f"{len(labels)} labels, padding efficiency {task.padding_efficiency:.1%}; vocabulary {tokenizer.vocab_size:,}"
        )
    results = _fit(config, model, task, model_dir, device=torch_device, resume=resume, console=console)
    if rank != 0:
        return results
    results["labels"] = labels.labels
    if config.data.test is not None:
        test_raw = load_corpus(config.data.test, task="classification")
        with torch.no_grad():
            predictions = task.predict(model, encoder.encode(list(test_raw["text"])))
        gold = list(test_raw["label"])
        labels.encode(
            gold, where=[f"{config.data.test.describe()} example {i + 1}" for i in range(len(gold))]
        )
        report = classification_report([p.label for p in predictions], gold, classes=labels.labels)
        results["test"] = {
            "accuracy": round(report.accuracy, 2),
            "macro_f1": round(report.macro_f1, 2),
            "examples": len(gold),
            "per_class": {name: dataclasses.asdict(scores) for name, scores in report.per_class.items()},
            "confusion": report.confusion,
        }
    atomic_write_text(model_dir / "results.json", json.dumps(results, indent=2) + "\n")
    return results
