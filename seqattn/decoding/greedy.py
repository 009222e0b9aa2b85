"""Greedy search: the most likely next token at every step.

Written only against :class:`~seqattn.models.protocol.Seq2Seq`. Sentences that produce ``EOS``
leave the batch (``reorder_state`` with the surviving rows), so each step only runs the
unfinished ones; the loop ends when none is left. Tokens, per-token log-probabilities and
attention rows are written straight into per-sentence buffers indexed by the original position,
so nothing has to be reordered when the batch shrinks.

Greedy search is beam search with one beam, and returns the same tokens and scores
(``beam_search(..., beam_size=1)``; tested), including the length-normalised ``score``.
The model is driven as given: call ``model.eval()`` first to switch dropout off. A model that
scores a shortlist (:mod:`.shortlist`) reports each column's id in ``StepOutput.vocab``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from seqattn.data.tokenizer import BOS_ID, EOS_ID, PAD_ID
from seqattn.decoding.constraints import constrain_log_probs, length_bounds, next_log_probs
from seqattn.decoding.hypothesis import Hypothesis, build_hypotheses, normalise
from seqattn.models.protocol import Seq2Seq

__all__ = ["greedy_search"]


@torch.no_grad()
def greedy_search(
    model: Seq2Seq,
    src: Tensor,
    src_lengths: Tensor,
    *,
    length_penalty: float = 1.0,
    max_len_a: float = 1.5,
    max_len_b: int = 5,
    min_len_a: float = 0.0,
    min_len_b: int = 0,
    max_len: int | None = None,
) -> list[list[Hypothesis]]:
    """Decode a batch greedily.

    Args:
        model: any :class:`~seqattn.models.protocol.Seq2Seq`.
        src: ``(B, S)`` source ids, right-padded with ``PAD_ID``.
        src_lengths: ``(B,)`` real source lengths.
        length_penalty: GNMT ``alpha`` of the reported ``score`` (it does not change the tokens).
        max_len_a, max_len_b: at most ``floor(a * src_len + b)`` tokens (``EOS`` not counted);
            a sentence that reaches it gets ``EOS`` forced.
        min_len_a, min_len_b: ``EOS`` is forbidden before ``floor(a * src_len + b)`` tokens.
        max_len: hard cap on the output length of every sentence (``None``: none).
    Returns:
        Per source sentence, in input order, a list with one :class:`Hypothesis` (empty only if
        every token was forbidden, e.g. a vocabulary of special tokens with a minimum length).
    """
    batch = src.size(0)
    if batch == 0:
        return []
    device = src.device
    src_lengths = src_lengths.to(device)
    min_lens, max_lens = length_bounds(
        src_lengths,
        max_len_a=max_len_a,
        max_len_b=max_len_b,
        min_len_a=min_len_a,
        min_len_b=min_len_b,
        max_len=max_len,
    )
    longest, shortest = int(max_lens.max()), int(max_lens.min())

    state = model.encode(src, src_lengths)
    tokens = torch.full((batch, longest + 1), PAD_ID, dtype=torch.long, device=device)  # (B, T+1)
    lengths = torch.full((batch,), -1, dtype=torch.long, device=device)  # -1 = no hypothesis
    active = torch.arange(batch, device=device)  # (A,) original position of each live row
    prev = torch.full((batch,), BOS_ID, dtype=torch.long, device=device)  # (A,)
    attention: Tensor | None = None  # (B, T+1, S), allocated once S is known
    token_lps: Tensor | None = None  # (B, T+1)
    cumulative: Tensor | None = None  # (B,)

    for step in range(longest + 1):
        out, state = model.step(prev, state)
        lprobs = next_log_probs(out.logits)  # (A, V)
        if attention is None:
            attention = out.attention.new_zeros(batch, longest + 1, out.attention.size(-1))
            token_lps = lprobs.new_zeros(batch, longest + 1)
            cumulative = lprobs.new_zeros(batch)
        assert token_lps is not None and cumulative is not None
        constrain_log_probs(
            lprobs,
            step=step,
            min_lens=min_lens[active],
            max_lens=max_lens[active] if step >= shortest else None,
        )
        best, chosen = lprobs.max(dim=-1)  # (A,), (A,)
        if out.vocab is not None:  # a shortlist's column -> the token id
            chosen = out.vocab[chosen]
        tokens[active, step] = chosen
        attention[active, step] = out.attention
        token_lps[active, step] = best
        cumulative[active] += best

        ended = chosen.eq(EOS_ID)
        dead = torch.isneginf(best)  # nothing was allowed: no hypothesis
        finished = ended | dead
        if bool(finished.any()):
            lengths[active[ended & ~dead]] = step
            keep = (~finished).nonzero().squeeze(1)  # (A',)
            if keep.numel() == 0:
                break
            active, chosen = active[keep], chosen[keep]
            state = model.reorder_state(state, keep)
        prev = chosen

    assert attention is not None and token_lps is not None and cumulative is not None
    found = (lengths >= 0).nonzero().squeeze(1)  # (H,)
    found_lengths = lengths[found]
    scores = normalise(cumulative[found], found_lengths + 1, alpha=length_penalty)
    hypotheses = build_hypotheses(
        tokens[found],
        found_lengths,
        attention[found],
        token_lps[found],
        cumulative[found],
        scores,
        src_lengths[found],
    )
    results: list[list[Hypothesis]] = [[] for _ in range(batch)]
    for index, hypothesis in zip(found.tolist(), hypotheses, strict=True):
        results[index].append(hypothesis)
    return results
