"""The benchmark's seqattn -> OpenNMT-py Transformer conversion (benchmarks/same_checkpoint.py).

That OpenNMT-py then computes the same function is checked where OpenNMT-py is installed, by the
benchmark itself (share of identical outputs); here: the mapping of vocabulary rows and
projections, and its refusals."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from same_checkpoint import KERNELS, floor_table, kernel_seconds, results_table, to_opennmt

from seqattn.config import TransformerConfig
from seqattn.models.build import build_seq2seq
from seqattn.models.transformer import sinusoidal_table

PIECES = ["<pad>", "<unk>", "<s>", "</s>", "▁a", "b", "▁c", "d"]


class Pieces:
    vocab_size = len(PIECES)

    def piece_to_id(self, piece: str) -> int:
        return PIECES.index(piece)


def template(config: TransformerConfig, itos: list[str]) -> dict:
    """An OpenNMT-py-shaped checkpoint: the parameter names of its pre-norm Transformer."""
    d, f = config.d_model, config.ffn_dim
    model: dict[str, torch.Tensor] = {}

    def attention(prefix: str) -> None:
        for name in ("linear_keys", "linear_values", "linear_query", "final_linear"):
            model[f"{prefix}.{name}.weight"] = torch.zeros(d, d)

    def norm(prefix: str) -> None:
        model[f"{prefix}.weight"], model[f"{prefix}.bias"] = torch.zeros(d), torch.zeros(d)

    def ffn(prefix: str) -> None:
        model[f"{prefix}.w_1.weight"], model[f"{prefix}.w_2.weight"] = torch.zeros(f, d), torch.zeros(d, f)
        norm(f"{prefix}.layer_norm")

    for side in ("encoder", "decoder"):
        model[f"{side}.embeddings.make_embedding.emb_luts.0.weight"] = torch.zeros(len(itos), d)
        model[f"{side}.embeddings.make_embedding.pe.pe"] = sinusoidal_table(50, d)[:, None]
        norm(f"{side}.layer_norm")
    for i in range(config.encoder_layers):
        attention(f"encoder.transformer.{i}.self_attn")
        norm(f"encoder.transformer.{i}.layer_norm")
        ffn(f"encoder.transformer.{i}.feed_forward")
    for i in range(config.decoder_layers):
        layer = f"decoder.transformer_layers.{i}"
        attention(f"{layer}.self_attn")
        attention(f"{layer}.context_attn")
        norm(f"{layer}.layer_norm_1")
        norm(f"{layer}.layer_norm_2")
        ffn(f"{layer}.feed_forward")
    options = argparse.Namespace(add_qkvbias=False, add_ffnbias=False, norm_eps=1e-6)
    return {"model": model, "vocab": {"src": itos, "tgt": itos}, "opt": options}


CONFIG = TransformerConfig(d_model=8, num_heads=2, ffn_dim=16, encoder_layers=2, decoder_layers=2)
ONMT_ITOS = ["<unk>", "<blank>", "<s>", "</s>", "d", "▁a", "▁c", "b"]


def test_rows_follow_the_pieces_and_projections_split_in_order() -> None:
    torch.manual_seed(0)
    model = build_seq2seq(CONFIG, src_vocab=len(PIECES), tgt_vocab=len(PIECES))
    state = model.state_dict()
    converted = to_opennmt(state, CONFIG, Pieces(), template(CONFIG, ONMT_ITOS))
    out = converted["model"]
    ours = {"<unk>": "<unk>", "<blank>": "<pad>", "<s>": "<s>", "</s>": "</s>"}
    for onmt_id, piece in enumerate(ONMT_ITOS):
        row = PIECES.index(ours.get(piece, piece))
        for side, embed in (("encoder", "src_embed"), ("decoder", "tgt_embed")):
            torch.testing.assert_close(
                out[f"{side}.embeddings.make_embedding.emb_luts.0.weight"][onmt_id],
                state[f"{embed}.tokens.weight"][row],
            )
    torch.testing.assert_close(
        converted["generator"]["weight"], out["decoder.embeddings.make_embedding.emb_luts.0.weight"]
    )
    assert not converted["generator"]["bias"].any()
    attention = "decoder.transformer_layers.1.context_attn"
    fused = torch.cat([out[f"{attention}.linear_{n}.weight"] for n in ("query", "keys", "values")])
    torch.testing.assert_close(fused, state["decoder.1.cross_attn.in_proj.weight"])
    torch.testing.assert_close(
        out["encoder.transformer.0.feed_forward.layer_norm.weight"], state["encoder.0.norm2.weight"]
    )
    torch.testing.assert_close(
        out["decoder.transformer_layers.0.feed_forward.layer_norm.bias"], state["decoder.0.norm3.bias"]
    )
    options = converted["opt"]
    assert (options.add_qkvbias, options.add_ffnbias, options.norm_eps) == (True, True, 1e-5)


def test_refuses_a_vocabulary_that_is_not_the_same_pieces() -> None:
    model = build_seq2seq(CONFIG, src_vocab=len(PIECES), tgt_vocab=len(PIECES))
    itos = [*ONMT_ITOS[:-1], "▁c"]  # "b" missing, "▁c" twice
    with pytest.raises(ValueError, match="not a reordering"):
        to_opennmt(model.state_dict(), CONFIG, Pieces(), template(CONFIG, itos))


def test_refuses_architectures_it_cannot_express() -> None:
    config = TransformerConfig(
        d_model=8, num_heads=2, ffn_dim=16, encoder_layers=1, decoder_layers=1, pre_norm=False
    )
    model = build_seq2seq(config, src_vocab=len(PIECES), tgt_vocab=len(PIECES))
    with pytest.raises(ValueError, match="pre-norm"):
        to_opennmt(model.state_dict(), config, Pieces(), template(config, ONMT_ITOS))


def test_refuses_another_position_table() -> None:
    model = build_seq2seq(CONFIG, src_vocab=len(PIECES), tgt_vocab=len(PIECES))
    checkpoint = template(CONFIG, ONMT_ITOS)
    table = checkpoint["model"]["decoder.embeddings.make_embedding.pe.pe"]
    d = CONFIG.d_model
    checkpoint["model"]["decoder.embeddings.make_embedding.pe.pe"] = torch.cat(  # sin | cos halves
        [table[..., 0::2], table[..., 1::2]], dim=-1
    ).view(-1, 1, d)
    with pytest.raises(ValueError, match="position table"):
        to_opennmt(model.state_dict(), CONFIG, Pieces(), checkpoint)


class Event:
    def __init__(self, key: str, micros: float) -> None:
        self.key, self.self_cpu_time_total = key, micros


def test_kernel_seconds_sorts_operators_by_kind() -> None:
    events = [
        Event("aten::addmm", 2e6),
        Event("aten::mm", 1e6),
        Event("aten::_scaled_dot_product_flash_attention_for_cpu", 5e5),
        Event("aten::_softmax", 1e5),
        Event("aten::_log_softmax", 2e5),
        Event("aten::topk", 1e5),
        Event("aten::native_layer_norm", 3e5),
        Event("aten::index_select", 4e5),
        Event("aten::copy_", 5e4),
        Event("aten::maximum", 5e4),  # not the argmax: exact names only
    ]
    totals = kernel_seconds(events)
    assert totals == pytest.approx(
        {
            "matrix multiplies": 3.0,
            "attention": 0.6,
            "log-softmax, argmax, top-k": 0.3,
            "layer norm": 0.3,
            "other operators": 0.5,
        }
    )
    assert set(totals) == {*KERNELS, "other operators"}


def kernels(matmul: float, other: float) -> dict[str, float]:
    totals = dict.fromkeys(KERNELS, 0.0)
    totals["matrix multiplies"] = matmul
    return {**totals, "other operators": other}


def test_floor_table_compares_the_kernels_with_the_time_the_target_allows() -> None:
    runs = {
        ("onmt", 1): [{"dec_sec": 3.0}, {"dec_sec": 4.5}, {"dec_sec": 3.3}],  # median 3.3 s
        ("profile", 1): [{"kernels": kernels(2.0, 1.0)}],
        ("onmt", 5): [{"dec_sec": 8.0}],
        ("profile", 5): [{"kernels": kernels(4.4, 1.0)}],
    }
    _, results = floor_table(runs, [1, 5, 3])  # no profile for beam 3: left out
    assert set(results) == {"beam1", "beam5"}
    greedy, beam = results["beam1"], results["beam5"]
    assert greedy["target"] == 1.5 and beam["target"] == 2.0
    assert greedy["allowed_s"] == pytest.approx(3.3 / 1.5)
    assert greedy["floor_s"] == pytest.approx(2.0)  # under the 2.2 s allowed
    assert beam["allowed_s"] == pytest.approx(4.0)
    assert beam["floor_s"] > beam["allowed_s"]  # the kernels alone miss the target


class Detokenizer:
    def decode_pieces(self, pieces: list[str]) -> str:
        return "".join(pieces).replace("▁", " ").strip()


def test_results_table_ratios_shares_and_rounds() -> None:
    """Ratios of medians, per-round ratios, output pieces per second, and the shares of outputs
    identical to OpenNMT-py's (same weights only) and to the decoder over the whole vocabulary."""

    def run(seconds: float, outputs: list[str], bleu: float = 0.0) -> dict:
        return {"dec_sec": seconds, "outputs": outputs, "bleu": bleu}

    onmt, whole, listed = ["▁a b", "▁c", "▁a"], ["▁a b", "▁c d", "▁a"], ["▁a b", "▁c", "▁c"]
    runs = {
        ("onmt", 1): [run(4.0, onmt), run(6.0, onmt), run(5.0, onmt)],
        ("fp32", 1): [run(2.0, whole, 1.5), run(3.0, whole), run(4.0, whole)],
        ("fp32+shortlist", 1): [run(1.0, listed, 1.25), run(2.0, listed), run(2.5, listed)],
    }
    variants = ["fp32", "fp32+shortlist"]
    common = {"tokenizer": Detokenizer(), "references": ["a b", "c", "a"], "sentences": 3}
    table, results = results_table("t", runs, [1], variants, same_weights=True, **common)
    fp32, listed_result = results["seqattn_fp32_beam1"], results["seqattn_fp32+shortlist_beam1"]
    assert fp32["ratio"] == pytest.approx(5.0 / 3.0) and fp32["round_ratios"] == [2.0, 2.0, 1.25]
    assert fp32["bleu"] == 1.5 and fp32["identical_to_onmt"] == pytest.approx(2 / 3)
    assert fp32["out_pieces_ratio"] == pytest.approx((5 / 3.0) / (4 / 5.0))  # 5 vs 4 pieces
    assert "identical_to_whole_vocabulary" not in fp32
    assert listed_result["ratio"] == pytest.approx(2.5) and listed_result[
        "identical_to_whole_vocabulary"
    ] == pytest.approx(1 / 3)
    assert results["onmt_beam1"]["sents_per_s"] == pytest.approx(3 / 5.0)
    assert len(table.columns) == 8 and table.row_count == 3
    table, results = results_table("t", runs, [1], variants, same_weights=False, **common)
    assert "identical_to_onmt" not in results["seqattn_fp32_beam1"] and len(table.columns) == 7
