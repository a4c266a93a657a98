"""What ``serve`` tells a person at a terminal once it listens: where, and how to get in."""

from __future__ import annotations

import sys
from pathlib import Path

from presence_svc.listen import show_addr
from presence_svc.settings import Settings

__all__ = ["announce", "banner"]

_ANY = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}
"""A wildcard bind is not an address to browse to: show the loopback instead."""


def _base(host: str, port: int) -> str:
    return f"http://{show_addr(_ANY.get(host, host), port)}"


def _command() -> str:
    """The command as it was typed (``.venv/bin/presence-svc``), if it was typed."""
    typed = sys.argv[0] if sys.argv else ""
    return typed if Path(typed).name == "presence-svc" else "presence-svc"


def _token_where(settings: Settings) -> str:
    """Where ``token`` must run to find the secret ``serve`` signs with."""
    if settings.jwt_secret is not None:
        return "with the same PRESENCE_JWT_SECRET"
    if settings.data_dir == Settings().data_dir:
        return "in this directory"
    return f"with PRESENCE_DATA_DIR={settings.data_dir}"


def banner(settings: Settings, processes: int = 1) -> str:
    base = _base(settings.host, settings.port)
    command = _command()
    several = f" ({processes} processes)" if processes > 1 else ""
    lines = [
        f"presence-svc is serving on {base}{several}; press Ctrl-C to stop",
        f"  a token    {command} token --user alice   ({_token_where(settings)})",
        f"  dashboard  {base}/dashboard#token=TOKEN",
        f"             TOKEN from: {command} token --user ops --scope dashboard",
        f"  the API    {base}/openapi.json, and docs/api.md",
    ]
    if settings.metrics_addr is not None:
        lines.append(f"  metrics    {_base(*settings.metrics_addr)}/metrics")
    return "\n".join(lines) + "\n"


def announce(settings: Settings, processes: int = 1) -> None:
    """The banner on stderr, when stderr is a terminal (a log shipper gets logs only)."""
    if sys.stderr.isatty():
        sys.stderr.write(banner(settings, processes))
        sys.stderr.flush()
