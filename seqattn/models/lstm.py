"""Running an ``nn.LSTM`` over a batch of variable-length sequences, with no work on padding.

Two ways, picked by :func:`run_lstm`:

* **packed** (:func:`~torch.nn.utils.rnn.pack_padded_sequence`): one call; used for inference,
  autocast and GPUs.
* **by length**: fp32 training on a CPU runs the LSTM once per distinct length, on the sequences
  of that length unpadded, when that pays (:func:`by_length_pays`). torch runs a packed batch on
  its own kernels, whose backward pass zero-fills a gradient of all the batch's input gates at
  every position (about 110 fills of 6.5 MB in a translation benchmark step), while an unpacked
  batch goes to oneDNN's RNN primitive. Length-bucketed batches hold few lengths (two in the
  median translation benchmark batch, at most 17). Measured forward + backward on this path
  against packing: the translation encoder 107-187 against 142-233 ms (6-17 lengths, paired);
  the sentiment classifier's BiLSTM 1.7x / 1.9x / 2.1x / 2.5x faster at 20 / 40 / 80 / 160
  positions (2,048-token batches; ``benchmarks/RESULTS.md``). It does not pay for many short
  groups: a hierarchical classifier's word encoder sees about 45 lengths over 150 sentences per
  batch, where it was 1.7x slower than packing.

Each sequence still sees exactly its own positions, so both give the same results up to float
rounding (tests check states, final states and gradients).

Shapes: ``B`` batch, ``T`` padded length, ``E`` input size, ``H`` hidden size, ``L`` layers,
``K`` directions (1 or 2).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

__all__ = ["by_length_pays", "fp32_cpu_training", "run_lstm"]


def fp32_cpu_training(module: nn.Module, x: Tensor) -> bool:
    """Whether ``module`` is training on ``x`` in plain fp32 on a CPU (no autocast), where
    torch's LSTM picks between its own kernels and oneDNN's by the input's form."""
    return (
        module.training
        and torch.is_grad_enabled()
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and not torch.is_autocast_enabled("cpu")
    )


def run_lstm(lstm: nn.LSTM, x: Tensor, lengths: Tensor) -> tuple[Tensor, tuple[Tensor, Tensor]]:
    """``lstm`` (``batch_first``) over ``x`` ``(B, T, E)`` with ``(B,)`` lengths: outputs
    ``(B, T, K*H)`` (zeros on padding) and final ``(h, c)``, ``(L*K, B, H)`` each, at each
    sequence's own last position (as the packed call returns them)."""
    if fp32_cpu_training(lstm, x) and bool(lengths.min() > 0):
        distinct = lengths.unique()
        if by_length_pays(distinct, rows=lengths.numel()):
            return _by_length(lstm, x, lengths, distinct)
    return _packed(lstm, x, lengths)


def _packed(lstm: nn.LSTM, x: Tensor, lengths: Tensor) -> tuple[Tensor, tuple[Tensor, Tensor]]:
    """:func:`run_lstm` as one call on a packed batch."""
    packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
    output, (h, c) = lstm(packed)
    states, _ = pad_packed_sequence(output, batch_first=True, total_length=x.size(1))
    return states, (h, c)


def by_length_pays(distinct: Tensor, *, rows: int) -> bool:
    """Whether a batch of ``rows`` sequences with these ``distinct`` lengths trains faster
    by length than packed (fp32, CPU).

    A cost model with its constants measured on LSTMs of 64-128 units per direction (1-2
    layers) over 8-512 rows of 20-60 positions, forward + backward, both paths timed on each
    case (``benchmarks/lstm_paths.py``, an AMD EPYC with 2 threads): oneDNN pays a fixed cost
    per time step of each group, about a sixth of a packed time step's, so a few groups always
    pay (steps run by length ``sum(distinct) <= 4 * longest``);
    packing's backward pass fills the input-gate gradient of the whole batch at every position
    (cost ``rows * longest**2``), so large groups pay too (``rows / groups * longest >= 320``).
    Over recorded training batches, forward + backward against the faster path for each batch:
    this rule 1.00-1.03x, always by length 1.00-1.74x, always packed 1.03-1.49x (translation
    encoder, sentiment BiLSTM, hierarchical word and sentence encoders).
    """
    longest = int(distinct.max())
    return int(distinct.sum()) <= 4 * longest or rows / distinct.numel() * longest >= 320


def _by_length(
    lstm: nn.LSTM, x: Tensor, lengths: Tensor, distinct: Tensor | None = None
) -> tuple[Tensor, tuple[Tensor, Tensor]]:
    """:func:`run_lstm` once per distinct length (lengths >= 1; ``distinct``: their unique
    values, if already known)."""
    total = x.size(1)
    lengths = lengths.to(x.device)
    distinct = lengths.unique() if distinct is None else distinct
    outputs, finals_h, finals_c, groups = [], [], [], []
    for length in distinct.tolist():
        rows = (lengths == length).nonzero().squeeze(1)  # (b,)
        output, (h, c) = lstm(x.index_select(0, rows)[:, :length])  # (b, length, K*H)
        outputs.append(nn.functional.pad(output, (0, 0, 0, total - length)))
        finals_h.append(h)
        finals_c.append(c)
        groups.append(rows)
    order = torch.cat(groups)  # batch row of each row of the concatenation
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(order.numel(), device=order.device)
    states = torch.cat(outputs).index_select(0, inverse)
    h = torch.cat(finals_h, dim=1).index_select(1, inverse)
    c = torch.cat(finals_c, dim=1).index_select(1, inverse)
    return states, (h, c)
