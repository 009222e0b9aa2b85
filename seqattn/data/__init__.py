"""Text pipeline: tokenization, corpora, built-in datasets and batching."""
