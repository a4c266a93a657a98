"""Opaque keyset cursors: ``(score, member)`` of the last row of a page, msgpack + base64url.

Keyset rather than offset cursors, so a page never repeats or skips rows because rows
before it changed.
"""

from __future__ import annotations

import base64
import binascii

import msgspec

from presence_svc.errors import BadRequest

__all__ = ["decode_cursor", "encode_cursor"]

_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(tuple[int, str])


def encode_cursor(score: int, member: str) -> str:
    return base64.urlsafe_b64encode(_ENCODER.encode((score, member))).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, str]:
    try:
        return _DECODER.decode(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, msgspec.DecodeError) as exc:
        raise BadRequest("the cursor is not one this service issued") from exc
