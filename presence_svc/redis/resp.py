"""A lean pipeline of commands on one pooled redis-py connection: the hot path's ``EVALSHA``
calls, and the ledger drain's stream reads and acknowledgements.

redis-py's ``Pipeline`` encodes every argument through generic per-command machinery and
wraps the round trip in layers meant for any command; on the hot path that cost more CPU
than Redis spends running the scripts. Here the calls are packed into RESP in one pass and
the answers read in order, on a connection borrowed from the client's own pool, so its
timeouts, reconnection and hiredis parser still apply.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Sequence
from typing import Any, TypeAlias

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from presence_svc.redis.refusal import refusal

__all__ = [
    "Commands",
    "Packed",
    "bulk",
    "evalsha_head",
    "pack_bulks",
    "pack_command",
    "pack_commands",
    "pack_evalsha",
    "run_pipeline",
]

Packed: TypeAlias = "tuple[bytes, int]"
"""RESP bytes of some commands, and how many commands they are."""

_EVALSHA = b"$7\r\nEVALSHA\r\n"


def _data(value: str | bytes | int | float) -> bytes:
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, bytes):
        return value
    return repr(value).encode()


def bulk(value: str | bytes | int | float) -> bytes:
    """One RESP bulk string."""
    data = _data(value)
    return b"$%d\r\n%b\r\n" % (len(data), data)


def pack_bulks(values: Sequence[str | bytes | int | float]) -> bytes:
    """Bulk strings, one after another (a command's arguments), in one formatting pass."""
    parts: list[int | bytes] = []
    add = parts.append
    for value in values:
        kind = value.__class__
        if kind is str:
            data = value.encode()  # type: ignore[union-attr]
        elif kind is bytes:
            data = value
        else:
            data = _data(value)
        add(len(data))
        add(data)
    return (_BULK * len(values)) % tuple(parts)


_BULK = b"$%d\r\n%b\r\n"


def evalsha_head(sha: str, keys: int, args: int) -> bytes:
    """``EVALSHA sha numkeys`` of a call with that many keys and arguments, which then
    follow as bulk strings: a caller that knows its call's shape packs this once."""
    return b"*%d\r\n%b%b%b" % (3 + keys + args, _EVALSHA, bulk(sha), bulk(keys))


def pack_evalsha(sha: str, keys: Sequence[str], args: Sequence[str | bytes | int | float]) -> bytes:
    """``EVALSHA sha numkeys keys... args...`` in RESP."""
    return evalsha_head(sha, len(keys), len(args)) + pack_bulks((*keys, *args))


def pack_command(command: Sequence[str | bytes | int | float]) -> bytes:
    """One command, ``(name, *args)``, in RESP."""
    return b"*%d\r\n%b" % (len(command), pack_bulks(command))


def pack_commands(commands: Sequence[Sequence[str | bytes | int | float]]) -> Packed:
    """Any commands, each ``(name, *args)``; their answers come back as Redis sent them,
    without redis-py's per-command reply parsing."""
    return b"".join(map(pack_command, commands)), len(commands)


Command: TypeAlias = "tuple[str | bytes | int | float, ...]"


class Commands:
    """Plain commands for ``RedisConnection.read_commands``: packed in RESP (what a single
    server's connection writes) and, made only when asked, as ``(name, key, *args)``
    tuples (what a Cluster routes by key)."""

    __slots__ = ("_make", "count", "packed")

    def __init__(self, packed: bytes, count: int, make: Callable[[], list[Command]]) -> None:
        self.packed = packed
        self.count = count
        self._make = make

    @classmethod
    def of(cls, commands: Sequence[Command]) -> Commands:
        packed, count = pack_commands(commands)
        return cls(packed, count, lambda: list(commands))

    def tuples(self) -> list[Command]:
        return self._make()


async def run_pipeline(redis: Redis, packed: Packed) -> list[Any]:
    """Send the commands, read every answer; a Redis error answer (``NOSCRIPT``, a script
    error) is returned in its place. A broken connection is dropped and the whole batch
    sent once more on a fresh one, as redis-py's own retry would.

    The answers are read under one deadline (the connection's socket timeout) for the
    whole batch instead of redis-py's timer per answer, which cost more than reading them.
    """
    pool = redis.connection_pool
    for attempt in (1, 2):
        connection = await pool.get_connection()  # type: ignore[no-untyped-call]
        try:
            await connection.send_packed_command(packed[0], check_health=False)
            results: list[Any] = []
            async with asyncio.timeout(connection.socket_timeout):
                for _ in range(packed[1]):
                    try:
                        results.append(await connection.read_response(timeout=math.inf))
                    except ResponseError as exc:
                        results.append(refusal(exc) or exc)
            return results
        except (RedisConnectionError, RedisTimeoutError, OSError):
            await connection.disconnect()
            if attempt == 2:
                raise
        except BaseException:
            await connection.disconnect()  # a half-read answer would poison the next user
            raise
        finally:
            await pool.release(connection)
    raise AssertionError("unreachable")
