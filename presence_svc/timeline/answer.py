"""A ``1m`` timeline answer as JSON, put together from the encoded points of each hour.

What an hour's points encode to depends only on what it is made of: a rolled-up hour's
record (``timeline_done.lua``; a record written again is new bytes, so a new key) or, for
an hour nobody came or went in, the one value carried through it. ``Fragments`` keeps those
encodings by that content (bounded, per process), so a repeated read joins bytes instead of
making and encoding 60 points an hour; nothing ever needs invalidating, since a changed hour
is a different key, and an entry no read asks for again ages out. What can still change
(the minutes not rolled up: the current hour) and the hours a range cuts are encoded anew
on each read. The bytes are what ``msgspec`` makes of ``schemas.TimelineOut``: a test holds
them to it. A client that accepts gzip gets the answer gzipped from each hour's deflated
points (kept with them: 590 KB of a week's JSON are some 70 KB), deflated once.
"""

from __future__ import annotations

import struct
import zlib
from collections import OrderedDict
from collections.abc import Hashable
from typing import Protocol, TypeVar, overload

import msgspec

from presence_svc.schemas import TimelineOut, TimelinePeak, TimelinePoint
from presence_svc.timeline.pieces import HourPiece, Piece
from presence_svc.timeline.series import MINUTE_MS, stamp, stamps

__all__ = ["Cut", "Encoded", "Fragments", "Kept", "Whole", "minutes_json"]

_JSON = msgspec.json.Encoder()
_OVERHEAD = 200
"""Bytes an entry costs besides its points and key: the entry, the key tuple, the dict slot."""
_POINTS_AT = b'"points":[]'


class Encoded:
    """A run of points, encoded (and, once a client asked for gzip, deflated)."""

    __slots__ = ("after", "at", "cost", "deflated", "points", "top")

    def __init__(self, points: bytes, top: int, at: int, cost: int) -> None:
        self.points = points
        """The points' JSON objects, comma-separated (no brackets)."""
        self.top = top
        """The most users online in one of its minutes."""
        self.at = at
        """The first of its minutes (0: its first) with ``top`` users."""
        self.cost = cost
        """What keeping it costs, in bytes (``Fragments``' budget)."""
        self.deflated: bytes | None = None
        """``points`` as ``deflate`` makes them, made on the first read that wants gzip."""
        self.after: bytes | None = None
        """The points ``deflated`` was made to follow (``_deflate``'s ``after``, a comma
        between): made again when they differ."""


class Whole:
    """A whole ``1m`` answer's body (JSON or gzipped), its entity tag and the signature of
    what it was made of (``query.MinutesRead``): a read with the same signature answers
    these bytes; one with the same ``prefix`` reuses them up to the ``cut``."""

    __slots__ = ("body", "cost", "cut", "etag", "prefix", "signature")

    def __init__(self, signature: bytes, body: bytes, etag: str, prefix: bytes, cut: Cut) -> None:
        self.signature = signature
        self.body = body
        self.etag = etag
        self.prefix = prefix
        self.cut = cut
        self.cost = len(body) + len(signature) + len(prefix) + _OVERHEAD


class Kept(Protocol):
    """What ``Fragments`` keeps: anything that says what keeping it costs."""

    @property
    def cost(self) -> int: ...


K = TypeVar("K", bound=Kept)


