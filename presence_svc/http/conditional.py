"""Conditional reads (RFC 9110 section 13): ``If-None-Match`` against an answer's entity
tag, so a client polling an answer that did not change gets a ``304`` without its body."""

from __future__ import annotations

__all__ = ["none_match"]


def none_match(if_none_match: str | None, etag: str) -> bool:
    """Whether ``If-None-Match`` names ``etag`` (the weak comparison the header uses: a
    ``W/`` prefix is ignored) or is ``*``; a header that is not a list of tags names
    nothing (it is ignored, as the RFC asks)."""
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    opaque = etag.removeprefix("W/")
    return any(item.strip().removeprefix("W/") == opaque for item in if_none_match.split(","))
