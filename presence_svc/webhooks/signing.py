"""Standard Webhooks signatures: ``v1,<base64 HMAC-SHA256(key, id.timestamp.body)>``,
several space-separated during a secret rotation; a secret is ``whsec_<base64 key>``."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Sequence
from functools import lru_cache

__all__ = ["SECRET_PREFIX", "new_secret", "sign", "signature_header"]

SECRET_PREFIX = "whsec_"


def new_secret() -> str:
    """A fresh signing secret: 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def _key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


@lru_cache(maxsize=256)
def _keyed(secret: str) -> hmac.HMAC:
    """The HMAC state after the key (copied per signature: the key is decoded and
    hashed once per secret, not once per delivery)."""
    return hmac.new(_key(secret), digestmod=hashlib.sha256)


def sign(secret: str, event_id: str, timestamp: int, body: bytes) -> str:
    mac = _keyed(secret).copy()
    mac.update(f"{event_id}.{timestamp}.".encode())
    mac.update(body)
    return "v1," + base64.b64encode(mac.digest()).decode()


def signature_header(secrets_: Sequence[str], event_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: one signature per secret in use."""
    return " ".join(sign(s, event_id, timestamp, body) for s in secrets_)