class Fragments:
    """Encoded hours by content (and, beside them, ``Whole`` answers and the hour records'
    copies, ``records.KnownHours``), least recently read dropped first once over
    ``max_bytes`` (0: nothing is kept). One event loop uses it: no lock."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.size = 0
        self._kept: OrderedDict[Hashable, Kept] = OrderedDict()

    def __len__(self) -> int:
        return len(self._kept)

    @overload
    def get(self, key: Hashable) -> Encoded | None: ...
    @overload
    def get(self, key: Hashable, kind: type[K]) -> K | None: ...
    def get(self, key: Hashable, kind: type[Kept] = Encoded) -> Kept | None:
        got = self._kept.get(key)
        if not isinstance(got, kind):  # None, or another kind under that key: none
            return None
        self._kept.move_to_end(key)
        return got

    def put(self, key: Hashable, entry: Kept) -> None:
        """Keep ``entry`` under ``key``, instead of what was kept under it."""
        old = self._kept.pop(key, None)
        if old is not None:
            self.size -= old.cost
        if entry.cost > self.max_bytes:
            return
        self._kept[key] = entry
        self.size += entry.cost
        self._trim()

    def drop(self, key: Hashable) -> None:
        """Keep nothing under ``key``."""
        old = self._kept.pop(key, None)
        if old is not None:
            self.size -= old.cost

    def grew(self, key: Hashable, encoded: Encoded, more: int) -> None:
        """``encoded``, kept under ``key`` or not, now costs ``more`` bytes more."""
        encoded.cost += more
        if self._kept.get(key) is encoded:
            self.size += more
            self._trim()

    def _trim(self) -> None:
        kept = self._kept
        while kept and self.size > self.max_bytes:
            _, dropped = kept.popitem(last=False)
            self.size -= dropped.cost


def _key(piece: Piece) -> Hashable | None:
    """What a whole hour's points are a function of; None for what may still change (the
    minutes not rolled up that had a change) and for a part of an hour."""
    if isinstance(piece, HourPiece):
        return (piece.hour, piece.record) if piece.lo == 0 and piece.hi == 60 else None
    if piece.carried and piece.first % 60 == 0 and len(piece.online) == 60:
        return (piece.first // 60, piece.online[0], piece.sessions[0])
    return None


def _encode(first: int, online: list[int], sessions: list[int], key_bytes: int) -> Encoded:
    times = stamps(first * MINUTE_MS, MINUTE_MS, len(online))
    points = _JSON.encode(list(map(TimelinePoint, times, online, sessions)))[1:-1]
    top = max(online)
    return Encoded(points, top, online.index(top), len(points) + key_bytes + _OVERHEAD)


def _deflate(data: bytes, after: bytes = b"") -> bytes:
    """``data`` as raw deflate blocks, none of them final, ending on a whole byte and
    referring to nothing before it but ``after`` (as a preset dictionary: the bytes the
    stream holds just before ``data``): such runs put one after another make one stream.
    An hour's points refer to the hour's before, which they mostly repeat (the times'
    dates, the names): a week's answer is some 43 KB instead of 68 KB."""
    if after:
        compressor = zlib.compressobj(6, zlib.DEFLATED, -15, zdict=after[-_WINDOW:])
    else:
        compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    return compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)


_WINDOW = 32_768
"""How far back deflate refers."""


_GZIP_HEAD = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
"""RFC 1952: deflate, no flags, no time, unknown system."""
_DEFLATE_END = b"\x03\x00"
"""An empty final block: the end of the stream."""
_COMMA = _deflate(b",")


class Cut:
    """Where an answer's bytes stop depending on anything but the hours before the split
    (``MinutesRead.prefix``): its first ``offset`` bytes (the frame's head and those
    hours' points, as sent: JSON, or the start of the gzip stream), the CRC-32 and length of
    the JSON they hold (the gzip trailer's start), those points' peak (``top`` -1:
    none; ``at`` a minute) and the last of them (the run the next one follows, b"": none)."""

    __slots__ = ("at", "crc", "last", "offset", "size", "top")

    def __init__(self, offset: int, crc: int, size: int, top: int, at: int, last: bytes) -> None:
        self.offset, self.crc, self.size, self.top, self.at = offset, crc, size, top, at
        self.last = last


