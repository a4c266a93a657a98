"""A stored endpoint for store-level tests: enabled, one event type, no health yet."""

from __future__ import annotations

from presence_svc.webhooks.store import Endpoint


def plain_endpoint(endpoint_id: str = "wh_1") -> Endpoint:
    return Endpoint(
        endpoint_id,
        "https://h.example.com/",
        frozenset({"presence.join"}),
        None,
        "whsec_AA==",
        None,
        None,
        True,
        None,
        None,
        None,
        None,
        1,
        1,
    )
