"""The pure parts of interval mode: the hysteresis of the mode and the netting of one
interval's joins and leaves per user."""

from __future__ import annotations

from presence_svc.live.events.interval import IntervalBatch, LargeRooms
from presence_svc.live.store import PresenceRow


def row(user: str, state: dict[str, int] | None = None) -> PresenceRow:
    return PresenceRow(user, None, state, 1_000, 1)


def test_the_mode_enters_at_the_threshold_and_leaves_below_80_percent() -> None:
    rooms = LargeRooms(enter_users=500)
    assert rooms.first_mode(499) == "exact"
    assert rooms.first_mode(500) == "interval"
    assert rooms.next_mode("exact", 499) == "exact"
    assert rooms.next_mode("exact", 500) == "interval"
    assert rooms.next_mode("interval", 400) == "interval"  # the border band keeps the mode
    assert rooms.next_mode("interval", 450) == "interval"
    assert rooms.next_mode("interval", 399) == "exact"
    assert rooms.next_mode("exact", 450) == "exact"


def test_a_user_who_joined_and_left_within_an_interval_is_in_neither_list() -> None:
    batch = IntervalBatch()
    batch.join(row("ann"))
    batch.leave("ann", "left")
    assert not batch
    taken = batch.take(100)
    assert (taken.joined, taken.left, taken.more) == ([], [], False)


def test_a_user_who_left_and_came_back_is_listed_as_joined_with_the_fresh_row() -> None:
    batch = IntervalBatch()
    batch.leave("bob", "timeout")
    batch.join(row("bob", {"page": 2}))
    taken = batch.take(100)
    assert [r.state for r in taken.joined] == [{"page": 2}]
    assert taken.left == []


def test_a_user_online_before_who_left_rejoined_and_left_is_listed_as_left() -> None:
    batch = IntervalBatch()
    batch.leave("cy", "left")
    batch.join(row("cy"))
    batch.leave("cy", "timeout")
    taken = batch.take(100)
    assert (taken.joined, taken.left) == ([], [("cy", "timeout")])


def test_state_and_sessions_changes_fold_into_joined_rows_only() -> None:
    batch = IntervalBatch()
    batch.join(row("dee"))
    batch.update("dee", state={"typing": 1}, sessions=2)
    batch.update("eve", state={"typing": 1})  # not listed: not sent in interval mode
    (joined,) = batch.take(100).joined
    assert (joined.user_id, joined.state, joined.sessions) == ("dee", {"typing": 1}, 2)


def test_the_lists_are_capped_and_more_says_so_then_the_batch_starts_over() -> None:
    batch = IntervalBatch()
    for i in range(5):
        batch.join(row(f"new-{i}"))
        batch.leave(f"old-{i}", "left")
    taken = batch.take(3)
    assert [r.user_id for r in taken.joined] == ["new-0", "new-1", "new-2"]
    assert [u for u, _ in taken.left] == ["old-0", "old-1", "old-2"]
    assert taken.more is True
    assert batch.take(3).more is False


def test_the_message_decoder_takes_active_and_away_when_the_scripts_send_them() -> None:
    import msgspec

    from presence_svc.live.events.message import Counts, decode_message

    plain = decode_message(msgspec.msgpack.encode([3, 4, [["leave", "ann", "left"]]]))
    assert plain.counts == Counts(3, 4, 3, 0)  # without the active count, everyone is
    assert plain.events == [["leave", "ann", "left"]]
    counted = decode_message(msgspec.msgpack.encode([5, 6, [], 2, "later"]))
    assert (counted.counts.active, counted.counts.away) == (2, 3)
