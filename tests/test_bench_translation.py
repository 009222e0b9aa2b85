"""The translation benchmark (benchmarks/translation.py): the decode-scaling measurement (the
bytes of a decoding state, the three decodes and the split of the growth into a target and a
source side, on a tiny Transformer; the timings themselves are not asserted) and the choice of
the matmul peak that MFU is measured against."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from translation import (
    SCALING_BATCH,
    SCALING_LENGTHS,
    decode_scaling,
    higher_peaks,
    memory_read_rate,
    tensor_bytes,
)

from seqattn.config import RNNConfig, TransformerConfig
from seqattn.models.build import build_seq2seq

D_MODEL, LAYERS, VOCAB = 16, 2, 24


def _transformer() -> torch.nn.Module:
    torch.manual_seed(0)
    config = TransformerConfig(
        d_model=D_MODEL, num_heads=2, ffn_dim=32, encoder_layers=1, decoder_layers=LAYERS, dropout=0.0
    )
    return build_seq2seq(config, src_vocab=VOCAB, tgt_vocab=VOCAB).eval()


def _encoded_bytes(model: torch.nn.Module, batch: int, length: int) -> int:
    src = torch.randint(4, VOCAB, (batch, length))
    with torch.no_grad():
        return tensor_bytes(model.encode(src, torch.full((batch,), length)))


@dataclass
class Holder:
    a: torch.Tensor
    rest: list


def test_tensor_bytes_walks_dataclasses_lists_and_dicts():
    holder = Holder(
        torch.zeros(3, 4), [torch.zeros(5, dtype=torch.bfloat16), (torch.zeros(2),), {"x": torch.zeros(1)}]
    )
    assert tensor_bytes(holder) == 3 * 4 * 4 + 5 * 2 + 2 * 4 + 4
    assert tensor_bytes("not a tensor") == 0
    assert tensor_bytes(Holder) == 0  # the class itself holds no tensors


def test_transformer_state_grows_by_its_cross_attention_keys_and_values():
    model = _transformer()
    per_position = LAYERS * 2 * D_MODEL * 4  # keys and values of every decoder layer, fp32
    mask = 1  # the bool source mask: one byte a position
    grown = _encoded_bytes(model, 3, 12) - _encoded_bytes(model, 3, 5)
    assert grown == 3 * 7 * (per_position + mask)


def test_rnn_state_grows_by_its_memory_and_keys():
    torch.manual_seed(0)
    model = build_seq2seq(
        RNNConfig(embed_dim=8, hidden_size=6, decoder_size=10, num_layers=1, dropout=0.0),
        src_vocab=VOCAB,
        tgt_vocab=VOCAB,
    ).eval()
    grown = _encoded_bytes(model, 2, 9) - _encoded_bytes(model, 2, 4)
    # the encoder states (2 x 6 per position), the prepared keys (at least one value a position)
    assert grown > 2 * 5 * 12 * 4


@pytest.mark.parametrize("beam", [1, 2])
def test_decode_scaling_splits_the_growth(beam):
    model = _transformer()
    stream = list(range(4, VOCAB)) * 3
    with torch.inference_mode():
        result = decode_scaling(
            model, stream, beam=beam, device=torch.device("cpu"), precision="fp32", repeats=1, read_gbs=20.0
        )
    short, long = SCALING_LENGTHS
    t_short, t_mixed, t_long = (
        result[f"ms_per_token_{short}"],
        result[f"ms_per_token_{short}_into_{long}"],
        result[f"ms_per_token_{long}"],
    )
    e_short, e_mixed, e_long = (
        result[f"encode_ms_per_token_{short}"],
        result[f"encode_ms_per_token_{short}_into_{long}"],
        result[f"encode_ms_per_token_{long}"],
    )
    assert min(t_short, t_mixed, t_long) > 0 and min(e_short, e_mixed, e_long) > 0
    assert result["ratio_best"] == pytest.approx(t_long / t_short)
    assert result["ratio"] == pytest.approx(t_long / t_short)  # one round: the paired ratio is the same
    # the encoder is taken out: the split is of the decoding steps alone
    assert result["target_side_ms"] == pytest.approx((t_mixed - e_mixed) - (t_short - e_short))
    assert result["source_side_ms"] == pytest.approx((t_long - e_long) - (t_mixed - e_mixed))
    # per output token: one source a sentence, whatever the beam
    source_bytes = (long - short) * (LAYERS * 2 * D_MODEL * 4 + 1)
    assert result["source_bytes_per_token"] == pytest.approx(source_bytes)
    at_read_rate = source_bytes / 20e9 * 1000
    assert result["ratio_source_at_read_rate"] == pytest.approx(
        (t_long - result["source_side_ms"] + at_read_rate) / t_short
    )
    if result["source_side_ms"] > 0:
        assert result["source_read_gbs"] == pytest.approx(source_bytes / result["source_side_ms"] / 1e6)
    assert result["batch"] == SCALING_BATCH and result["beam"] == beam


def test_memory_read_rate_is_a_positive_rate():
    assert memory_read_rate(torch.device("cpu"), mib=8, repeats=2) > 0


def test_mfu_uses_the_higher_of_two_peak_measurements():
    before = {"cpu_fp32": {"gflops": 133.4, "size": 2048}, "cpu_bf16": {"gflops": 410.0, "size": 2048}}
    after = {"cpu_fp32": {"gflops": 185.3, "size": 2048}, "cpu_bf16": {"gflops": 406.1, "size": 2048}}
    peaks = higher_peaks(before, after)
    assert peaks["cpu_fp32"]["gflops"] == 185.3 and peaks["cpu_bf16"]["gflops"] == 410.0
    assert (peaks["cpu_fp32"]["before_gflops"], peaks["cpu_fp32"]["after_gflops"]) == (133.4, 185.3)
    assert (peaks["cpu_bf16"]["before_gflops"], peaks["cpu_bf16"]["after_gflops"]) == (410.0, 406.1)
