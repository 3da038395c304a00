"""text2tracks: prompt-based recommendation by generative retrieval over semantic IDs."""

__version__ = "0.1.0"
