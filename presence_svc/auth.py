"""Bearer tokens: HS256 with the service's secret, and RS256/ES256/EdDSA (and kin) from an
identity provider, verified with its public keys (``jwks.KeyFile``).

The header's ``alg`` picks the way: HS256 is checked against the shared secret only, any
other algorithm against the public key named by ``kid``, and only with the algorithm that
key is pinned to. So a token "signed" with HS256 and a public key as its secret (the
classic algorithm confusion) is refused, as are ``alg: none`` and unknown algorithms.
A client acts only as its token's user claim; any user id in a request body is ignored.
"""

from __future__ import annotations

import os
import secrets
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
from aiohttp import web

from presence_svc.errors import Unauthorized
from presence_svc.jwks import ASYMMETRIC_ALGORITHMS, KeyFile, PublicKey
from presence_svc.principal import ClaimRules, Principal, Scope, principal_from_claims
from presence_svc.settings import Settings

__all__ = [
    "SECRET_FILE",
    "Principal",
    "Scope",
    "TokenCodec",
    "TokenRules",
    "load_or_create_secret",
    "read_secret",
    "token_codec",
]

SECRET_FILE = "jwt_secret"
"""The generated signing secret's file in the data dir (mode 0600)."""

_HS256 = "HS256"


@dataclass(frozen=True, slots=True)
class TokenRules:
    """What a token must say besides its signature: ``aud`` and ``iss`` when set, the clock
    skew allowed on ``exp``/``nbf``/``iat``, and where the user, scope and artifacts are."""

    audience: tuple[str, ...] = ()
    issuer: str | None = None
    leeway_s: float = 30.0
    claims: ClaimRules = field(default_factory=ClaimRules)


_CACHE_SIZE = 65_536
"""Verified tokens kept (``PRESENCE_TOKEN_CACHE_SIZE``): one per active tab, ~0.5 KB each
(~32 MB full). At the default 15 s heartbeat that is ~4 400 heartbeats/s of distinct tabs,
about what one process serves; a smaller cache under more tabs verifies every token."""


def _put(claims: dict[str, object], path: str, value: object) -> None:
    """Set a claim by its (possibly dotted) name, as ``principal.claim`` reads it."""
    *parents, last = path.split(".")
    node = claims
    for part in parents:
        child = node.setdefault(part, {})
        assert isinstance(child, dict)
        node = child
    node[last] = value


def token_codec(settings: Settings, secret: str) -> TokenCodec:
    """The codec ``settings`` describe: the HS256 ``secret``, the public keys, the rules."""
    rules = TokenRules(
        audience=settings.jwt_audience,
        issuer=settings.jwt_issuer,
        leeway_s=settings.jwt_leeway_s,
        claims=ClaimRules(
            user=settings.jwt_user_claim,
            scope=settings.jwt_scope_claim,
            artifacts=settings.jwt_artifacts_claim,
        ),
    )
    keys = KeyFile(settings.jwt_public_keys) if settings.jwt_public_keys else None
    return TokenCodec(secret, settings.token_cache_size, public_keys=keys, rules=rules)


