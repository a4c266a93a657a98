"""The listening sockets of ``serve``, bound before anything else starts: a busy port is
then one error, before the embedded Redis, the worker or a log line saying "serving"."""

from __future__ import annotations

import errno
import socket

__all__ = ["BACKLOG", "BindError", "adopt", "bind", "parse_addr", "show_addr"]

BACKLOG = 128
"""aiohttp's own sites' (``serve`` passes ``PRESENCE_LISTEN_BACKLOG``)."""


class BindError(Exception):
    """The address cannot be listened on; the message names it and says why."""


def parse_addr(raw: str) -> tuple[str, int]:
    """``host:port`` (``[::1]:9090`` for IPv6) as ``(host, port)``; ValueError if not."""
    host, sep, port = raw.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError("expected host:port, like 127.0.0.1:9090")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError("write an IPv6 host in brackets, like [::1]:9090")
    if not 0 < int(port) < 65536:
        raise ValueError("the port must be within 1..65535")
    return host, int(port)


def show_addr(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def bind(
    host: str, port: int, *, reuse_port: bool = False, backlog: int = BACKLOG
) -> list[socket.socket]:
    """Listening sockets on every address ``host`` resolves to (as asyncio's
    ``create_server`` would make them). With ``reuse_port`` they can share the port with
    later ``SO_REUSEPORT`` sockets: check first with ``bind(...)`` without it, or the port
    of another ``reuse_port`` server of the same user is shared instead of refused.
    ``backlog``: connections the kernel completes and holds until the process accepts them
    (capped by ``net.core.somaxconn``); past it a connection's handshake is dropped and the
    client retries it after a second, then three, seven...: a stall, not a refusal."""
    where = show_addr(host, port)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise BindError(f"cannot listen on {where}: {exc.strerror}") from exc
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, address in dict.fromkeys((i[0], i[1], i[2], i[4]) for i in infos):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(backlog)
            sock.setblocking(False)
    except OSError as exc:
        for sock in sockets:
            sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise BindError(
                f"{where} is already in use (another presence-svc serve?): stop it, "
                "or choose another port"
            ) from exc
        raise BindError(f"cannot listen on {where}: {exc.strerror or exc}") from exc
    return sockets


def adopt(fds: list[int]) -> list[socket.socket]:
    """Sockets a parent process bound and passed down (``serve --processes``)."""
    sockets = [socket.socket(fileno=fd) for fd in fds]
    for sock in sockets:
        sock.setblocking(False)
    return sockets
