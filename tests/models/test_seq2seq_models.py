"""Both model families against the Seq2Seq protocol: step == forward, padding and batch
invariance, masking, configuration errors, and a tiny task they must learn."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from seqattn.data.tokenizer import BOS_ID, EOS_ID, PAD_ID
from seqattn.errors import ConfigError
from seqattn.models import lstm as lstm_module
from seqattn.models.protocol import Seq2Seq
from seqattn.models.rnn import RNNSeq2Seq
from seqattn.models.transformer import TransformerSeq2Seq

VOCAB = 24


def rnn(**kw) -> RNNSeq2Seq:
    args = {"embed_dim": 8, "hidden_size": 8, "decoder_size": 16, "num_layers": 2, "dropout": 0.0}
    return RNNSeq2Seq(VOCAB, VOCAB, **(args | kw))


def transformer(**kw) -> TransformerSeq2Seq:
    args = {
        "d_model": 16,
        "num_heads": 4,
        "ffn_dim": 32,
        "encoder_layers": 2,
        "decoder_layers": 2,
        "dropout": 0.0,
    }
    return TransformerSeq2Seq(VOCAB, VOCAB, **(args | kw))


MODELS = {
    "rnn-bahdanau-additive": lambda: rnn(style="bahdanau", score="additive"),
    "rnn-bahdanau-dot": lambda: rnn(style="bahdanau", score="dot"),
    "rnn-luong-general": lambda: rnn(style="luong", score="general"),
    "rnn-luong-dot": lambda: rnn(style="luong", score="dot"),
    "rnn-luong-concat": lambda: rnn(style="luong", score="concat", input_feeding=False),
    "rnn-luong-location": lambda: rnn(style="luong", score="location", max_source_len=12),
    "transformer-pre-sinusoidal": lambda: transformer(),
    "transformer-post-learned": lambda: transformer(pre_norm=False, positions="learned", tie="none"),
    "transformer-relative-tied-all": lambda: transformer(
        positions="relative", relative_distance=3, tie="all"
    ),
}


def batch(
    lengths: list[int], *, seed: int = 0, width: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    width = width or max(lengths)
    src = torch.full((len(lengths), width), PAD_ID)
    for row, n in enumerate(lengths):
        src[row, :n] = torch.randint(4, VOCAB, (n,), generator=generator)
    return src, torch.tensor(lengths)


@pytest.fixture(params=sorted(MODELS))
def model(request: pytest.FixtureRequest) -> nn.Module:
    torch.manual_seed(0)
    return MODELS[request.param]().eval()


def test_implements_the_protocol(model: nn.Module) -> None:
    assert isinstance(model, Seq2Seq)


def teacher_forced_and_stepped(
    model: nn.Module, src: torch.Tensor, lengths: torch.Tensor, tgt: torch.Tensor
) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """``(logits, attention)`` of one forward pass over ``tgt`` and of ``model.step`` position
    by position (stacked to the same shapes)."""
    forced = model(src, lengths, tgt)
    with torch.no_grad():
        state = model.encode(src, lengths)
        steps = []
        for t in range(tgt.size(1)):
            out, state = model.step(tgt[:, t], state)
            steps.append((out.logits, out.attention))
    return forced, (torch.stack([s[0] for s in steps], 1), torch.stack([s[1] for s in steps], 1))


def alone_and_together(
    model: nn.Module, src: torch.Tensor, lengths: torch.Tensor, tgt: torch.Tensor
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per sentence: its logits decoded without padding or companions, and within the batch."""
    together, _ = model(src, lengths, tgt)
    pairs = []
    for row, n in enumerate(lengths.tolist()):
        alone, _ = model(src[row : row + 1, :n], lengths[row : row + 1], tgt[row : row + 1])
        pairs.append((alone[0], together[row]))
    return pairs


