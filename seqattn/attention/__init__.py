"""The one attention core: scores, ``attend``, multi-head attention, pooling and masks."""

from seqattn.attention.core import PoolChunk, PreparedKeys, attend, pooled_cache_attention, prepare_keys
from seqattn.attention.masks import causal_mask, combine_masks, key_mask, padding_mask
from seqattn.attention.multihead import KVCache, MultiHeadAttention, ProjectedMemory
from seqattn.attention.pooling import AttentionPooling
from seqattn.attention.scores import (
    SCORES,
    Additive,
    Concat,
    Dot,
    General,
    Location,
    RelativeScaledDot,
    ScaledDot,
    Score,
    build_score,
)

__all__ = [
    "SCORES",
    "Additive",
    "AttentionPooling",
    "Concat",
    "Dot",
    "General",
    "KVCache",
    "Location",
    "MultiHeadAttention",
    "PoolChunk",
    "PreparedKeys",
    "ProjectedMemory",
    "RelativeScaledDot",
    "ScaledDot",
    "Score",
    "attend",
    "build_score",
    "causal_mask",
    "combine_masks",
    "key_mask",
    "padding_mask",
    "pooled_cache_attention",
    "prepare_keys",
]
