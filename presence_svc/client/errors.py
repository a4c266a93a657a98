"""What the client raises: one class, with the status and the problem+json body."""

from __future__ import annotations

from typing import Any

__all__ = ["PresenceClientError"]


class PresenceClientError(Exception):
    """A call failed for good. ``status`` is 0 for a network error or a ``token_provider``
    failure; ``transient`` says what the client retries by itself: those, 408, 429 and 5xx
    (a one-off call until its attempts ran out or ``Retry-After`` is past
    ``max_retry_after_s``; a heartbeat task or an event stream for as long as it runs)."""

    def __init__(
        self,
        message: str,
        *,
        status: int,
        problem: dict[str, Any] | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.problem = problem or {}
        self.retry_after_s = retry_after_s

    @property
    def transient(self) -> bool:
        """408 too: the server gave up waiting for the request, which a retry sends again
        (every call retried is idempotent, or counted once by the service)."""
        return self.status in (0, 408, 429) or self.status >= 500
