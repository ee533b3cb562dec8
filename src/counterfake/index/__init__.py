"""Indexes derived from the store, held in memory by each process."""

from typing import TYPE_CHECKING

from .hamming import HammingIndex, LinearHammingIndex, codes_from_hex

if TYPE_CHECKING:
    from .mih import MultiIndexHammingIndex


def __getattr__(name: str) -> object:
    # The multi-index compiles Numba kernels on import: loaded only when a large bank needs it.
    if name == "MultiIndexHammingIndex":
        from .mih import MultiIndexHammingIndex

        return MultiIndexHammingIndex
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["HammingIndex", "LinearHammingIndex", "MultiIndexHammingIndex", "codes_from_hex"]
