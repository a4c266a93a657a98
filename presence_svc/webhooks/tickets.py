"""What the dispatcher holds in memory between reading stream entries and acknowledging
them: each delivery it keeps in memory (``Fresh``) and, per batch of entries read, a
``Ticket`` per stream entry (or per interval's entries) counting those still unsettled. A
delivery settles when the receiver answered 2xx or it is committed to the database for a
retry (or its endpoint is gone); the entries are acknowledged once every delivery of
theirs settled. A worker killed before that
leaves them pending in the stream: the next one reads them again (a receiver may get an
event twice, with the same id).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Fresh", "Ticket"]


class Ticket:
    """An entry (or an interval's entries), acknowledged once ``count`` deliveries settled."""

    __slots__ = ("_done", "acks", "count")

    def __init__(self, acks: dict[str, list[bytes]], done: Callable[[Ticket], None]) -> None:
        self.acks = acks
        self.count = 0
        self._done = done

    def settle(self) -> None:
        self.count -= 1
        if self.count == 0:
            self._done(self)


@dataclass(slots=True, eq=False)
class Fresh:
    """A delivery held in memory only: written to the database if it fails (or its lane
    has no room), never on the happy path. ``body`` is shared by the event's endpoints."""

    event_id: str
    event_type: str
    artifact_id: str
    body: bytes
    created_at_ms: int
    ticket: Ticket
    settled: bool = False
    attempts: int = 0
    queued: float = 0.0
    """When its lane took it (monotonic seconds)."""

    def settle(self) -> None:
        if not self.settled:
            self.settled = True
            self.ticket.settle()