def test_step_by_step_equals_teacher_forcing(model: nn.Module) -> None:
    src, lengths = batch([7, 5, 2])
    tgt, _ = batch([6, 6, 6], seed=1)
    (logits, attention), (stepped_logits, stepped_attention) = teacher_forced_and_stepped(
        model, src, lengths, tgt
    )
    assert logits.shape == (3, 6, VOCAB) and attention.shape == (3, 6, 7)
    torch.testing.assert_close(stepped_logits, logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(stepped_attention, attention, atol=1e-6, rtol=1e-5)


def test_attention_ignores_padding_and_sums_to_one(model: nn.Module) -> None:
    src, lengths = batch([7, 5, 2])
    tgt, _ = batch([4, 4, 4], seed=1)
    _, attention = model(src, lengths, tgt)
    for row, n in enumerate(lengths.tolist()):
        assert torch.all(attention[row, :, n:] == 0)
    torch.testing.assert_close(attention.sum(-1), torch.ones(3, 4))


def test_outputs_do_not_depend_on_batch_companions_or_padding(model: nn.Module) -> None:
    src, lengths = batch([7, 5, 2])
    tgt, _ = batch([5, 5, 5], seed=1)
    for alone, within in alone_and_together(model, src, lengths, tgt):
        torch.testing.assert_close(alone, within, atol=1e-5, rtol=1e-5)
    together, _ = model(src, lengths, tgt)
    # Garbage in padded source positions changes nothing.
    noisy = src.clone()
    noisy[lengths.unsqueeze(1) <= torch.arange(src.size(1))] = 5
    torch.testing.assert_close(model(noisy, lengths, tgt)[0], together, atol=1e-6, rtol=1e-6)


def test_reorder_state_duplicates_rows(model: nn.Module) -> None:
    src, lengths = batch([6, 3])
    with torch.no_grad():
        state = model.encode(src, lengths)
        state = model.reorder_state(state, torch.tensor([1, 1, 0]))
        out, _ = model.step(torch.full((3,), BOS_ID), state)
        single = model.encode(src[1:2, :3], lengths[1:2])
        alone, _ = model.step(torch.full((1,), BOS_ID), single)
    torch.testing.assert_close(out.logits[0], out.logits[1])
    torch.testing.assert_close(out.logits[0], alone.logits[0], atol=1e-5, rtol=1e-5)


def test_gradients_reach_every_parameter(model: nn.Module) -> None:
    model.train()
    src, lengths = batch([7, 5, 2])
    tgt, _ = batch([5, 5, 5], seed=1)
    logits, _ = model(src, lengths, tgt)
    logits.logsumexp(-1).sum().backward()
    missing = [
        name for name, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()
    ]
    # The location score only scores up to the source length: its unused rows get zero grads.
    assert not missing


def test_transformer_without_attention_matches() -> None:
    torch.manual_seed(0)
    model = transformer().eval()
    src, lengths = batch([7, 5, 2])
    tgt, _ = batch([5, 5, 5], seed=1)
    with_attention, attention = model(src, lengths, tgt)
    without, none = model(src, lengths, tgt, need_attention=False)
    assert attention is not None and none is None
    torch.testing.assert_close(with_attention, without, atol=1e-5, rtol=1e-5)


def test_transformer_alignment_layer_and_heads_are_selectable() -> None:
    torch.manual_seed(0)
    model = transformer().eval()
    src, lengths = batch([7, 5])
    tgt, _ = batch([4, 4], seed=1)
    default = model(src, lengths, tgt)[1]
    model.alignment_layer, model.alignment_heads = -1, [0]
    chosen = model(src, lengths, tgt)[1]
    assert not torch.allclose(default, chosen)
    torch.testing.assert_close(chosen.sum(-1), torch.ones(2, 4))


def test_tied_embeddings_share_storage() -> None:
    model = transformer(tie="all")
    assert model.output.weight is model.tgt_embed.tokens.weight is model.src_embed.tokens.weight
    assert rnn(embed_dim=16, tie_embeddings=True).output.weight.data_ptr() != 0


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: rnn(style="transformer"), "style"),
        (lambda: rnn(score="dot", decoder_size=12), "decoder_size"),
        (lambda: rnn(tie_embeddings=True), "tie_embeddings"),
        (lambda: transformer(positions="rotary"), "positions"),
        (lambda: transformer(tie="encoder"), "tie"),
        (lambda: TransformerSeq2Seq(10, 12, d_model=16, num_heads=4, tie="all"), "joint vocabulary"),
        (lambda: transformer(num_heads=5), "multiple"),
    ],
)
def test_configuration_errors_are_one_line(build, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as error:
        build()
    assert "\n" not in str(error.value)


# Luong's general score learns this task too, but leaves its initial plateau only after ~600
# steps; the dot score keeps the test short.
@pytest.mark.parametrize("name", ["rnn-bahdanau-additive", "rnn-luong-dot", "transformer-pre-sinusoidal"])
def test_learns_to_reverse_short_sequences(name: str) -> None:
    """A converging run per model family: reverse sequences of 3-6 symbols (greedy accuracy)."""
    torch.manual_seed(0)
    model = MODELS[name]()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    generator = torch.Generator().manual_seed(1)

    def sample(n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        lengths = torch.randint(3, 7, (n,), generator=generator)
        src = torch.full((n, 6), PAD_ID)
        tgt = torch.full((n, 8), PAD_ID)
        for row, k in enumerate(lengths.tolist()):
            symbols = torch.randint(4, 12, (k,), generator=generator)
            src[row, :k] = symbols
            tgt[row, : k + 2] = torch.cat([torch.tensor([BOS_ID]), symbols.flip(0), torch.tensor([EOS_ID])])
        return src, lengths, tgt

    loss_fn = nn.CrossEntropyLoss(ignore_index=PAD_ID)
    for _ in range(600):
        src, lengths, tgt = sample(32)
        logits, _ = model(src, lengths, tgt[:, :-1], need_attention=False)
        loss = loss_fn(logits.reshape(-1, VOCAB), tgt[:, 1:].reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    src, lengths, tgt = sample(64)
    with torch.no_grad():
        state = model.encode(src, lengths)
        tokens = torch.full((64,), BOS_ID)
        produced = []
        for _ in range(7):
            out, state = model.step(tokens, state)
            tokens = out.logits.argmax(-1)
            produced.append(tokens)
    produced = torch.stack(produced, 1)
    correct = sum(
        produced[row, : k + 1].tolist() == tgt[row, 1 : k + 2].tolist()
        for row, k in enumerate(lengths.tolist())
    )
    assert correct / 64 >= 0.9, f"{name}: {correct}/64 reversed exactly"


def test_rnn_training_path_matches_the_default_lstm_kernel() -> None:
    """fp32 training runs the decoder LSTM on torch's own cell instead of oneDNN's primitive:
    the same loss and gradients, and the global oneDNN switch is left as it was."""
    torch.manual_seed(0)
    model = rnn(style="luong", score="additive").train()  # dropout 0: deterministic in train mode
    src, lengths = batch([5, 3, 6])
    tgt_in = batch([4, 4, 4], seed=1)[0]

    def loss_and_grads() -> tuple[torch.Tensor, list[torch.Tensor]]:
        model.zero_grad()
        logits, _ = model(src, lengths, tgt_in)
        loss = logits.logsumexp(-1).sum()
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]

    before = torch._C._get_mkldnn_enabled()
    loss, grads = loss_and_grads()
    assert torch._C._get_mkldnn_enabled() == before
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(RNNSeq2Seq, "_run_lstm", lambda self, x, hidden: self.lstm(x, hidden))
        want_loss, want_grads = loss_and_grads()
    torch.testing.assert_close(loss, want_loss)
    for got, want in zip(grads, want_grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("lengths", [[5, 3, 6, 3, 5, 1], [4, 4, 4], [7, 1, 6, 2, 5, 3, 4]])
def test_rnn_encoder_training_path_by_length_matches_packing(lengths: list[int]) -> None:
    """fp32 CPU training runs the encoder once per source length, unpadded: the same states
    (zeros on padding), final states and gradients as the packed call."""
    torch.manual_seed(0)
    model = rnn(style="bahdanau", score="additive", num_layers=2).train()
    src, src_lengths = batch(lengths)

    def run() -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        model.zero_grad()
        states, (h, c) = model.encoder(src, src_lengths)
        (states.square().sum() + h.sum() + 2 * c.sum()).backward()
        grads = [p.grad.clone() for p in model.encoder.parameters() if p.grad is not None]
        return [states.detach(), h.detach(), c.detach()], grads

    outputs, grads = run()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(lstm_module, "fp32_cpu_training", lambda module, x: False)
        want_outputs, want_grads = run()
    for row, length in enumerate(lengths):
        assert outputs[0][row, length:].eq(0).all()
    for got, want in zip(outputs + grads, want_outputs + want_grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    assert len(grads) == len(want_grads) > 0
