"""seqattn: sequence-to-sequence models built around one attention core."""

__version__ = "0.1.0"
