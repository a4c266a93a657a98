"""Verifying a webhook delivery (Standard Webhooks): for the app's receiving endpoint.

```python
event = verify_webhook(await request.read(), request.headers, os.environ["WHSEC"])
```
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["WebhookVerificationError", "verify_webhook"]

TOLERANCE_S = 300


class WebhookVerificationError(Exception):
    """The delivery is not authentic (or too old): answer it with 400 or 401."""


def _header(headers: Mapping[str, str], name: str) -> str:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    raise WebhookVerificationError(f"missing header {name}")


def _key(secret: str) -> bytes:
    try:
        return base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise WebhookVerificationError("the secret is not whsec_<base64>") from exc


def verify_webhook(
    body: bytes,
    headers: Mapping[str, str],
    secret: str | Sequence[str],
    *,
    tolerance_s: int = TOLERANCE_S,
    now: float | None = None,
) -> dict[str, Any]:
    """The event (``{id, type, timestamp, data}``) if one of ``webhook-signature``'s
    signatures matches one of the secrets (several during a rotation) and
    ``webhook-timestamp`` is within ``tolerance_s`` of now; else
    ``WebhookVerificationError``. ``body`` is the raw bytes, before any JSON parsing."""
    event_id = _header(headers, "webhook-id")
    stamp = _header(headers, "webhook-timestamp")
    signatures = _header(headers, "webhook-signature").split()
    try:
        sent = int(stamp)
    except ValueError as exc:
        raise WebhookVerificationError("webhook-timestamp is not a number") from exc
    if abs((time.time() if now is None else now) - sent) > tolerance_s:
        raise WebhookVerificationError("webhook-timestamp is too far from now")
    signed = f"{event_id}.{stamp}.".encode() + body
    given = [s[3:] for s in signatures if s.startswith("v1,")]
    for one in [secret] if isinstance(secret, str) else secret:
        expected = base64.b64encode(hmac.new(_key(one), signed, hashlib.sha256).digest())
        if any(hmac.compare_digest(expected, g.encode()) for g in given):
            event: dict[str, Any] = json.loads(body)
            return event
    raise WebhookVerificationError("no signature matches")
