"""The door to the durable database: connections and the schema, nothing of the tiers.

The ledger (``presence_svc.ledger``) and the users directory (``presence_svc.users``)
each keep their statements in their own backend module over a connection from here;
``presence_svc.database`` composes them for a configured URL.
"""

from __future__ import annotations

from presence_svc.db.sqlite import SqliteFile

__all__ = ["SqliteFile", "sqlite_path"]


def sqlite_path(url: str) -> str | None:
    """The file of a ``sqlite:///`` URL, None for any other scheme.

    As in SQLAlchemy, ``sqlite:///rel/path`` is relative and ``sqlite:////abs/path`` absolute.
    """
    prefix = "sqlite:///"
    if url.startswith(prefix) and len(url) > len(prefix):
        return url[len(prefix) :]
    return None
