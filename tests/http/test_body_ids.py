"""A body's ids are checked against their patterns after a decode without them, from a set
of ids known to match (``wire.Body``): whatever a client sends, the answer is the one
msgspec gives for the schema itself, valid or not, an id seen before or not."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from presence_svc.errors import BadRequest
from presence_svc.http.wire import Body, field_errors
from presence_svc.schemas import HeartbeatIn, LeaveIn, ProfileIn, ViewIn

_IDS = st.one_of(
    st.sampled_from(["doc-1", "tab-aaaa1", "v1", "a" * 128, "a" * 129, "", "doc 1", "doc-1\n"]),
    st.text(alphabet="abAB09._:@-/ \n\u00e9", max_size=70),
    st.integers(-2, 2),
    st.none(),
)
_OTHER = st.fixed_dictionaries(
    {},
    optional={
        "status": st.sampled_from(["active", "away", "gone", 3]),
        "engagedMs": st.integers(-1, 86_400_001),
        "state": st.one_of(st.none(), st.just({"page": 1}), st.just([1])),
        "grace": st.one_of(st.booleans(), st.just("yes")),
        "userId": st.text(max_size=5),
    },
)
_BODY = st.builds(
    lambda ids, other: {**{k: v for k, v in ids.items() if v != "<absent>"}, **other},
    st.fixed_dictionaries(
        {
            name: st.one_of(st.just("<absent>"), _IDS)
            for name in ("artifactId", "sessionId", "versionId")
        }
    ),
    _OTHER,
)


def _schema_answer(kind: type[Any], raw: bytes, as_msgpack: bool) -> Any:
    """What decoding with the schema itself gives: the value, or the fields at fault."""
    decoder: Any = msgspec.msgpack.Decoder(kind) if as_msgpack else msgspec.json.Decoder(kind)
    try:
        return msgspec.structs.asdict(decoder.decode(raw))
    except msgspec.ValidationError as exc:
        return field_errors(exc)


def _body_answer(body: Body[Any], raw: bytes, as_msgpack: bool) -> Any:
    try:
        value = body.parse("application/msgpack" if as_msgpack else "application/json", raw)
    except BadRequest as exc:
        return exc.errors
    assert isinstance(value, body.kind)
    return msgspec.structs.asdict(value)


@pytest.mark.parametrize("kind", [HeartbeatIn, LeaveIn, ViewIn])
@settings(max_examples=300, deadline=None)
@given(fields=_BODY, as_msgpack=st.booleans())
def test_a_body_is_answered_as_its_schema_answers_it(
    kind: type[Any], fields: dict[str, Any], as_msgpack: bool
) -> None:
    body = Body(kind)
    raw = msgspec.msgpack.encode(fields) if as_msgpack else msgspec.json.encode(fields)
    expected = _schema_answer(kind, raw, as_msgpack)
    assert _body_answer(body, raw, as_msgpack) == expected
    assert _body_answer(body, raw, as_msgpack) == expected  # its ids known now, or not


def test_an_id_refused_once_is_refused_again_after_good_ids() -> None:
    body = Body(HeartbeatIn)
    good = b'{"artifactId":"doc-1","sessionId":"tab-aaaa1"}'
    bad = b'{"artifactId":"doc/1","sessionId":"tab-aaaa1"}'
    for _ in range(2):
        assert body.parse("application/json", good).artifact_id == "doc-1"
        with pytest.raises(BadRequest) as refused:
            body.parse("application/json", bad)
        assert [error.field for error in refused.value.errors] == ["artifactId"]


def test_a_profiles_avatar_url_is_checked_and_never_kept_in_the_process() -> None:
    """Only ids are kept as known to match: an avatar URL is personal data a user may
    erase, so it is checked by the schema on every decode and held nowhere after."""
    body = Body(ProfileIn)
    url = "https://img.example/alice.png"
    assert body.parse("application/json", msgspec.json.encode({"name": "A", "avatarUrl": url}))
    with pytest.raises(BadRequest) as refused:
        body.parse("application/json", b'{"name":"A","avatarUrl":"ftp://x"}')
    assert [error.field for error in refused.value.errors] == ["avatarUrl"]
    kept = {value for checked in body._checked for value in checked.known}
    assert url not in kept
