"""Model-agnostic decoding: greedy and beam search, forced decoding, batched translation, and
lexical shortlists of the output vocabulary.

Everything here drives a model only through :class:`~seqattn.models.protocol.Seq2Seq`
(``encode`` / ``step`` / ``reorder_state`` / ``forward``) and never asks which model it is.
"""

from seqattn.decoding.beam import beam_search
from seqattn.decoding.constraints import length_bounds
from seqattn.decoding.forced import force_decode
from seqattn.decoding.greedy import greedy_search
from seqattn.decoding.hypothesis import Hypothesis, gnmt_penalty, normalise
from seqattn.decoding.shortlist import LexicalShortlist, Shortlisted
from seqattn.decoding.translate import Search, translate_batches

__all__ = [
    "Hypothesis",
    "LexicalShortlist",
    "Search",
    "Shortlisted",
    "beam_search",
    "force_decode",
    "gnmt_penalty",
    "greedy_search",
    "length_bounds",
    "normalise",
    "translate_batches",
]
