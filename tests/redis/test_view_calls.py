"""record_view's call packs the keys it names, whatever keyspace a caller uses: its keys
of a version are built and packed once per process and reused."""

from __future__ import annotations

from presence_svc.redis.keys import Keyspace
from presence_svc.redis.resp import pack_evalsha
from presence_svc.redis.scripts import NoteViewScript, RecordViewScript, ViewScript


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


def test_each_note_call_names_and_packs_its_own_keys() -> None:
    """note_view's keys and fixed arguments are packed once per user and reused; each call
    still packs as the generic packing would, for every user, keyspace and keep rule."""
    script = NoteViewScript()
    wide, narrow = Keyspace(64), Keyspace(8)
    calls = [
        (wide, "u1", "doc-1", "v1", 200, 1000),
        (wide, "u1", "doc-2", "v7", 200, 1000),  # the user's keys reused
        (wide, "u2", "doc-1", "v1", 200, 1000),
        (wide, "u1", "doc-1", "v1", 50, 9000),  # other keep rules: packed afresh
        (narrow, "u1", "doc-1", "v1", 200, 1000),  # another partition count: its own tags
        (wide, "üser", "dœc", "vé", 200, 1000),  # lengths in bytes, not characters
    ]
    for keys, user, artifact, version, kept, ttl in calls:
        call = script.call(keys, user, artifact, version, kept, ttl)
        expected = (keys.user_views_index(user), keys.user_recent(user))
        assert tuple(call.keys) == (*expected, keys.user_recent_versions(user))
        assert call.args == (artifact, version, kept, ttl)
        assert call.resp() == pack_evalsha(script.sha, call.keys, call.args)


def test_view_calls_pack_ids_by_their_bytes() -> None:
    script = RecordViewScript()
    keys = Keyspace(64)
    call = script.call(keys, "dœc", "vé", "üser", "séssion", "id-2", 1500, False)
    assert call.resp() == pack_evalsha(script.sha, call.keys, call.args)


def test_each_one_call_view_names_and_packs_record_views_keys_then_note_views() -> None:
    """view.lua's call (a single server's) is record_view's keys and arguments, then
    note_view's keys and keep rules, packed from both scripts' caches as the generic
    packing would pack them."""
    record, note = RecordViewScript(), NoteViewScript()
    script = ViewScript(record, note)
    wide, narrow = Keyspace(64), Keyspace(8)
    calls = [
        (wide, "doc-1", "v1", "u1", "s1", True, 200),
        (wide, "doc-1", "v1", "u2", None, False, 200),  # the version's keys reused
        (wide, "doc-1", "v1", "u1", "s1", False, 50),  # another keep rule
        (narrow, "doc-1", "v1", "u1", "s1", False, 200),  # another partition count
        (wide, "dœc", "vé", "üser", "séssion", False, 200),  # lengths in bytes
    ]
    for keys, artifact, version, user, session, hidden, kept in calls:
        call = script.call(keys, artifact, version, user, session, "id-1", 5000, hidden, kept, 9)
        user_keys = (keys.user_views_index(user), keys.user_recent(user))
        user_keys += (keys.user_recent_versions(user),)
        assert tuple(call.keys) == _expected(keys, artifact, version, user) + user_keys
        args = (artifact, version, user, session or "", "id-1", 5000, "1" if hidden else "")
        assert call.args == (*args, kept, 9)
        assert call.resp() == pack_evalsha(script.sha, call.keys, call.args)
        # the separate calls, from the same caches, still pack their own
        alone = record.call(keys, artifact, version, user, session, "id-1", 5000, hidden)
        assert alone.resp() == pack_evalsha(record.sha, alone.keys, args)
        noted = note.call(keys, user, artifact, version, kept, 9)
        assert noted.resp() == pack_evalsha(note.sha, user_keys, (artifact, version, kept, 9))
