"""The views stream's entry: the one definition of what ``record_view.lua`` appends.

An entry has one field, ``v``: msgpack ``[viewId, artifactId, versionId, userId,
sessionId, viewedAtMs]``, the fields of ``LedgerRow`` in order (the session id is '' when
the view had none). The drain decodes it straight into a row, in C; nothing else packs
or unpacks it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import msgpack
import msgspec

__all__ = ["ENTRY_FIELD", "LedgerRow", "encode_entry", "parse_entry"]

ENTRY_FIELD = b"v"


class LedgerRow(NamedTuple):
    """One counted view. ``view_id`` is unique: writing a row twice keeps one.

    A tuple, so a batch goes to the database driver as it is, with no copy per row."""

    view_id: str
    artifact_id: str
    version_id: str
    user_id: str
    session_id: str | None
    viewed_at_ms: int


_ENTRY = msgspec.msgpack.Decoder(LedgerRow)


def parse_entry(fields: Sequence[bytes]) -> LedgerRow:
    """A stream entry's fields (flat, as Redis sends them); ValueError if not a view.

    ``session_id`` stays '' when the view had no session: the ledger stores NULL."""
    if len(fields) != 2 or fields[0] != ENTRY_FIELD:
        raise ValueError("not a view entry: expected the one field 'v'")
    try:
        return _ENTRY.decode(fields[1])
    except msgspec.DecodeError as exc:
        raise ValueError(f"not a view entry: {exc}") from exc


def encode_entry(row: LedgerRow) -> dict[bytes, bytes]:
    """The entry ``record_view.lua`` appends for ``row`` (for tools and tests)."""
    return {ENTRY_FIELD: msgpack.packb(["" if value is None else value for value in row])}
