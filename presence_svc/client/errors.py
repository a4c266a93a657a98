"""What the client raises: one class, with the status and the problem+json body."""

from __future__ import annotations

from typing import Any

__all__ = ["PresenceClientError"]


class PresenceClientError(Exception):
    """A call failed for good. ``status`` is 0 for a network error; ``transient`` is true
    for 429, 5xx and network errors (retried until the attempts ran out)."""

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
        return self.status == 0 or self.status == 429 or self.status >= 500
