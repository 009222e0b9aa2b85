"""Configuration: frozen dataclasses, validated on load.

A config file (YAML or JSON) only *overrides* the dataclass defaults. Loading checks every key
and type and names the dotted path of the first problem in a one-line
:class:`~seqattn.errors.ConfigError` (``model.num_heads: expected int, got 'four'``); an unknown
key is an error, never silently ignored. ``--set key.path=value`` overrides use the same rules
(values are parsed as YAML scalars).

:func:`from_dict` turns a mapping into any dataclass here (nested dataclasses, ``X | None``,
``list[X]``, ``dict[str, X]`` and ``Literal`` choices are understood); :func:`to_dict` turns it
back into plain data for saving. The model section is chosen by its ``arch`` key.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin

import yaml

from seqattn.data.corpora import CorpusSpec
from seqattn.data.tokenizer import TokenizerConfig
from seqattn.errors import ConfigError

__all__ = [
    "CONFIG_VERSION",
    "ClassifierConfig",
    "DataConfig",
    "ExperimentConfig",
    "RNNConfig",
    "TokenizerSection",
    "TrainConfig",
    "TransformerConfig",
    "apply_overrides",
    "from_dict",
    "load_config",
    "save_config",
    "to_dict",
]

CONFIG_VERSION = 1
T = TypeVar("T")


# -- sections ------------------------------------------------------------------------------------


def _positive(where: str, **values: float) -> None:
    for name, value in values.items():
        if value <= 0:
            raise ConfigError(f"{where}.{name}: must be positive, got {value}")


def _fraction(where: str, **values: float) -> None:
    for name, value in values.items():
        if not 0.0 <= value < 1.0:
            raise ConfigError(f"{where}.{name}: must be in [0, 1), got {value}")


@dataclass(frozen=True)
class RNNConfig:
    """Attentive LSTM encoder-decoder (:class:`seqattn.models.rnn.RNNSeq2Seq`)."""

    arch: Literal["rnn"] = "rnn"
    style: Literal["bahdanau", "luong"] = "luong"
    """Bahdanau: attend from the previous state, feed the context; Luong: step, then attend."""
    score: Literal["dot", "scaled_dot", "general", "concat", "additive", "location"] = "general"
    """Attention score (see seqattn.attention.scores)."""
    embed_dim: int = 256
    hidden_size: int = 256
    """Encoder LSTM size per direction."""
    decoder_size: int = 512
    num_layers: int = 1
    decoder_layers: int | None = None
    """Defaults to num_layers."""
    input_feeding: bool = True
    dropout: float = 0.2
    tie_embeddings: bool = False
    max_source_len: int | None = None
    """Only for the location score."""

    def __post_init__(self) -> None:
        _positive("model", embed_dim=self.embed_dim, hidden_size=self.hidden_size)
        _positive("model", decoder_size=self.decoder_size, num_layers=self.num_layers)
        if self.decoder_layers is not None:
            _positive("model", decoder_layers=self.decoder_layers)
        _fraction("model", dropout=self.dropout)


@dataclass(frozen=True)
class TransformerConfig:
    """Transformer encoder-decoder (:class:`seqattn.models.transformer.TransformerSeq2Seq`)."""

    arch: Literal["transformer"] = "transformer"
    d_model: int = 256
    num_heads: int = 4
    ffn_dim: int = 1024
    encoder_layers: int = 3
    decoder_layers: int = 3
    dropout: float = 0.1
    attn_dropout: float = 0.0
    pre_norm: bool = True
    positions: Literal["sinusoidal", "learned", "relative"] = "sinusoidal"
    max_positions: int = 1024
    relative_distance: int = 16
    tie: Literal["none", "decoder", "all"] = "decoder"

    def __post_init__(self) -> None:
        _positive("model", d_model=self.d_model, num_heads=self.num_heads, ffn_dim=self.ffn_dim)
        _positive("model", encoder_layers=self.encoder_layers, decoder_layers=self.decoder_layers)
        _positive("model", max_positions=self.max_positions, relative_distance=self.relative_distance)
        _fraction("model", dropout=self.dropout, attn_dropout=self.attn_dropout)
        if self.d_model % self.num_heads:
            raise ConfigError(
                f"model.d_model: {self.d_model} is not a multiple of num_heads={self.num_heads}"
            )


@dataclass(frozen=True)
class ClassifierConfig:
    """Attention-pooling classifier (:mod:`seqattn.models.classifier`)."""

    arch: Literal["classifier"] = "classifier"
    hierarchical: bool = False
    """Word attention per sentence, then sentence attention (documents)."""
    embed_dim: int = 128
    encoder: Literal["bilstm", "transformer", "none"] = "bilstm"
    hidden_size: int = 128
    """BiLSTM size per direction."""
    num_layers: int = 1
    num_heads: int = 4
    """Transformer encoder heads."""
    pooling_score: Literal["scaled_dot", "dot", "general", "additive", "concat"] = "scaled_dot"
    pooling_queries: int = 1
    dropout: float = 0.3
    word_dropout: float = 0.0
    """Training: probability of replacing each token by ``<unk>``."""
    max_sentences: int = 40
    """Hierarchical: sentences kept per document."""
    max_sentence_len: int = 80
    """Hierarchical: pieces kept per sentence."""

    def __post_init__(self) -> None:
        _positive("model", embed_dim=self.embed_dim, hidden_size=self.hidden_size, num_layers=self.num_layers)
        _positive("model", num_heads=self.num_heads, pooling_queries=self.pooling_queries)
        _positive("model", max_sentences=self.max_sentences, max_sentence_len=self.max_sentence_len)
        _fraction("model", dropout=self.dropout, word_dropout=self.word_dropout)


@dataclass(frozen=True)
class TokenizerSection:
    """SentencePiece settings for a model's vocabulary."""

    joint: bool = True
    """One model for source and target (required by tie='all'); else one per side."""
    vocab_size: int = 8000
    model_type: Literal["unigram", "bpe"] = "unigram"
    character_coverage: float = 1.0
    max_sentences: int = 1_000_000
    byte_fallback: bool = False
    normalization: Literal["nmt_nfkc", "nmt_nfkc_cf", "nfkc", "nfkc_cf", "identity"] = "nmt_nfkc"
    """SentencePiece normalisation; the ``_cf`` rules also fold case, which suits classifiers
    (``Good`` and ``good`` share pieces) but not translation (outputs would come out lower-cased)."""
    seed: int = 1

    def __post_init__(self) -> None:
        if self.vocab_size < 8:  # the four special pieces and a few more
            raise ConfigError(f"tokenizer.vocab_size: must be at least 8, got {self.vocab_size}")
        _positive("tokenizer", max_sentences=self.max_sentences)
        if not 0.0 < self.character_coverage <= 1.0:
            raise ConfigError(
                f"tokenizer.character_coverage: must be in (0, 1], got {self.character_coverage}"
            )

    def settings(self) -> TokenizerConfig:
        return TokenizerConfig(
            vocab_size=self.vocab_size,
            model_type=self.model_type,
            character_coverage=self.character_coverage,
            max_sentences=self.max_sentences,
            byte_fallback=self.byte_fallback,
            normalization=self.normalization,
            seed=self.seed,
        )


