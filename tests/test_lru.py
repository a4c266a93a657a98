"""The bounded mapping where-now's caches use: the least recently read or written entry
goes first."""

from __future__ import annotations

import pytest

from presence_svc.lru import Lru


def test_the_least_recently_used_entry_goes_first() -> None:
    kept: Lru[str, int] = Lru(2)
    kept.put("a", 1)
    kept.put("b", 2)
    assert kept.get("a") == 1  # read: now the most recent
    kept.put("c", 3)
    assert "b" not in kept
    assert (kept.get("a"), kept.get("c"), len(kept)) == (1, 3, 2)
    kept.put("a", 10)  # written again: replaced, the most recent
    kept.put("d", 4)
    assert "c" not in kept
    assert (kept.get("a"), kept.get("d")) == (10, 4)


def test_pop_and_drop_if_forget_entries() -> None:
    kept: Lru[tuple[str, int], str] = Lru(10)
    for user in ("alice", "bob"):
        for n in range(3):
            kept.put((user, n), f"{user}{n}")
    kept.drop_if(lambda key: key[0] == "alice")
    assert len(kept) == 3
    assert kept.get(("alice", 0)) is None
    assert kept.pop(("bob", 1)) == "bob1"
    assert kept.pop(("bob", 1)) is None
    assert len(kept) == 2


def test_it_holds_at_least_one_entry() -> None:
    with pytest.raises(ValueError, match="at least one"):
        Lru(0)


def test_past_its_weight_the_least_recently_used_entries_go_first() -> None:
    kept: Lru[str, bytes] = Lru(100, max_weight=10, weigh=lambda key, value: len(value))
    kept.put("a", b"xxxx")
    kept.put("b", b"xxxx")
    assert kept.get("a") == b"xxxx"  # read: now the most recent
    kept.put("c", b"xxxx")  # 12 > 10: b goes
    assert ("b" in kept, kept.weight) == (False, 8)
    kept.put("a", b"x")  # replaced: its old weight no longer counts
    assert kept.weight == 5
    kept.put("big", b"x" * 30)  # heavier than all: the rest go, it stays
    assert (list(kept._entries), kept.weight) == (["big"], 30)
    assert kept.pop("big") == b"x" * 30
    assert kept.weight == 0
    kept.put("d", b"xx")
    kept.drop_if(lambda key: key == "d")
    assert (len(kept), kept.weight) == (0, 0)
    with pytest.raises(ValueError, match="go together"):
        Lru(10, max_weight=10)