def _points(
    pieces: list[Piece], fragments: Fragments, gzip: bool, last: bytes = b""
) -> tuple[list[bytes], list[bytes], int, int, bytes]:
    """The pieces' points (commas between), the same deflated (with ``gzip``; ``last``: the
    points they follow, b"": none), their peak (-1: no points) and its minute, and the
    last points."""
    parts: list[bytes] = []
    packed: list[bytes] = []
    top, at = -1, 0
    for piece in pieces:
        key = _key(piece)
        got = None if key is None else fragments.get(key)
        if got is None:
            online, sessions = piece.values()
            if not online:
                continue
            record_bytes = len(piece.record) if isinstance(piece, HourPiece) else 0
            got = _encode(piece.first, online, sessions, record_bytes)
            if key is not None:
                fragments.put(key, got)
        parts += (got.points, b",")
        if gzip:
            deflated, after = got.deflated, got.after
            if deflated is None or (after is not last and after != last):
                old = 0 if deflated is None else len(deflated)
                got.deflated = deflated = _deflate(got.points, last + b"," if last else b"")
                got.after = last
                fragments.grew(key, got, len(deflated) - old)
            packed += (deflated, _COMMA)
        last = got.points
        if got.top > top:
            top, at = got.top, piece.first + got.at
    if parts:  # the last comma
        parts.pop()
        if gzip:
            packed.pop()
    return parts, packed, top, at, last


def _frame(artifact_id: str, peak: TimelinePeak) -> tuple[bytes, bytes]:
    """The answer around its points: up to ``"points":[`` and from ``]`` on (a newline
    last, as ``wire.respond`` writes it)."""
    frame = _JSON.encode(TimelineOut(artifact_id=artifact_id, step="1m", points=[], peak=peak))
    head, tail = frame.split(_POINTS_AT, 1)
    return head + b'"points":[', b"]" + tail + b"\n"


def minutes_json(
    artifact_id: str,
    pieces: list[Piece],
    fragments: Fragments,
    *,
    gzip: bool = False,
    before: int = 0,
    again: tuple[bytes, Cut] | None = None,
) -> tuple[bytes, Cut]:
    """The answer of a ``1m`` read of ``pieces`` (``pieces.minute_pieces``), as JSON; with
    ``gzip``, gzipped (RFC 1952) from each hour's deflated points, kept with them. The first
    ``before`` pieces are the hours before the split: ``again``, an earlier answer (in the
    same coding) of the same ones and its ``Cut``, gives their bytes as they are, so only
    the rest is made (its CRC carried on from the cut's). Returns the answer and its cut."""
    head, _ = _frame(artifact_id, TimelinePeak(online=0, at=None))
    if again is None:
        parts, packed, top, at, last = _points(pieces[:before], fragments, gzip)
        points = b"".join(parts)
        crc = zlib.crc32(points, zlib.crc32(head)) if gzip else 0
        first = b"".join((_GZIP_HEAD, _deflate(head), *packed)) if gzip else head + points
        cut = Cut(len(first), crc, len(head) + len(points), top, at, last)
        start: bytes | memoryview = first
    else:
        body, cut = again
        start = memoryview(body)[: cut.offset]
    parts, packed, top, at, _ = _points(pieces[before:], fragments, gzip, cut.last)
    if parts and cut.top >= 0:
        parts.insert(0, b",")
        packed.insert(0, _COMMA)
    if top <= cut.top:  # the earlier minute on a tie
        top, at = cut.top, cut.at
    peak = TimelinePeak(online=max(top, 0), at=stamp(at * MINUTE_MS) if top >= 0 else None)
    _, tail = _frame(artifact_id, peak)
    if not gzip:
        return b"".join((start, *parts, tail)), cut
    crc, size = cut.crc, cut.size + len(tail)
    for part in parts:
        crc = zlib.crc32(part, crc)
        size += len(part)
    crc = zlib.crc32(tail, crc)
    trailer = struct.pack("<II", crc, size & 0xFFFFFFFF)
    return b"".join((start, *packed, _deflate(tail), _DEFLATE_END, trailer)), cut
