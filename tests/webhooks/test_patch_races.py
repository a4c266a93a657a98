"""Admin changes to a webhook endpoint racing the worker's writes and each other, on both
databases, over real HTTP. Each race is made deterministic by holding the admin call's
write to the endpoint's row (a DELETE's for deletes) until the other write has landed:
whatever the call read before, the other write falls between that read and its write."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import pytest

from presence_svc.http.resources import DATABASE
from presence_svc.webhooks.store import Endpoint, NewDelivery, WebhookStore
from tests.conftest import AppClient, MakeClient
from tests.webhooks.receiver import receiving

ADMIN = {"scope": "admin"}
HOOKS = {"webhook_allow_http": True, "webhook_allow_private": True, "webhook_timeout_s": 5.0}


class Interleave:
    """Runs ``between`` once, just before the store sends the first statement starting
    with ``prefix`` after ``arm`` (the admin call's write), then lets that statement go."""

    def __init__(self, store: WebhookStore, monkeypatch: pytest.MonkeyPatch) -> None:
        self.prefix = ""
        self.between: Callable[[], Awaitable[None]] | None = None
        self.ran = False
        for name in ("_fetch", "_execute", "_in_transaction"):
            monkeypatch.setattr(store, name, self._gated(getattr(store, name)))

    def arm(self, prefix: str, between: Callable[[], Awaitable[None]]) -> None:
        self.prefix, self.between, self.ran = prefix, between, False

    def _gated(self, inner: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def gated(first: Any, *rest: Any) -> Any:
            sql = first if isinstance(first, str) else first[0][0]
            between = self.between
            if between is not None and sql.startswith(self.prefix):
                self.between = None  # once: the write in ``between`` goes straight through
                await between()
                self.ran = True
            return await inner(first, *rest)

        return gated


async def _setup(
    make_client: MakeClient,
    auth: Callable[..., dict[str, str]],
    monkeypatch: pytest.MonkeyPatch,
    ledger_url: str,
    url: str = "https://hooks.example.com/in",
) -> tuple[AppClient, dict[str, str], WebhookStore, Interleave, dict[str, Any]]:
    client = await make_client(ledger_url=ledger_url, **HOOKS)
    admin = auth("root", **ADMIN)
    store = client.app[DATABASE].webhooks
    made = await client.post(
        "/v1/webhooks", json={"url": url, "events": ["artifact.occupied"]}, headers=admin
    )
    assert made.status == 201, await made.text()
    return client, admin, store, Interleave(store, monkeypatch), await made.json()


async def _patch(
    client: AppClient, admin: dict[str, str], webhook_id: str, body: dict[str, Any]
) -> dict[str, Any]:
    response = await client.patch(f"/v1/webhooks/{webhook_id}", json=body, headers=admin)
    answer: dict[str, Any] = await response.json()
    assert response.status == 200, answer
    return answer


async def _get(client: AppClient, admin: dict[str, str], webhook_id: str) -> dict[str, Any]:
    response = await client.get(f"/v1/webhooks/{webhook_id}", headers=admin)
    answer: dict[str, Any] = await response.json()
    assert response.status == 200, answer
    return answer


def _failed_attempt(webhook_id: str, now_ms: int) -> Sequence[NewDelivery]:
    return [
        NewDelivery(
            webhook_id,
            f"ev_{now_ms}",
            "artifact.occupied",
            "doc-1",
            '{"type":"artifact.occupied"}',
            now_ms,
            attempts=1,
            next_at_ms=now_ms + 60_000,
            last_error="HTTP 500",
        )
    ]


async def test_a_patch_does_not_undo_the_lanes_disable_that_landed_between_its_read_and_write(
    make_client: MakeClient,
    auth: Callable[..., dict[str, str]],
    monkeypatch: pytest.MonkeyPatch,
    ledger_url: str,
) -> None:
    """The lane disables the endpoint for failing while an admin changes only its events:
    the endpoint stays disabled, for failing, from the lane's time (a broken endpoint is
    not quietly enabled again), and the new events hold."""
    client, admin, store, interleave, made = await _setup(
        make_client, auth, monkeypatch, ledger_url
    )
    webhook_id = made["webhookId"]
    lanes_copy = await store.endpoint(webhook_id)  # the lane holds it as it was: enabled
    assert isinstance(lanes_copy, Endpoint)
    assert lanes_copy.enabled
    disabled_at = int(time.time() * 1000)

    async def lane_disables() -> None:
        await store.park(webhook_id, _failed_attempt(webhook_id, disabled_at), now_ms=disabled_at)
        await store.disable(lanes_copy, "failing", disabled_at)

    interleave.arm("UPDATE webhook_endpoints", lane_disables)
    answer = await _patch(client, admin, webhook_id, {"events": ["view.counted"]})
    assert interleave.ran
    for seen in (answer, await _get(client, admin, webhook_id)):
        assert seen["events"] == ["view.counted"]
        assert seen["enabled"] is False
        assert seen["disabledReason"] == "failing"
        assert seen["health"]["status"] == "disabled"
        assert seen["health"]["failingSince"] is not None
    found = await store.endpoint(webhook_id)
    assert found is not None
    assert found.disabled_at_ms == disabled_at

    # Disabling it by request now changes nothing of the lane's disable: the events
    # kept for it are still those from before the lane's time.
    answer = await _patch(client, admin, webhook_id, {"enabled": False})
    assert (answer["enabled"], answer["disabledReason"]) == (False, "failing")
    found = await store.endpoint(webhook_id)
    assert found is not None
    assert found.disabled_at_ms == disabled_at


async def test_a_patch_keeps_the_lanes_failure_and_success_that_landed_meanwhile(
    make_client: MakeClient,
    auth: Callable[..., dict[str, str]],
    monkeypatch: pytest.MonkeyPatch,
    ledger_url: str,
) -> None:
    """A failure recorded between an admin's read and write stays (``failingSince``, and
    so the disable clock); a success recorded likewise clears it for good (no stale
    ``failingSince`` comes back to disable a healthy endpoint early)."""
    client, admin, store, interleave, made = await _setup(
        make_client, auth, monkeypatch, ledger_url
    )
    webhook_id = made["webhookId"]
    failed_at = int(time.time() * 1000)

    async def lane_fails() -> None:
        await store.park(webhook_id, _failed_attempt(webhook_id, failed_at), now_ms=failed_at)

    interleave.arm("UPDATE webhook_endpoints", lane_fails)
    answer = await _patch(client, admin, webhook_id, {"url": "https://hooks.example.com/v2"})
    assert interleave.ran
    for seen in (answer, await _get(client, admin, webhook_id)):
        assert seen["url"] == "https://hooks.example.com/v2"
        assert seen["health"]["status"] == "failing"
        assert seen["health"]["failingSince"] is not None
        assert seen["health"]["lastFailureAt"] is not None

    async def lane_succeeds() -> None:
        await store.succeeded(webhook_id, failed_at + 1000)

    interleave.arm("UPDATE webhook_endpoints", lane_succeeds)
    answer = await _patch(client, admin, webhook_id, {"artifactPrefix": "doc-"})
    assert interleave.ran
    for seen in (answer, await _get(client, admin, webhook_id)):
        assert seen["artifactPrefix"] == "doc-"
        assert seen["health"]["status"] == "healthy"
        assert seen["health"]["failingSince"] is None
        assert seen["health"]["lastSuccessAt"] is not None


async def test_two_patches_at_once_changing_different_fields_both_hold(
    make_client: MakeClient,
    auth: Callable[..., dict[str, str]],
    monkeypatch: pytest.MonkeyPatch,
    ledger_url: str,
) -> None:
    client, admin, _, interleave, made = await _setup(make_client, auth, monkeypatch, ledger_url)
    webhook_id = made["webhookId"]
    other: dict[str, Any] = {}

    async def another_admin() -> None:
        other.update(
            await _patch(
                client, admin, webhook_id, {"url": "https://hooks.example.com/v2", "enabled": False}
            )
        )

    interleave.arm("UPDATE webhook_endpoints", another_admin)
    answer = await _patch(client, admin, webhook_id, {"events": ["presence.join"]})
    assert interleave.ran
    assert other["url"] == "https://hooks.example.com/v2"
    for seen in (answer, await _get(client, admin, webhook_id)):
        assert seen["url"] == "https://hooks.example.com/v2"
        assert seen["enabled"] is False
        assert seen["disabledReason"] == "by request"
        assert seen["events"] == ["presence.join"]


async def test_two_rotations_at_once_each_answer_a_secret_the_deliveries_verify_with(
    make_client: MakeClient,
    auth: Callable[..., dict[str, str]],
    monkeypatch: pytest.MonkeyPatch,
    ledger_url: str,
) -> None:
    """Rotations apply one after the other: the later one's old secret is the earlier
    one's new secret, so during its overlap each answer's secret verifies a delivery."""
    async with receiving() as receiver:
        client, admin, _, interleave, made = await _setup(
            make_client, auth, monkeypatch, ledger_url, url=receiver.url
        )
        webhook_id = made["webhookId"]
        rotated: dict[str, Any] = {}

        async def another_rotation() -> None:
            rotated.update(await _patch(client, admin, webhook_id, {"rotateSecret": True}))

        interleave.arm("UPDATE webhook_endpoints", another_rotation)
        first = await _patch(client, admin, webhook_id, {"rotateSecret": True})
        assert interleave.ran
        secrets = {made["secret"], rotated["secret"], first["secret"]}
        assert len(secrets) == 3
        for secret in (first["secret"], rotated["secret"]):
            receiver.secrets = [secret]
            response = await client.post(f"/v1/webhooks/{webhook_id}/test", headers=admin)
            sent = await response.json()
            assert response.status == 200, sent
            assert sent["delivered"] is True, (secret == first["secret"], sent)
            assert receiver.ids()[-1] == sent["eventId"]
        assert receiver.bad_signatures == 0


async def test_two_deletes_at_once_answer_204_then_404(
    make_client: MakeClient,
    auth: Callable[..., dict[str, str]],
    monkeypatch: pytest.MonkeyPatch,
    ledger_url: str,
) -> None:
    client, admin, _, interleave, made = await _setup(make_client, auth, monkeypatch, ledger_url)
    path = f"/v1/webhooks/{made['webhookId']}"
    statuses: list[int] = []

    async def another_delete() -> None:
        statuses.append((await client.delete(path, headers=admin)).status)

    interleave.arm("DELETE FROM webhook_endpoints", another_delete)
    response = await client.delete(path, headers=admin)
    assert interleave.ran
    statuses.append(response.status)
    assert statuses == [204, 404]
    assert [e["field"] for e in (await response.json())["errors"]] == ["webhookId"]


async def test_the_lane_does_not_disable_on_a_clock_an_admins_re_enable_restarted(
    make_client: MakeClient,
    auth: Callable[..., dict[str, str]],
    monkeypatch: pytest.MonkeyPatch,
    ledger_url: str,
) -> None:
    """The lane still holds the endpoint's old failure clock (the admin disabled and
    enabled it again before the worker read the endpoints anew): its disable, decided
    on that clock, does not apply; one decided on the stored clock does."""
    client, admin, store, _, made = await _setup(make_client, auth, monkeypatch, ledger_url)
    webhook_id = made["webhookId"]
    after_ms = 3 * 86_400_000
    now = int(time.time() * 1000)
    long_ago = now - after_ms - 60_000
    await store.park(webhook_id, _failed_attempt(webhook_id, long_ago), now_ms=long_ago)
    lanes_copy = await store.endpoint(webhook_id)
    assert lanes_copy is not None
    assert lanes_copy.failing_since_ms == long_ago
    await _patch(client, admin, webhook_id, {"enabled": False})
    restarted = await _patch(client, admin, webhook_id, {"enabled": True})
    assert restarted["health"]["failingSince"] is None
    await store.park(webhook_id, _failed_attempt(webhook_id, now), now_ms=now)

    assert await store.disable(lanes_copy, "failing", now, failing_by_ms=now - after_ms) is None
    seen = await _get(client, admin, webhook_id)
    assert seen["enabled"] is True
    assert seen["health"]["status"] == "failing"

    later = now + after_ms
    off = await store.disable(lanes_copy, "failing", later, failing_by_ms=later - after_ms)
    assert off is not None
    assert (off.enabled, off.disabled_reason, off.disabled_at_ms) == (False, "failing", later)
    seen = await _get(client, admin, webhook_id)
    assert (seen["enabled"], seen["disabledReason"]) == (False, "failing")


async def test_a_replay_of_an_endpoint_deleted_meanwhile_is_404(
    make_client: MakeClient,
    auth: Callable[..., dict[str, str]],
    monkeypatch: pytest.MonkeyPatch,
    ledger_url: str,
) -> None:
    """Not ``replayed: 0`` (nor a missing failure) for an endpoint that is gone."""
    client, admin, _, interleave, made = await _setup(make_client, auth, monkeypatch, ledger_url)
    path = f"/v1/webhooks/{made['webhookId']}"

    async def deleted() -> None:
        assert (await client.delete(path, headers=admin)).status == 204

    for body in ({}, {"failureId": "1"}):
        if body:
            made = await (
                await client.post(
                    "/v1/webhooks",
                    json={"url": "https://hooks.example.com/in", "events": ["artifact.occupied"]},
                    headers=admin,
                )
            ).json()
            path = f"/v1/webhooks/{made['webhookId']}"
        interleave.arm("UPDATE webhook_deliveries SET failed = 0", deleted)
        response = await client.post(f"{path}/replay", json=body, headers=admin)
        assert interleave.ran
        assert response.status == 404, await response.text()
        assert [e["field"] for e in (await response.json())["errors"]] == ["webhookId"]