@dataclass(frozen=True)
class DataConfig:
    """Where training and validation examples come from."""

    train: CorpusSpec
    valid: CorpusSpec
    test: CorpusSpec | None = None
    max_len: int = 256
    """Training examples with more pieces (either side) are skipped and counted."""
    strict: bool = False
    """Fail on empty lines instead of dropping them."""

    def __post_init__(self) -> None:
        _positive("data", max_len=self.max_len)


@dataclass(frozen=True)
class TrainConfig:
    """The training loop."""

    seed: int = 1
    max_tokens: int = 4096
    """Token budget per batch, counted on padded size: sentences x longest side."""
    accumulate: int = 1
    """Batches per optimizer update."""
    max_epochs: int = 100
    max_steps: int | None = None
    """Optimizer updates; stops at whichever of max_epochs / max_steps comes first."""
    max_minutes: float | None = None
    """Wall-clock budget for training (checked between updates)."""
    lr: float = 5e-4
    """Peak learning rate."""
    schedule: Literal["inverse_sqrt", "noam", "plateau", "constant"] = "inverse_sqrt"
    warmup_steps: int = 1000
    plateau_factor: float = 0.5
    plateau_patience: int = 2
    min_lr: float = 1e-6
    betas: tuple[float, float] = (0.9, 0.98)
    weight_decay: float = 0.0
    clip_norm: float | None = 1.0
    label_smoothing: float = 0.1
    adversarial: float = 0.0
    """Classification: adversarial training on the embeddings (Miyato et al. 2017), the L2 norm
    of the worst-case perturbation of each text's embeddings; 0 turns it off. Each update then
    costs about two forward and three backward passes."""
    validate_every: int = 1000
    """Validate every this many updates (and at the end of every epoch)."""
    metric: Literal["bleu", "chrf", "exact_match", "loss", "accuracy", "macro_f1"] = "bleu"
    """Validation metric used for early stopping and for keeping the best checkpoints."""
    patience: int | None = 10
    """Stop after this many validations without improvement (None: never)."""
    keep_best: int = 1
    keep_last: int = 1
    average_last: int = 0
    """If > 1, also write the average of the last k kept checkpoints as the final model."""
    beam: int = 1
    """Beam size for validation decoding (1 = greedy, fastest)."""
    test_beam: int = 5
    """Beam size for the final evaluation on data.test."""
    valid_max_sentences: int | None = None
    """Decode at most this many validation sentences for BLEU (loss uses all)."""
    bf16: bool = True
    """bf16 autocast on CUDA."""
    bf16_cpu: bool = False
    """bf16 autocast on CPU too: 1.6-1.8x faster training on CPUs with AVX512-BF16 or AMX (see
    :mod:`seqattn.precision`), slower on others; off by default so that CPU results do not
    depend on the CPU's instruction set."""
    log_every: int = 50
    shortlist: bool = True
    """Translation: at the end, build the lexical shortlist of the training pairs into the model
    directory (``shortlist.pt``, :mod:`seqattn.decoding.shortlist`), for ``seqattn translate
    --shortlist``. About 10 s for Multi30k's 29,000 pairs on 2 cores."""

    def __post_init__(self) -> None:
        _positive("train", max_tokens=self.max_tokens, accumulate=self.accumulate, max_epochs=self.max_epochs)
        _positive(
            "train", lr=self.lr, validate_every=self.validate_every, beam=self.beam, log_every=self.log_every
        )
        _positive("train", test_beam=self.test_beam)
        if self.valid_max_sentences is not None:
            _positive("train", valid_max_sentences=self.valid_max_sentences)
        _positive("train", keep_best=self.keep_best, keep_last=self.keep_last)
        if self.max_steps is not None:
            _positive("train", max_steps=self.max_steps)
        if self.warmup_steps < 0:
            raise ConfigError(f"train.warmup_steps: must be >= 0, got {self.warmup_steps}")
        _fraction("train", label_smoothing=self.label_smoothing)
        if self.adversarial < 0:
            raise ConfigError(f"train.adversarial: must be >= 0, got {self.adversarial}")
        if not 0.0 < self.plateau_factor < 1.0:
            raise ConfigError(f"train.plateau_factor: must be in (0, 1), got {self.plateau_factor}")


