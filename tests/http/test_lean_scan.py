"""The lean path's head scan (``lean._plain_fields``) against its definition: a head is
taken when it is ``PLAIN_HEAD`` (plain ``CRLF name: value`` lines, within aiohttp's
limits), and its fields are what one search of the head for the routes' header names finds.
The scan reaches that answer another way (one search of the lines, one pass over the
control bytes); any head on which the two differ would be read other than aiohttp reads it.
"""

from __future__ import annotations

import re

from hypothesis import example, given, settings
from hypothesis import strategies as st

from presence_svc.http import lean

# The definition, as the scan read it before: each value byte checked against a class by
# ``PLAIN_HEAD``, then the routes' names searched for, case-insensitively.
_FIELDS_SEARCH = re.compile(
    rb"\r\n(authorization|accept|content-type|content-length|host|content-location"
    rb"|content-range|etag|max-forwards|server|user-agent|origin|connection"
    rb"|transfer-encoding|expect|upgrade|content-encoding|sec-websocket-key1):([^\r]*)",
    re.IGNORECASE,
)


def _defined(data: bytes, head: int, end: int) -> dict[bytes, bytes] | None:
    if (
        end > 8190
        or data.count(b"\r\n", head, end) > 100
        or lean.PLAIN_HEAD.fullmatch(data, head, end) is None
    ):
        return None
    seen: dict[bytes, bytes] = {}
    for name, value in _FIELDS_SEARCH.findall(data, head, end):
        name = name.lower()
        if name in seen or name in lean._DECLINED:
            return None
        seen[name] = value.strip(b" \t")
    return seen


_NAMES = [
    b"Host",
    b"host",
    b"HOST",
    b"Authorization",
    b"Content-Type",
    b"content-length",
    b"Accept",
    b"Connection",
    b"Origin",
    b"Transfer-Encoding",
    b"X-Trace",
    b"User-Agent",
    b"Hostx",
    b"Ho st",
    b"Host ",
    b"",
    b"Content-Length\x00",
    b"\xc3\xa9",
]
_BYTES = [b"a", b"Z", b"0", b" ", b"\t", b":", b"\r", b"\n", b"\r\n", b"\x00", b"\x7f"]
_BYTES += [b"\x1f", b"\x0b", b"\x80", b"\xff", b"Bearer x.y.z", b"application/json", b"12"]
_value = st.lists(st.sampled_from(_BYTES), max_size=6).map(b"".join)
_name = st.sampled_from(_NAMES) | st.binary(max_size=6)
_line = st.tuples(_name, st.sampled_from([b":", b": ", b":\t", b"", b" :", b"::"]), _value)
_sep = st.sampled_from([b"\r\n", b"\r\n", b"\r\n", b"\n", b"\r", b"\r\n "])


@st.composite
def _heads(draw: st.DrawFn) -> bytes:
    lines = draw(st.lists(st.tuples(_sep, _line), max_size=8))
    body = b"".join(sep + name + colon + value for sep, (name, colon, value) in lines)
    # as the scan is given it: from the request line's CRLF (a first line's own, or none)
    first = draw(st.sampled_from([b"", b"\r\nX: y"]))
    return first + body if body.startswith(b"\r\n") or not body else b"\r\n" + first + body


@settings(max_examples=3000, deadline=None)
@given(_heads())
@example(b"")
@example(b"\r\nHost: a\r\nhost: b")
@example(b"\r\nHost: a\rb")
@example(b"\r\nHost: a\nb")
@example(b"\r\nHost: a\x7f")
@example(b"\r\nHost: a\tb\x80")
@example(b"\r\nHost : a")
@example(b"\r\nHost: a\r\n folded")
@example(b"\r\nx\r\nHost: a")
@example(b"\r\nHost: a\rx\n")
@example(b"\r\nHost: a\r\nbad\r\nX: b")
@example(b"\r\nX: a: b\r\nContent-Length: 12 \t")
def test_the_scan_takes_exactly_the_heads_plain_head_takes(head: bytes) -> None:
    assert head.startswith(b"\r\n") or not head
    data = b"POST /v1/heartbeat HTTP/1.1" + head + b"\r\n\r\n{}"
    start, end = 27, 27 + len(head)
    assert lean._plain_fields(data, start, end) == _defined(data, start, end)


def test_the_limits_are_aiohttps() -> None:
    many = b"".join(b"\r\nX-%d: v" % i for i in range(101))
    assert lean._plain_fields(many, 0, len(many)) is None
    assert _defined(many, 0, len(many)) is None
    long = b"\r\nX: " + b"v" * 8200
    assert lean._plain_fields(long, 0, len(long)) is None
    hundred = b"".join(b"\r\nX-%d: v" % i for i in range(100))
    assert lean._plain_fields(hundred, 0, len(hundred)) == {}
