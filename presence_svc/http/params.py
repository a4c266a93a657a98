"""Validated path and query parameters (bodies go through ``wire.Body``)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Protocol

from multidict import MultiMapping

from presence_svc.errors import BadRequest, FieldError
from presence_svc.schemas import ID_PATTERN
from presence_svc.timefmt import from_iso

__all__ = [
    "Params",
    "joined_ids",
    "path_id",
    "query_choice",
    "query_id",
    "query_ids",
    "query_int",
    "query_set",
    "query_time",
]

_ID = re.compile(ID_PATTERN)
_ID_CHARS = ID_PATTERN.removeprefix("^").removesuffix(r"$(?!\n)").removesuffix("$")
_IDS = re.compile(f"{_ID_CHARS}(?:\n{_ID_CHARS})*")
"""Many ids joined by newlines, checked in one regex pass (a newline is not an id char)."""
_ID_BYTES = bytes(c for c in range(128) if _ID.match(chr(c))) + b"\n"
"""The bytes of valid ids, and the newline that joins them."""


class Params(Protocol):
    """Where the parameters are read from: an aiohttp request, or a read ``http/lean``
    scanned before aiohttp parsed it (the same values: its path and query as aiohttp's
    router and ``yarl`` read them)."""

    @property
    def match_info(self) -> Mapping[str, str]: ...

    @property
    def query(self) -> MultiMapping[str]: ...


def _check_id(field: str, value: str) -> str:
    if not _ID.match(value):
        raise BadRequest(
            f"{field} is not a valid id",
            errors=[FieldError(field, "must be 1-128 characters of A-Z a-z 0-9 . _ : @ -")],
        )
    return value


def path_id(request: Params, name: str) -> str:
    return _check_id(name, request.match_info[name])


def query_id(request: Params, name: str) -> str | None:
    value = request.query.get(name)
    return None if value is None else _check_id(name, value)


def query_ids(request: Params, name: str, *, most: int) -> list[str]:
    values = request.query.getall(name, [])
    if not values:
        raise BadRequest(f"give at least one {name}", errors=[FieldError(name, "is required")])
    if len(values) > most:
        raise BadRequest(
            f"at most {most} {name} values per request",
            errors=[FieldError(name, f"at most {most} values, got {len(values)}")],
        )
    joined = "\n".join(values)
    if _IDS.fullmatch(joined) and joined.count("\n") == len(values) - 1:
        return values  # all valid: one pass instead of one match per id
    return [_check_id(name, v) for v in values]  # names the first bad one


def joined_ids(field: str, values: list[str]) -> bytes:
    """A body's ids whose lengths its schema checked (``_LooseId``), their characters
    checked in one pass and joined by newlines (what a script takes them as: one
    argument); a 400 names the first bad one (``field.N``). The characters are checked
    by deleting the allowed bytes, which costs a seventh of matching ``_IDS`` (which
    counts lengths too) over 1 000 ids."""
    joined = "\n".join(values).encode()
    if not joined.translate(None, _ID_BYTES) and joined.count(b"\n") == len(values) - 1:
        return joined
    for i, value in enumerate(values):
        _check_id(f"{field}.{i}", value)
    return joined  # unreachable: a newline inside an id fails its own check


def query_int(request: Params, name: str, *, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise BadRequest(
            f"{name} must be a whole number from {low} to {high}",
            errors=[FieldError(name, f"must be within {low}..{high}")],
        )
    return value


def query_choice(request: Params, name: str, choices: tuple[str, ...]) -> str:
    """One of ``choices`` (the first when absent)."""
    value = request.query.get(name) or choices[0]
    if value not in choices:
        raise BadRequest(
            f"{name} is invalid", errors=[FieldError(name, f"must be one of {', '.join(choices)}")]
        )
    return value


def query_set(request: Params, name: str, known: tuple[str, ...]) -> frozenset[str]:
    """A comma list of values out of ``known`` (repeating the parameter works too); empty
    when absent. An unknown value is a 400 naming ``name``."""
    values = {v.strip() for raw in request.query.getall(name, []) for v in raw.split(",")}
    values.discard("")
    unknown = sorted(values.difference(known))
    if unknown:
        raise BadRequest(
            f"{name} has unknown values: {', '.join(unknown)}",
            errors=[FieldError(name, f"a comma list of {', '.join(known)}")],
        )
    return frozenset(values)


def query_time(request: Params, name: str) -> int | None:
    """An ISO 8601 time with a zone, as milliseconds since the epoch."""
    raw = request.query.get(name)
    if raw is None:
        return None
    try:
        return from_iso(raw)
    except ValueError as exc:
        raise BadRequest(
            f"{name} is not a time",
            errors=[FieldError(name, "must be ISO 8601 with a zone, e.g. 2026-11-25T10:00:00Z")],
        ) from exc
