"""The plain read commands behind "who has seen the latest version" (``stats/seen.py``):
each touches one key, so a batch over artifacts of many partitions goes out in one round
trip (one per node on a Cluster) without a script per partition. (An audience check is a
script: ``lua/stats/seen_check.lua``.)"""

from __future__ import annotations

from collections.abc import Sequence

from presence_svc.redis.keys import Keyspace
from presence_svc.redis.resp import Commands

__all__ = ["SeenReads"]


class SeenReads:
    """Builds the commands; ``RedisConnection.read_commands`` runs them."""

    def __init__(self, keys: Keyspace) -> None:
        self.keys = keys

    def latest(self, artifact_ids: Sequence[str]) -> Commands:
        """Per artifact, ``HMGET`` of its latest version and when it was set."""
        latest = self.keys.artifact_latest
        return Commands.of([("HMGET", latest(a), "v", "at") for a in artifact_ids])

    def counts(self, artifact_id: str, version_id: str) -> Commands:
        """The version's viewers (``HLEN``), those listed by time (``ZCARD``: hidden
        viewers are not), its ``readers`` count and its erasure tombstones (``erased``: in
        the hash, not in the zset, and no hidden viewers)."""
        k = self.keys
        return Commands.of(
            [
                ("HLEN", k.version_viewers(artifact_id, version_id)),
                ("ZCARD", k.version_viewers_by_time(artifact_id, version_id)),
                ("HGET", k.version_stats(artifact_id, version_id), "readers"),
                ("HGET", k.version_stats(artifact_id, version_id), "erased"),
            ]
        )

    def viewed(self, versions: Sequence[tuple[str, str]], user_id: str) -> Commands:
        """Per (artifact, version), ``HEXISTS`` of the user among its viewers."""
        viewers = self.keys.version_viewers
        return Commands.of([("HEXISTS", viewers(a, v), user_id) for a, v in versions])
