"""Indexes derived from the store, held in memory by each process."""

from .hamming import HammingIndex, LinearHammingIndex

__all__ = ["HammingIndex", "LinearHammingIndex"]