TRANSLATION_METRICS = ("bleu", "chrf", "exact_match", "loss")
CLASSIFICATION_METRICS = ("accuracy", "macro_f1", "loss")


@dataclass(frozen=True)
class ExperimentConfig:
    """Everything a training run needs; saved as ``config.yaml`` in the model directory."""

    task: Literal["translation", "classification"]
    model: RNNConfig | TransformerConfig | ClassifierConfig
    data: DataConfig
    tokenizer: TokenizerSection = field(default_factory=TokenizerSection)
    train: TrainConfig = field(default_factory=TrainConfig)
    version: int = CONFIG_VERSION
    """Config format version; files from a newer seqattn are refused."""

    def __post_init__(self) -> None:
        classifier = isinstance(self.model, ClassifierConfig)
        if classifier != (self.task == "classification"):
            raise ConfigError(f"model.arch: {self.model.arch!r} does not fit task {self.task!r}")
        metrics = CLASSIFICATION_METRICS if classifier else TRANSLATION_METRICS
        if self.train.metric not in metrics:
            raise ConfigError(
                f"train.metric: {self.train.metric!r} is not a {self.task} metric ({', '.join(metrics)})"
            )
        if self.train.adversarial and not classifier:
            raise ConfigError("train.adversarial: adversarial training is available for classification only")
        if self.version != CONFIG_VERSION:
            raise ConfigError(
                f"version: config format {self.version} is not supported (this seqattn reads {CONFIG_VERSION})"
            )


# -- generic loading -------------------------------------------------------------------------------


def _type_name(tp: Any) -> str:
    if get_origin(tp) is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    return getattr(tp, "__name__", str(tp))