class TokenCodec:
    """Issues HS256 tokens and verifies HS256 and public-key tokens.

    A tab sends the same token with every heartbeat, and verifying it (base64, JSON,
    signature, claims) costs more than the rest of the request. So verified tokens are
    kept in a bounded LRU keyed by the whole token string (signature included: a changed
    byte is a different key, verified afresh), each until its ``exp`` (plus the leeway),
    and all of them dropped when the public keys are reloaded (a removed key's tokens
    must stop working).
    """

    def __init__(
        self,
        secret: str,
        cache_size: int = _CACHE_SIZE,
        *,
        public_keys: KeyFile | None = None,
        rules: TokenRules | None = None,
    ) -> None:
        self._secret = secret
        self._cache_size = cache_size
        self._keys = public_keys
        self._rules = rules or TokenRules()
        self._generation = 0
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
        """An HS256 token with the configured claim names, ``aud`` and ``iss``."""
        issued = int(time.time() if now is None else now)
        names = self._rules.claims
        claims: dict[str, object] = {"iat": issued, "exp": issued + ttl_s}
        _put(claims, names.user, user_id)
        _put(claims, names.scope, str(scope))
        if artifacts is not None:
            _put(claims, names.artifacts, list(artifacts))
        if self._rules.audience:
            claims["aud"] = self._rules.audience[0]
        if self._rules.issuer is not None:
            claims["iss"] = self._rules.issuer
        return jwt.encode(claims, self._secret, algorithm=_HS256)

    def verify(self, token: str) -> Principal:
        if self._keys is not None:
            self._keys.refresh()
            if self._keys.generation != self._generation:
                self._generation = self._keys.generation
                self._verified.clear()
        cached = self._verified.get(token)
        if cached is not None:
            if time.time() < cached[0]:
                self._verified.move_to_end(token)
                return cached[1]
            del self._verified[token]
        claims = self._decode(token)
        from_idp = self._keys is not None and jwt.get_unverified_header(token)["alg"] != _HS256
        principal = principal_from_claims(claims, self._rules.claims, from_idp=from_idp)
        expires = claims["exp"]
        if isinstance(expires, int | float):
            self._verified[token] = (float(expires) + self._rules.leeway_s, principal)
            if len(self._verified) > self._cache_size:
                self._verified.popitem(last=False)
        return principal

    def _key_for(self, header: dict[str, Any]) -> tuple[Any, str]:
        """The key and the one algorithm a token with ``header`` may be verified with."""
        algorithm = header.get("alg")
        if algorithm == _HS256:
            return self._secret, _HS256
        # Any JSON may be there (a list is unhashable): only a known name goes further.
        if not isinstance(algorithm, str) or algorithm not in ASYMMETRIC_ALGORITHMS:
            raise Unauthorized(f"the token's alg {algorithm!r} is not accepted")
        if self._keys is None:
            raise Unauthorized(
                f"the token's alg {algorithm} needs public keys (PRESENCE_JWT_PUBLIC_KEYS); "
                "this service has none"
            )
        key = self._public_key(header.get("kid"))
        if key.algorithm != algorithm:
            raise Unauthorized(
                f"the token's alg {algorithm} does not match key {key.kid!r}, "
                f"which signs {key.algorithm}"
            )
        return key.key, key.algorithm

    def _public_key(self, kid: object) -> PublicKey:
        assert self._keys is not None
        keys = self._keys.keys
        if kid is None:
            if len(keys) == 1:
                return next(iter(keys.values()))
            raise Unauthorized(f"the token has no kid, and {len(keys)} public keys could sign it")
        if not isinstance(kid, str) or kid not in keys:
            raise Unauthorized(f"no public key has the token's kid {kid!r}")
        return keys[kid]

    def _decode(self, token: str) -> dict[str, object]:
        rules = self._rules
        try:
            key, algorithm = self._key_for(jwt.get_unverified_header(token))
            claims: dict[str, object] = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=list(rules.audience) or None,
                issuer=rules.issuer,
                leeway=rules.leeway_s,
                options={"require": ["exp"], "verify_aud": bool(rules.audience)},
            )
        except jwt.ExpiredSignatureError as exc:
            raise Unauthorized("the token has expired") from exc
        except jwt.ImmatureSignatureError as exc:
            raise Unauthorized("the token is not valid yet (nbf or iat in the future)") from exc
        except jwt.InvalidAudienceError as exc:
            wanted = " or ".join(rules.audience)
            raise Unauthorized(f"the token's aud is not {wanted} ({exc})") from exc
        except jwt.InvalidIssuerError as exc:
            raise Unauthorized(f"the token's iss is not {rules.issuer}") from exc
        except jwt.InvalidSignatureError as exc:
            raise Unauthorized("the token's signature does not verify") from exc
        except jwt.MissingRequiredClaimError as exc:
            raise Unauthorized(f"the token has no {exc.claim} claim") from exc
        except jwt.InvalidTokenError as exc:
            raise Unauthorized(f"the token is not valid: {exc}") from exc
        return claims

    def from_request(self, request: web.Request, fallback: str | None = None) -> Principal:
        """The caller of ``request``: its ``Authorization: Bearer`` token, else ``fallback``
        (a token a client could not put in a header)."""
        return self.from_header(request.headers.get("Authorization"), fallback)

    def from_header(self, header: str | None, fallback: str | None = None) -> Principal:
        """The caller an ``Authorization`` header's value names (else ``fallback``)."""
        if header is None:
            if fallback:
                return self.verify(fallback)
            raise Unauthorized("send a bearer token in the Authorization header")
        kind, _, token = header.partition(" ")
        if kind.lower() != "bearer" or not token.strip():
            raise Unauthorized("the Authorization header must be 'Bearer <token>'")
        return self.verify(token.strip())


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
