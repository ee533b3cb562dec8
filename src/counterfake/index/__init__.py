"""Indexes derived from the store, held in memory by each process."""

from .hamming import HammingIndex, LinearHammingIndex, codes_from_hex
from .mih import MultiIndexHammingIndex

__all__ = ["HammingIndex", "LinearHammingIndex", "MultiIndexHammingIndex", "codes_from_hex"]