def _convert(value: Any, tp: Any, where: str) -> Any:
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        options = get_args(tp)
        if value is None:
            if type(None) in options:
                return None
            raise ConfigError(f"{where}: must not be empty")
        choices = [o for o in options if o is not type(None)]
        if all(
            dataclasses.is_dataclass(o) and "arch" in {f.name for f in dataclasses.fields(o)} for o in choices
        ):
            return _by_arch(value, choices, where)
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _convert(value, option, where)
            except ConfigError as error:
                errors.append(str(error))
        raise ConfigError(errors[0])
    if origin is Literal:
        if value not in get_args(tp):
            raise ConfigError(f"{where}: expected one of {_type_name(tp)}, got {value!r}")
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return from_dict(tp, value, where=where)
    if origin in (list, Sequence, tuple):
        args = get_args(tp)
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"{where}: expected {len(args)} values, got {len(value)}")
            return tuple(
                _convert(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True))
            )
        item = args[0] if args else Any
        converted = [_convert(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(converted) if origin is tuple else converted
    if origin in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        _, value_type = get_args(tp) or (Any, Any)
        return {str(k): _convert(v, value_type, f"{where}.{k}") for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{where}: unsupported type {_type_name(tp)}")


def _by_arch(value: Any, choices: list[Any], where: str) -> Any:
    """A union of sections told apart by their ``arch`` key (e.g. the model section)."""
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {value!r}")
    by_arch = {dataclasses.fields(c)[0].default: c for c in choices}
    arch = value.get("arch")
    if arch not in by_arch:
        raise ConfigError(f"{where}.arch: expected one of {', '.join(map(repr, by_arch))}, got {arch!r}")
    return from_dict(by_arch[arch], value, where=where)


def from_dict(cls: type[T], data: Mapping[str, Any], *, where: str = "config") -> T:
    """Build dataclass ``cls`` from ``data``; every problem is a ConfigError naming its key."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = [key for key in data if key not in fields]
    if unknown:
        prefix = "" if where == "config" else f"{where}."
        raise ConfigError(f"{prefix}{unknown[0]}: unknown key (expected one of {', '.join(fields)})")
    values = {}
    for name, f in fields.items():
        path = name if where == "config" else f"{where}.{name}"
        if name in data:
            values[name] = _convert(data[name], hints[name], path)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{path}: missing (required)")
    try:
        return cls(**values)
    except ConfigError as error:
        # Section checks name their keys already ("model.d_model: ..."); others get the path.
        if where == "config" or str(error).startswith(where.split(".")[0]):
            raise
        raise ConfigError(f"{where}: {error}") from None
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{where}: {error}") from None


def to_dict(config: Any) -> Any:
    """A dataclass (recursively) as plain data: dicts, lists, strings and numbers."""
    if dataclasses.is_dataclass(config):
        return {f.name: to_dict(getattr(config, f.name)) for f in dataclasses.fields(config)}
    if isinstance(config, Mapping):
        return {str(k): to_dict(v) for k, v in config.items()}
    if isinstance(config, list | tuple):
        return [to_dict(v) for v in config]
    return config


def apply_overrides(data: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``key.path=value`` strings (values parsed as YAML) to a nested mapping."""
    result = json.loads(json.dumps(data))  # deep copy of plain data
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item}: expected key=value")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        node = result
        parts = key.strip().split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"--set {key}: {part} is not a section")
            node = child
        node[parts[-1]] = value
    return result


def read_mapping(path: str | Path) -> dict[str, Any]:
    """A YAML/JSON file's top-level mapping, with one-line errors naming the file."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path}: is a directory, expected a config file")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot read ({error})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or "invalid YAML"
        raise ConfigError(f"{path}{line}: {problem}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    return data


def load_config(
    path: str | Path, *, overrides: Sequence[str] = (), base_dir: str | Path | None = None
) -> ExperimentConfig:
    """Read an experiment config, apply ``--set`` overrides and validate it.

    Relative corpus paths are resolved against ``base_dir`` (default: the working directory,
    as for every other path given on the command line).
    """
    path = Path(path)
    data = apply_overrides(read_mapping(path), overrides)
    try:
        config = from_dict(ExperimentConfig, data)
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None
    return resolve_paths(config, Path(base_dir) if base_dir is not None else Path.cwd())


def resolve_paths(config: ExperimentConfig, base: Path) -> ExperimentConfig:
    """Corpus file paths made absolute against ``base``."""

    def fix(spec: CorpusSpec | None) -> CorpusSpec | None:
        if spec is None:
            return None
        changes = {}
        for name in ("src", "tgt", "path"):
            value = getattr(spec, name)
            if value is not None and not Path(value).is_absolute():
                changes[name] = str((base / value).resolve())
        return dataclasses.replace(spec, **changes) if changes else spec

    data = dataclasses.replace(
        config.data, train=fix(config.data.train), valid=fix(config.data.valid), test=fix(config.data.test)
    )
    return dataclasses.replace(config, data=data)


def save_config(config: ExperimentConfig, path: str | Path) -> None:
    """Write the config as YAML (atomically)."""
    from seqattn.io import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(to_dict(config), sort_keys=False, allow_unicode=True))
