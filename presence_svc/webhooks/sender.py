"""One HTTP delivery of one event: signed, no redirects followed, at most 64 KiB of the
answer read, bounded by the timeout, refused before connecting where ``ssrf`` says so."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import aiohttp
import yarl

from presence_svc.webhooks.schedule import parse_retry_after
from presence_svc.webhooks.signing import signature_header
from presence_svc.webhooks.ssrf import GuardedResolver, RefusedAddress, check_url

__all__ = ["MAX_ANSWER_BYTES", "Outcome", "Sender"]

MAX_ANSWER_BYTES = 64 * 1024
USER_AGENT = "presence-svc-webhooks/1"

Kind = Literal["delivered", "status", "timeout", "connection", "refused"]


@dataclass(frozen=True, slots=True)
class Outcome:
    kind: Kind
    status: int | None = None
    error: str | None = None
    retry_after_s: float | None = None

    @property
    def ok(self) -> bool:
        return self.kind == "delivered"


def _refusal(exc: BaseException) -> RefusedAddress | None:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, RefusedAddress):
            return seen
        seen = seen.__cause__ or getattr(seen, "os_error", None)
    return None


class Sender:
    """One client session (the dispatcher gives each endpoint's lane its own): its
    connections kept alive, at most ``limit`` of them (0: no limit)."""

    def __init__(self, *, timeout_s: float, allow_private: bool, limit: int = 0) -> None:
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.allow_private = allow_private
        self.limit = limit
        self._session: aiohttp.ClientSession | None = None
        self._urls: dict[str, yarl.URL] = {}
        """URLs parsed (and their IP literal checked) once, not per delivery."""

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            resolver = None if self.allow_private else GuardedResolver()
            connector = aiohttp.TCPConnector(resolver=resolver, limit=self.limit)
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=self.timeout,
                auto_decompress=False,
                skip_auto_headers=("Accept", "Accept-Encoding"),
            )
        return self._session

    def _url(self, url: str) -> yarl.URL:
        parsed = self._urls.get(url)
        if parsed is None:
            if not self.allow_private:
                check_url(url)
            parsed = yarl.URL(url)
            if len(self._urls) > 64:
                self._urls.clear()
            self._urls[url] = parsed
        return parsed

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send(self, url: str, secrets: Sequence[str], event_id: str, body: bytes) -> Outcome:
        timestamp = int(time.time())
        headers = {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            "webhook-id": event_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signature_header(secrets, event_id, timestamp, body),
        }
        try:
            async with self._client().post(
                self._url(url), data=body, headers=headers, allow_redirects=False
            ) as answer:
                head = await answer.content.read(MAX_ANSWER_BYTES)
                if 200 <= answer.status < 300:
                    return Outcome("delivered", answer.status)
                retry_after = None
                if answer.status in (429, 503):
                    retry_after = parse_retry_after(answer.headers.get("Retry-After"), time.time())
                text = head[:200].decode("utf-8", "replace")
                return Outcome(
                    "status", answer.status, f"HTTP {answer.status}: {text}", retry_after
                )
        except TimeoutError:
            return Outcome("timeout", error=f"no answer within {self.timeout.total} s")
        except (aiohttp.ClientError, OSError, RefusedAddress, ValueError) as exc:
            refused = _refusal(exc)
            if refused is not None:
                return Outcome("refused", error=f"refused: {refused}")
            return Outcome("connection", error=f"{type(exc).__name__}: {exc}"[:300])
        except asyncio.CancelledError:
            raise
