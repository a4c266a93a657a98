"""Every way Redis says "not now", named by its error code, in one place.

Redis refuses a command it could run later: out of memory (``OOM``), a replica
(``READONLY``), persistence failing (``MISCONF``), too few replicas in sync for
``min-replicas-to-write`` (``NOREPLICAS``), loading its data (``LOADING``), a long
script running (``BUSY``), a replica cut off from its primary (``MASTERDOWN``), a Cluster
down or resharding (``CLUSTERDOWN``, ``TRYAGAIN``). Those are no bugs: the HTTP edge
answers 503 with ``Retry-After`` and the cause, and ``/readyz`` names it. Such an error
reaches us in three shapes: a redis-py exception class with the code stripped
(``OutOfMemoryError``), a plain ``ResponseError`` starting with the code, or, from inside
a script on Redis 6, ``Error running script ... -OOM ...``. A Cluster's two come out of
redis-py's own retries changed too: ``CLUSTERDOWN`` as the slots "not covered" when it
re-reads the slot table of a cluster that is down, ``TRYAGAIN`` as its redirections' "TTL
exhausted" while a slot is moved.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from redis.exceptions import (
    BusyLoadingError,
    ClusterDownError,
    ClusterError,
    MasterDownError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisClusterException,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

__all__ = ["CAUSES", "Cause", "RedisRefused", "refusal", "unavailable_cause"]


@dataclass(frozen=True, slots=True)
class Cause:
    code: str
    """Redis's error code (``OOM``), or ``unreachable`` / ``timeout``."""
    what: str
    """What it means, for the 503's detail."""
    retry_after_s: int


CAUSES: Final[dict[str, Cause]] = {
    cause.code: cause
    for cause in (
        Cause("OOM", "Redis is out of memory (maxmemory reached)", 5),
        Cause("READONLY", "Redis is a read-only replica (a failover in progress?)", 2),
        Cause("MISCONF", "Redis cannot persist to disk and refuses writes", 10),
        Cause("NOREPLICAS", "Redis has too few replicas in sync and refuses writes", 2),
        Cause("LOADING", "Redis is loading its data set", 2),
        Cause("BUSY", "Redis is busy running a long script", 1),
        Cause("MASTERDOWN", "the Redis replica lost its primary", 2),
        Cause("CLUSTERDOWN", "the Redis Cluster is down", 2),
        Cause("TRYAGAIN", "a Redis Cluster slot is being moved", 1),
        Cause("unreachable", "Redis is unreachable", 1),
        Cause("timeout", "Redis did not answer in time", 1),
    )
}

_BY_CLASS: Final = (  # most specific first: MasterDownError is a ClusterDownError
    (MasterDownError, "MASTERDOWN"),
    (ClusterDownError, "CLUSTERDOWN"),
    (TryAgainError, "TRYAGAIN"),
    (OutOfMemoryError, "OOM"),
    (ReadOnlyError, "READONLY"),
    (BusyLoadingError, "LOADING"),
)
_REFUSING = tuple(code for code in CAUSES if code.isupper())
_IN_SCRIPT = re.compile(rf"\s-({'|'.join(_REFUSING)})\s")


class RedisRefused(ResponseError):
    """Redis refused a command it could run later; ``cause`` says why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.cause = CAUSES[code]


def refusal(exc: BaseException) -> RedisRefused | None:
    """``exc`` as a ``RedisRefused`` when it is one of Redis's "not now" answers."""
    if isinstance(exc, RedisRefused):
        return exc
    if not isinstance(exc, ResponseError | BusyLoadingError):
        # (ClusterDownError and MasterDownError are ResponseErrors: not these)
        if isinstance(exc, RedisClusterException | ClusterError):
            return _cluster_refusal(exc)
        return None
    message = str(exc)
    for kind, code in _BY_CLASS:
        if isinstance(exc, kind):
            return RedisRefused(code, f"{code} {message}")
    code = message.split(" ", 1)[0]
    if code in _REFUSING:
        return RedisRefused(code, message)
    found = _IN_SCRIPT.search(message)  # Redis 6 wraps a script's refused call
    return RedisRefused(found.group(1), message) if found else None


def _cluster_refusal(exc: RedisClusterException | ClusterError) -> RedisRefused | None:
    """What redis-py's Cluster client raises once its retries are spent: the slot table
    with a slot no node serves (``RedisClusterException``: "All slots are not covered",
    ``SlotNotCoveredError``) is the cluster down; its redirections run out (``ClusterError``:
    "TTL exhausted", each answered ``TRYAGAIN``, ``ASK`` or ``MOVED``) while a slot moves."""
    message = str(exc)
    if isinstance(exc, RedisClusterException) and "not covered" in message:
        return RedisRefused("CLUSTERDOWN", f"CLUSTERDOWN {message}")
    if isinstance(exc, ClusterError) and "TTL exhausted" in message:
        return RedisRefused("TRYAGAIN", f"TRYAGAIN {message}")
    return None


def unavailable_cause(exc: BaseException) -> Cause | None:
    """Why Redis cannot serve now, for any exception a Redis call raised; None for what is
    no outage (a bug, a script error)."""
    refused = refusal(exc)
    if refused is not None:
        return refused.cause
    if isinstance(exc, RedisTimeoutError | TimeoutError):
        return CAUSES["timeout"]
    if isinstance(exc, RedisConnectionError | ConnectionError):
        return CAUSES["unreachable"]
    return None
