"""Public keys of an identity provider, from a PEM or a JWKS file, each pinned to one
algorithm and found by ``kid``.

A JWKS key keeps its ``kid`` (its RFC 7638 thumbprint when it has none); a PEM key's kid
is its thumbprint. The file is re-read when it changes (checked at most once a second),
so a rotation is a rewrite of the file, and a removed key stops working within a second.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

__all__ = ["ASYMMETRIC_ALGORITHMS", "KeyFile", "PublicKey", "load_public_keys"]

log = logging.getLogger(__name__)

ASYMMETRIC_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
"""What a public key may be pinned to: never HS* (a public key is no secret) or none."""

_PEM_BLOCK = re.compile(r"-----BEGIN ([A-Z ]+)-----\s.*?-----END \1-----", re.DOTALL | re.MULTILINE)
_MIN_RSA_BITS = 2048
_CHECK_EVERY_S = 1.0


@dataclass(frozen=True, slots=True)
class PublicKey:
    kid: str
    algorithm: str
    """The one algorithm a token signed by this key may name."""
    key: Any
    """A ``cryptography`` public key."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _jwk_of(key: Any) -> dict[str, Any]:
    if isinstance(key, rsa.RSAPublicKey):
        return dict(RSAAlgorithm.to_jwk(key, as_dict=True))
    if isinstance(key, ec.EllipticCurvePublicKey):
        return dict(ECAlgorithm.to_jwk(key, as_dict=True))
    return dict(OKPAlgorithm.to_jwk(key, as_dict=True))


def thumbprint(key: Any) -> str:
    """The key's RFC 7638 JWK thumbprint (SHA-256, base64url): its kid when it has none."""
    jwk = _jwk_of(key)
    members = {"RSA": ("e", "kty", "n"), "EC": ("crv", "kty", "x", "y"), "OKP": ("crv", "kty", "x")}
    required = {name: jwk[name] for name in members[jwk["kty"]]}
    canonical = json.dumps(required, separators=(",", ":"), sort_keys=True).encode()
    return _b64(hashlib.sha256(canonical).digest())


def _algorithm_for(key: Any) -> str:
    """The algorithm a PEM key is pinned to, from its type."""
    if isinstance(key, rsa.RSAPublicKey):
        return "RS256"
    if isinstance(key, ec.EllipticCurvePublicKey):
        by_curve = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}
        if key.curve.name not in by_curve:
            raise ValueError(f"an EC key on curve {key.curve.name} (use P-256, P-384 or P-521)")
        return by_curve[key.curve.name]
    if isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        return "EdDSA"
    raise ValueError(f"a {type(key).__name__}, which signs no JWT algorithm accepted here")


def _checked(key: Any, algorithm: str, kid: str) -> PublicKey:
    if algorithm not in ASYMMETRIC_ALGORITHMS:
        raise ValueError(
            f"key {kid!r} is for {algorithm}; public keys sign {sorted(ASYMMETRIC_ALGORITHMS)}"
        )
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < _MIN_RSA_BITS:
        raise ValueError(f"key {kid!r} is a {key.key_size}-bit RSA key; at least 2048 bits")
    return PublicKey(kid=kid, algorithm=algorithm, key=key)


def _from_pem(text: str) -> list[PublicKey]:
    found = []
    for block in _PEM_BLOCK.finditer(text):
        kind, data = block[1], block[0].encode()
        if "PRIVATE" in kind:
            raise ValueError("it holds a private key: give the public keys only")
        if kind == "CERTIFICATE":
            key: Any = x509.load_pem_x509_certificate(data).public_key()
        elif kind in ("PUBLIC KEY", "RSA PUBLIC KEY"):
            key = load_pem_public_key(data)
        else:
            raise ValueError(f"a '{kind}' block; expected PUBLIC KEY or CERTIFICATE")
        algorithm = _algorithm_for(key)  # first: a key of no JWT algorithm has no JWK
        found.append(_checked(key, algorithm, thumbprint(key)))
    if not found:
        raise ValueError("no PEM block (-----BEGIN PUBLIC KEY-----) and not a JWKS document")
    return found


def _from_jwks(document: object) -> list[PublicKey]:
    if isinstance(document, dict) and "keys" not in document and "kty" in document:
        document = {"keys": [document]}  # a single JWK
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError('a JWKS document is {"keys": [...]}')
    found = []
    for index, jwk in enumerate(document["keys"]):
        if not isinstance(jwk, dict):
            raise ValueError(f"keys[{index}] is not an object")
        if jwk.get("use", "sig") != "sig":
            continue  # an encryption key: not for verifying signatures
        if jwk.get("kty") == "oct":
            raise ValueError(f"keys[{index}] is a symmetric (oct) key: give public keys only")
        if any(private in jwk for private in ("d", "p", "q")):
            raise ValueError(f"keys[{index}] is a private key: give public keys only")
        try:
            parsed = jwt.PyJWK(jwk)
        # PyJWK raises InvalidKeyError (no PyJWKError) for a malformed key, and
        # NotImplementedError for ``alg: none``: each is an unusable file, never a 500.
        except (jwt.PyJWTError, NotImplementedError) as exc:
            raise ValueError(f"keys[{index}]: {exc or type(exc).__name__}") from exc
        kid = jwk.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise ValueError(f"keys[{index}]: kid must be a string")
        key = parsed.key
        found.append(_checked(key, parsed.algorithm_name, kid or thumbprint(key)))
    return found


def load_public_keys(path: Path) -> dict[str, PublicKey]:
    """The signing keys of ``path`` (PEM or JWKS) by kid; ValueError says what is wrong."""
    text = path.read_text()
    keys = _from_jwks(json.loads(text)) if text.lstrip().startswith("{") else _from_pem(text)
    by_kid: dict[str, PublicKey] = {}
    for key in keys:
        if key.kid in by_kid:
            raise ValueError(f"two keys have kid {key.kid!r}")
        by_kid[key.kid] = key
    if not by_kid:
        raise ValueError("it has no signing key")
    return by_kid


def _stamp(path: Path) -> tuple[int, int, int]:
    st = os.stat(path)
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class KeyFile:
    """The keys of one file, re-read when its mtime, size or inode changes (looked at no
    more than once a second); a file that no longer parses keeps the last good keys."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp = _stamp(path)
        self.keys = load_public_keys(path)
        self.generation = 0
        """Counts reloads: a verified-token cache is dropped when it moves."""
        self._checked_at = time.monotonic()

    def refresh(self, *, now: float | None = None) -> None:
        """Re-read the file if it changed and a second has passed since the last look."""
        now = time.monotonic() if now is None else now
        if now - self._checked_at < _CHECK_EVERY_S:
            return
        self._checked_at = now
        try:
            stamp = _stamp(self.path)
            if stamp == self._stamp:
                return
            keys = load_public_keys(self.path)
        except (OSError, ValueError) as exc:
            log.error(
                "public keys not reloaded; keeping the previous ones",
                extra={"path": str(self.path), "error": str(exc)},
            )
            return
        self._stamp, self.keys = stamp, keys
        self.generation += 1
        log.info("public keys reloaded", extra={"path": str(self.path), "kids": sorted(keys)})
