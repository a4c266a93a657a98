"""Opaque keyset cursors, msgpack + base64url.

Keyset rather than offset cursors, so a page never repeats or skips rows because rows
before it changed. ``encode_cursor``/``decode_cursor`` carry ``(score, member)`` of the
last row of a page; ``encode_scoped``/``decode_scoped`` carry a position in one order of
one list (say the presence list of one artifact, in join order), and refuse a cursor made
for another list or another order.
"""

from __future__ import annotations

import base64
import binascii
from hashlib import blake2b

import msgspec

from presence_svc.errors import BadRequest, FieldError

__all__ = ["decode_cursor", "decode_scoped", "encode_cursor", "encode_scoped"]

_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(tuple[int, str])
_SCOPED = msgspec.msgpack.Decoder(tuple[str, bytes, int])


def encode_cursor(score: int, member: str) -> str:
    return _b64(_ENCODER.encode((score, member)))


def decode_cursor(cursor: str) -> tuple[int, str]:
    try:
        return _DECODER.decode(_unb64(cursor))
    except (binascii.Error, ValueError, msgspec.DecodeError) as exc:
        raise _bad("the cursor is not one this service issued") from exc


def _scope(subject: str) -> bytes:
    """6 bytes of digest: a cursor of another list is refused with odds 1 - 2^-48."""
    return blake2b(subject.encode(), digest_size=6).digest()


def encode_scoped(order: str, subject: str, position: int) -> str:
    """A cursor at ``position`` in the list ``subject`` (an artifact id) sorted by ``order``."""
    return _b64(_ENCODER.encode((order, _scope(subject), position)))


def decode_scoped(cursor: str, order: str, subject: str) -> int:
    """The position of a cursor made by ``encode_scoped(order, subject, ...)``; a 400
    naming ``cursor`` for anything else (another artifact, another order, garbage)."""
    try:
        got_order, scope, position = _SCOPED.decode(_unb64(cursor))
    except (binascii.Error, ValueError, msgspec.DecodeError) as exc:
        raise _bad("the cursor is not one this service issued") from exc
    if got_order != order:
        raise _bad(f"the cursor belongs to another order ({got_order}), not {order}")
    if scope != _scope(subject):
        raise _bad("the cursor belongs to another list (another artifact)")
    return position


def _bad(message: str) -> BadRequest:
    return BadRequest(message, errors=[FieldError("cursor", message)])


def _b64(blob: bytes) -> str:
    return base64.urlsafe_b64encode(blob).decode().rstrip("=")


def _unb64(cursor: str) -> bytes:
    return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
