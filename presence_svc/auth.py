"""Signed bearer tokens (HS256 JWT) and what each scope may do.

A client acts only as its token's ``sub`` and only on the artifacts its token names; any
user id in a request body is ignored. Only HS256 is accepted (``alg: none`` and every
other algorithm are refused by PyJWT's ``algorithms`` allow-list).
"""

from __future__ import annotations

import os
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import jwt
from aiohttp import web

from presence_svc.errors import Forbidden, Unauthorized
from presence_svc.schemas import ID_PATTERN

__all__ = [
    "SECRET_FILE",
    "Principal",
    "Scope",
    "TokenCodec",
    "load_or_create_secret",
    "read_secret",
]

SECRET_FILE = "jwt_secret"
"""The generated signing secret's file in the data dir (mode 0600)."""

_ID = re.compile(ID_PATTERN)
_ALGORITHM = "HS256"


class Scope(StrEnum):
    CLIENT = "client"
    DASHBOARD = "dashboard"
    ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling, as their verified token says."""

    user_id: str
    scope: Scope
    artifacts: frozenset[str] | None
    """Artifacts the token is good for; None means any."""

    def _artifact_allowed(self, artifact_id: str) -> bool:
        return self.artifacts is None or artifact_id in self.artifacts

    def require_write(self, artifact_id: str) -> None:
        """Heartbeat, leave, record a view: a client on its artifacts, or an admin."""
        if self.scope is Scope.DASHBOARD:
            raise Forbidden("a dashboard token cannot write")
        if not self._artifact_allowed(artifact_id):
            raise Forbidden(f"this token is not valid for artifact {artifact_id!r}")

    def require_presence_read(self, artifact_ids: Iterable[str]) -> None:
        """Online counts, presence lists, events: clients on their artifacts, dashboards."""
        if self.scope is not Scope.CLIENT:
            return
        denied = [a for a in artifact_ids if not self._artifact_allowed(a)]
        if denied:
            raise Forbidden(f"this token is not valid for artifact {denied[0]!r}")

    def require_dashboard(self) -> None:
        """Stats, viewers, ledger: every read, for dashboards and admins."""
        if self.scope is Scope.CLIENT:
            raise Forbidden("this needs a dashboard token")

    def require_user_read(self, user_id: str) -> None:
        """A user's own data, or any user's for dashboards and admins."""
        if self.scope is Scope.CLIENT and user_id != self.user_id:
            raise Forbidden("a client token can only read its own user's data")

    def require_admin(self) -> None:
        if self.scope is not Scope.ADMIN:
            raise Forbidden("this needs an admin token")


_CACHE_SIZE = 16_384
"""Verified tokens kept: one per active tab covers ~16k users per process (~8 MB)."""


class TokenCodec:
    """Issues and verifies tokens signed with one secret.

    A tab sends the same token with every heartbeat, and verifying it (base64, JSON, HMAC,
    claims) costs more than the rest of the request. So verified tokens are kept in a
    bounded LRU keyed by the whole token string (signature included: a changed byte is a
    different key, verified afresh), each until its ``exp``.
    """

    def __init__(self, secret: str, cache_size: int = _CACHE_SIZE) -> None:
        self._secret = secret
        self._cache_size = cache_size
        self._verified: OrderedDict[str, tuple[float, Principal]] = OrderedDict()

    def issue(
        self,
        user_id: str,
        *,
        scope: Scope = Scope.CLIENT,
        artifacts: Iterable[str] | None = None,
        ttl_s: int = 3600,
        now: float | None = None,
    ) -> str:
        issued = int(time.time() if now is None else now)
        claims: dict[str, object] = {
            "sub": user_id,
            "scope": str(scope),
            "iat": issued,
            "exp": issued + ttl_s,
        }
        if artifacts is not None:
            claims["artifacts"] = list(artifacts)
        return jwt.encode(claims, self._secret, algorithm=_ALGORITHM)

    def verify(self, token: str) -> Principal:
        cached = self._verified.get(token)
        if cached is not None:
            if time.time() < cached[0]:
                self._verified.move_to_end(token)
                return cached[1]
            del self._verified[token]
        claims = self._decode(token)
        principal = _principal(claims)
        expires = claims["exp"]
        if isinstance(expires, int | float):
            self._verified[token] = (float(expires), principal)
            if len(self._verified) > self._cache_size:
                self._verified.popitem(last=False)
        return principal

    def _decode(self, token: str) -> dict[str, object]:
        try:
            claims: dict[str, object] = jwt.decode(
                token,
                self._secret,
                algorithms=[_ALGORITHM],
                options={"require": ["exp", "sub"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise Unauthorized("the token has expired") from exc
        except jwt.InvalidTokenError as exc:
            raise Unauthorized(f"the token is not valid: {exc}") from exc
        return claims

    def from_request(self, request: web.Request, fallback: str | None = None) -> Principal:
        """The caller of ``request``: its ``Authorization: Bearer`` token, else ``fallback``
        (a token a client could not put in a header)."""
        header = request.headers.get("Authorization")
        if header is None:
            if fallback:
                return self.verify(fallback)
            raise Unauthorized("send a bearer token in the Authorization header")
        kind, _, token = header.partition(" ")
        if kind.lower() != "bearer" or not token.strip():
            raise Unauthorized("the Authorization header must be 'Bearer <token>'")
        return self.verify(token.strip())


def _principal(claims: dict[str, object]) -> Principal:
    user_id = claims.get("sub")
    if not isinstance(user_id, str) or not _ID.match(user_id):
        raise Unauthorized("the token's sub is not a valid user id")
    try:
        scope = Scope(str(claims.get("scope", Scope.CLIENT)))
    except ValueError as exc:
        raise Unauthorized("the token's scope is not client, dashboard or admin") from exc
    raw_artifacts = claims.get("artifacts")
    artifacts: frozenset[str] | None = None
    if raw_artifacts is not None:
        if not isinstance(raw_artifacts, list) or not all(
            isinstance(a, str) for a in raw_artifacts
        ):
            raise Unauthorized("the token's artifacts claim must be a list of ids")
        artifacts = frozenset(raw_artifacts)
    return Principal(user_id=user_id, scope=scope, artifacts=artifacts)


def read_secret(data_dir: Path) -> str | None:
    """The signing secret kept in the data dir, None if there is none yet."""
    try:
        return (data_dir / SECRET_FILE).read_text().strip() or None
    except FileNotFoundError:
        return None


def load_or_create_secret(data_dir: Path) -> str:
    """The signing secret kept in the data dir (mode 0600), created on first start.

    Created atomically (a private temp file linked into place), so processes starting
    together all end up with the one secret that won, never a half-written file.
    """
    path = data_dir / SECRET_FILE
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    data_dir.mkdir(parents=True, exist_ok=True)
    temp = data_dir / f".jwt_secret.{os.getpid()}.{secrets.token_hex(4)}"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_urlsafe(48) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    try:
        os.link(temp, path)
    except FileExistsError:
        pass  # another process won the race: use its secret
    finally:
        temp.unlink()
    return path.read_text().strip()
