"""record_view's call packs the keys it names, whatever keyspace a caller uses: its keys
of a version are built and packed once per process and reused."""

from __future__ import annotations

from presence_svc.redis.keys import Keyspace
from presence_svc.redis.resp import pack_evalsha
from presence_svc.redis.scripts import RecordViewScript


def _expected(keys: Keyspace, artifact: str, version: str, user: str) -> tuple[str, ...]:
    tag = keys.tag_of(artifact)
    return (
        keys.view_debounce(artifact, version, user),
        keys.artifact_stats(artifact),
        keys.artifact_viewers(artifact),
        keys.artifact_versions(artifact),
        keys.version_stats(artifact, version),
        keys.version_viewers(artifact, version),
        keys.version_viewers_by_time(artifact, version),
        keys.views_stream(tag),
        keys.outbox(tag),
        keys.artifact_latest(artifact),
    )


def test_each_view_call_names_and_packs_its_own_keys() -> None:
    script = RecordViewScript()
    wide, narrow = Keyspace(64), Keyspace(8)
    calls = [
        (wide, "doc-1", "v1", "u1", "s1", True),
        (wide, "doc-1", "v1", "u2", None, False),  # the version's keys reused
        (wide, "doc-1", "v2", "u1", "s1", False),
        (narrow, "doc-1", "v1", "u1", "s1", False),  # another partition count: its own tags
    ]
    for keys, artifact, version, user, session, hidden in calls:
        call = script.call(keys, artifact, version, user, session, "id-1", 5000, hidden)
        assert tuple(call.keys) == _expected(keys, artifact, version, user)
        args = (artifact, version, user, session or "", "id-1", 5000, "1" if hidden else "")
        assert call.args == args
        assert call.resp() == pack_evalsha(script.sha, call.keys, args)
