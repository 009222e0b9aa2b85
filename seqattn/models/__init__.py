"""Sequence-to-sequence models and the protocol they share."""
