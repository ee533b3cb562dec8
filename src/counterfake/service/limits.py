"""Request rates: a token bucket per API key, and per client address on the keyless routes, so
that one noisy client cannot starve the others.

Each worker keeps its own buckets (no request waits on another process or the database), so a
client whose connections reach every worker may send up to `workers x rate`.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Final

__all__ = ["RateLimiter"]

#: Buckets kept before the full ones (clients that went quiet) are forgotten.
_MOST_BUCKETS: Final = 100_000


class RateLimiter:
    """Token buckets by name: `rate` requests a second on average, `burst` at once."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = float(max(1, burst))
        self._buckets: dict[str, tuple[float, float]] = {}  # name -> (tokens, at)
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def take(self, name: str) -> int:
        """0 when `name` may send this request now; otherwise the whole seconds until it may
        (for `Retry-After`), and nothing is taken."""
        if not self.enabled:
            return 0
        now = time.monotonic()
        with self._lock:
            tokens, at = self._buckets.get(name, (self.burst, now))
            tokens = min(self.burst, tokens + (now - at) * self.rate)
            if tokens >= 1.0:
                self._buckets[name] = (tokens - 1.0, now)
                if len(self._buckets) > _MOST_BUCKETS:
                    self._forget(now)
                return 0
            self._buckets[name] = (tokens, now)
            return max(1, math.ceil((1.0 - tokens) / self.rate))

    def _forget(self, now: float) -> None:
        """Drop buckets that have refilled: their clients start full again anyway."""
        full = [
            name
            for name, (tokens, at) in self._buckets.items()
            if tokens + (now - at) * self.rate >= self.burst
        ]
        for name in full:
            del self._buckets[name]
