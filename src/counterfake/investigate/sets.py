"""Disjoint sets (union-find): how links and shared features merge into clusters."""

from __future__ import annotations

__all__ = ["DisjointSets"]


class DisjointSets:
    """Items 0..n-1, each in one set; a set is named by its smallest item."""

    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, a: int) -> int:
        while self.parent[a] != a:
            self.parent[a] = self.parent[self.parent[a]]
            a = self.parent[a]
        return a

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)
