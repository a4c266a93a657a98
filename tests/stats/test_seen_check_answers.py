"""``seen/check`` sorts the audience in Redis (lua/stats/seen_check.lua) and sends the lists
as the script encoded them: the answers must be, byte for byte in both wire formats, what
the handler sent when it sorted the entries in Python (``reference`` below is that code),
for an audience of every kind: views without engaged time, readers and near-readers,
viewers who hid their history (by the privacy setting and as written by other scripts),
erased users, unknown ids and repeats."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import msgspec
import redis

from presence_svc.schemas import SeenCheckOut
from presence_svc.stats.seen import ViewerEntry
from tests.conftest import AppClient
from tests.stats.test_hidden_views import hide
from tests.stats.test_seen import KEYS, READ_AFTER_MS, put_latest, view, write_viewer

Auth = Callable[..., dict[str, str]]
_JSON = msgspec.json.Encoder()
_MSGPACK = msgspec.msgpack.Encoder()
JSON_TYPE = "application/json"


def reference(
    sync_redis: redis.Redis, artifact: str, version: str, user_ids: list[str]
) -> SeenCheckOut:
    """The answer as the handler worked it out before the script: one ``HMGET``, each entry
    decoded and sorted here."""
    ids = list(dict.fromkeys(user_ids))
    answer = sync_redis.hmget(KEYS.version_viewers(artifact, version), ids)
    seen: list[str] = []
    read: list[str] = []
    not_seen: list[str] = []
    hidden = 0
    for user_id, raw in zip(ids, answer, strict=True):
        if raw is None:
            not_seen.append(user_id)
            continue
        entry = ViewerEntry.decode(raw)
        if entry.hidden:
            hidden += 1
            continue
        seen.append(user_id)
        if entry.engaged_ms >= READ_AFTER_MS:
            read.append(user_id)
    return SeenCheckOut(
        version_id=version, seen=seen, read=read, not_seen=not_seen, hidden_viewers=hidden
    )


async def post_check(
    client: AppClient, headers: dict[str, str], artifact: str, body: dict[str, Any], fmt: str
) -> bytes:
    """The raw answer to a check sent and answered as JSON or msgpack."""
    if fmt == "msgpack":
        kind = "application/msgpack"
        headers = {**headers, "Content-Type": kind, "Accept": kind}
        data = _MSGPACK.encode(body)
    else:
        headers = {**headers, "Content-Type": "application/json"}
        data = _JSON.encode(body)
    path = f"/v1/artifacts/{artifact}/seen/check"
    response = await client.post(path, data=data, headers=headers)
    assert response.status == 200, await response.text()
    assert response.content_type == ("application/msgpack" if fmt == "msgpack" else JSON_TYPE)
    return await response.read()


def encoded(out: SeenCheckOut, fmt: str) -> bytes:
    return _MSGPACK.encode(out) if fmt == "msgpack" else _JSON.encode(out) + b"\n"


def write_raw(
    sync_redis: redis.Redis, artifact: str, version: str, user: str, entry: list[Any]
) -> None:
    """An entry of another shape the hash may hold (``ViewerEntry`` reads them all)."""
    sync_redis.hset(KEYS.version_viewers(artifact, version), user, msgspec.msgpack.encode(entry))


async def test_a_mixed_audience_gets_the_answer_it_got_before_in_both_formats(
    client: AppClient, auth: Auth, sync_redis: redis.Redis
) -> None:
    admin, board = auth("root", scope="admin"), auth("d", scope="dashboard")
    now = int(time.time() * 1000)
    for user in ("plain-1", "plain-2", "hider", "erased", "erased-2"):
        await view(client, auth, user, "doc-1", "v3")  # record_view.lua: three elements
    await hide(client, auth, "hider")  # hide_viewer.lua marks the entry (1)
    for user in ("erased", "erased-2"):
        response = await client.delete(f"/v1/users/{user}", headers=admin)
        assert response.status == 204, await response.text()
    write_viewer(sync_redis, "doc-1", "v3", "reader", at_ms=now, engaged_ms=45_000)
    write_viewer(sync_redis, "doc-1", "v3", "at-threshold", at_ms=now, engaged_ms=READ_AFTER_MS)
    write_viewer(sync_redis, "doc-1", "v3", "near", at_ms=now, engaged_ms=READ_AFTER_MS - 1)
    write_viewer(sync_redis, "doc-1", "v3", "secret", at_ms=now, engaged_ms=90_000, hidden=True)
    write_raw(
        sync_redis, "doc-1", "v3", "four", [2, now, now, 31_000]
    )  # engaged time, no hidden mark
    write_raw(
        sync_redis, "doc-1", "v3", "zero-mark", [1, now, now, 40_000, 0]
    )  # a falsy mark: shown
    write_raw(sync_redis, "doc-1", "v3", "no-engaged", [1, now, now, None, None])
    write_raw(sync_redis, "doc-1", "v3", "float", [1, now, now, 30_000.5])
    write_raw(sync_redis, "doc-1", "v3", "x" * 128, [1, now, now, 50_000])  # the longest id
    assert (await put_latest(client, admin, "doc-1", "v3"))[0] == 200

    audience = [
        "near",
        "plain-1",
        "nobody",
        "reader",
        "hider",
        "erased",
        "plain-1",  # repeats count once, where they first come
        "four",
        "secret",
        "zero-mark",
        "nobody",
        "x" * 128,
        "at-threshold",
        "no-engaged",
        "float",
        "erased-2",
        "secret",
        "plain-2",
        "a.b_c:d@e-f",
    ]
    expected = reference(sync_redis, "doc-1", "v3", audience)
    # what a dashboard would see, so the reference itself is checked too
    assert expected.seen == [
        "near",
        "plain-1",
        "reader",
        "four",
        "zero-mark",
        "x" * 128,
        "at-threshold",
        "no-engaged",
        "float",
        "plain-2",
    ]
    assert expected.read == ["reader", "four", "zero-mark", "x" * 128, "at-threshold", "float"]
    assert expected.not_seen == ["nobody", "erased", "erased-2", "a.b_c:d@e-f"]
    assert expected.hidden_viewers == 2
    for fmt in ("json", "msgpack"):
        for body in ({"userIds": audience}, {"userIds": audience, "versionId": "v3"}):
            assert await post_check(client, board, "doc-1", body, fmt) == encoded(expected, fmt)


async def test_a_thousand_ids_and_empty_lists_match_in_both_formats(
    client: AppClient, auth: Auth, sync_redis: redis.Redis
) -> None:
    """Long lists (msgpack's 16-bit array lengths, ids of every string size) and lists
    with nobody in them."""
    board = auth("d", scope="dashboard")
    now = int(time.time() * 1000)
    audience = [f"u{i:03d}-" + "y" * (i % 128) for i in range(1000)]
    audience = [a[:128] for a in audience]
    for i, user in enumerate(audience[:700]):
        if i % 3:
            write_viewer(sync_redis, "doc-2", "v1", user, at_ms=now, engaged_ms=17 * i * i)
        else:
            write_raw(sync_redis, "doc-2", "v1", user, [1, now, now])
    cases = [
        audience,
        audience[:700],  # nobody unseen
        audience[700:],  # nobody seen, nobody read
        audience[3:700:3],  # seen, nobody read
    ]
    for user_ids in cases:
        expected = reference(sync_redis, "doc-2", "v1", user_ids)
        for fmt in ("json", "msgpack"):
            body = {"userIds": user_ids, "versionId": "v1"}
            assert await post_check(client, board, "doc-2", body, fmt) == encoded(expected, fmt)
    assert reference(sync_redis, "doc-2", "v1", audience[700:]).seen == []
    assert reference(sync_redis, "doc-2", "v1", audience[:700]).not_seen == []


async def test_ids_that_would_need_escaping_are_refused_naming_the_id(
    client: AppClient, auth: Auth
) -> None:
    """The script writes ids into the JSON answer as they are: an id with a character that
    JSON escapes, or any character outside the id alphabet, never gets that far."""
    board = auth("d", scope="dashboard")
    encoders = {"application/msgpack": _MSGPACK.encode, JSON_TYPE: _JSON.encode}
    for bad in ('b"c', "b\\c", "é", "b\x00", "b,c", " b", "b\u2028"):
        for kind, encode in encoders.items():
            response = await client.post(
                "/v1/artifacts/doc-1/seen/check",
                data=encode({"userIds": ["a", bad, "c"], "versionId": "v1"}),
                headers={**board, "Content-Type": kind},
            )
            assert response.status == 400, (bad, await response.text())
            problem = await response.json()
            assert [e["field"] for e in problem["errors"]] == ["userIds.1"], bad
