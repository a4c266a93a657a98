"""A bounded mapping that drops its least recently used entry first: for caches whose keys
outnumber their room (a process's pollers), where starting over at the bound would make
every key miss once more per round of them."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["Lru"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Lru(Generic[K, V]):
    """At most ``size`` entries and, given ``weigh``, at most ``max_weight`` of their
    weights (bytes, say: a few large entries must not hold what many small ones may); a
    read or a write makes its entry the most recent. The entry just written stays even if
    it alone weighs more. One event loop uses it: no lock."""

    __slots__ = ("_entries", "_max_weight", "_weigh", "size", "weight")

    def __init__(
        self,
        size: int,
        max_weight: int | None = None,
        weigh: Callable[[K, V], int] | None = None,
    ) -> None:
        if size < 1:
            raise ValueError("an Lru holds at least one entry")
        if (max_weight is None) != (weigh is None):
            raise ValueError("max_weight and weigh go together")
        self.size = size
        self._max_weight = max_weight
        self._weigh = weigh
        self.weight = 0
        """The entries' weights, summed (0 without ``weigh``)."""
        self._entries: OrderedDict[K, tuple[V, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: K) -> bool:
        return key in self._entries

    def get(self, key: K) -> V | None:
        found = self._entries.get(key)
        if found is None:
            return None
        self._entries.move_to_end(key)
        return found[0]

    def put(self, key: K, value: V) -> None:
        weight = self._weigh(key, value) if self._weigh is not None else 0
        old = self._entries.get(key)
        if old is not None:
            self.weight -= old[1]
        self._entries[key] = (value, weight)
        self._entries.move_to_end(key)
        self.weight += weight
        limit = self._max_weight
        while len(self._entries) > self.size or (
            limit is not None and self.weight > limit and len(self._entries) > 1
        ):
            self.weight -= self._entries.popitem(last=False)[1][1]

    def pop(self, key: K) -> V | None:
        found = self._entries.pop(key, None)
        if found is None:
            return None
        self.weight -= found[1]
        return found[0]

    def drop_if(self, unwanted: Callable[[K], bool]) -> None:
        """Drop every entry whose key is ``unwanted`` (a user erased)."""
        for key in [k for k in self._entries if unwanted(k)]:
            self.weight -= self._entries.pop(key)[1]
