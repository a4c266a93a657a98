"""Addresses a webhook may not reach are refused at delivery time, after DNS, unless
PRESENCE_WEBHOOK_ALLOW_PRIVATE=1; redirects are not followed; answers are read only so far."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web

from presence_svc.webhooks.sender import MAX_ANSWER_BYTES, Sender
from presence_svc.webhooks.signing import new_secret
from presence_svc.webhooks.ssrf import RefusedAddress, check_address, url_problem
from tests.webhooks.receiver import receiving


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",  # the cloud metadata service
        "100.64.0.1",
        "0.0.0.0",
        "::1",
        "fe80::1",
        "fd00:ec2::254",
        "::ffff:127.0.0.1",
        "224.0.0.1",
    ],
)
def test_non_public_addresses_are_refused(address: str) -> None:
    with pytest.raises(RefusedAddress):
        check_address("host.example", address)


@pytest.mark.parametrize("address", ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"])
def test_public_addresses_pass(address: str) -> None:
    check_address("host.example", address)


@pytest.mark.parametrize(
    ("url", "allow_http", "ok"),
    [
        ("https://hooks.example.com/in?x=1", False, True),
        ("http://hooks.example.com/in", False, False),
        ("http://hooks.example.com/in", True, True),
        ("https://hooks.example.com:99999/", False, False),
        ("https://a b.example.com/", False, False),
        ("https://hooks.example.com/#frag", False, False),
        ("javascript:alert(1)", True, False),
    ],
)
def test_endpoint_urls(url: str, allow_http: bool, ok: bool) -> None:
    assert (url_problem(url, allow_http=allow_http) is None) is ok


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]"])
async def test_a_delivery_to_loopback_is_refused_by_ip_or_by_name(host: str) -> None:
    async with receiving() as receiver:
        url = receiver.url.replace("127.0.0.1", host)
        sender = Sender(timeout_s=2, allow_private=False)
        try:
            outcome = await sender.send(url, [new_secret()], "ev_1", b"{}")
        finally:
            await sender.close()
        assert outcome.kind == "refused", outcome
        assert receiver.attempts == []


async def test_a_refused_endpoint_keeps_its_events_as_failures_and_the_test_says_why(
    make_hooks: Any,
) -> None:
    hooks = await make_hooks(webhook_allow_private=False, webhook_retry_schedule=(0.05,))
    async with receiving() as receiver:
        made = await hooks.create(receiver.url, ["artifact.occupied"])
        path = f"/v1/webhooks/{made['webhookId']}"
        answer = await hooks.call("POST", f"{path}/test")
        assert answer["delivered"] is False
        assert "refused" in answer["error"]
        await hooks.beat("doc-1", "alice")
        failures: list[dict[str, Any]] = []
        while not failures:
            failures = (await hooks.call("GET", f"{path}/failures"))["items"]
        assert "refused" in failures[0]["lastError"]
        assert receiver.attempts == []


async def test_redirects_are_not_followed_and_long_answers_not_read_whole(
    make_hooks: Any,
) -> None:
    async with receiving() as target:
        app = web.Application()
        huge = b"x" * (MAX_ANSWER_BYTES * 50)

        async def redirect(request: web.Request) -> web.Response:
            raise web.HTTPTemporaryRedirect(target.url)

        async def long(request: web.Request) -> web.Response:
            return web.Response(status=500, body=huge)

        app.router.add_post("/redirect", redirect)
        app.router.add_post("/long", long)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        sender = Sender(timeout_s=5, allow_private=True)
        try:
            moved = await sender.send(
                f"http://127.0.0.1:{port}/redirect", [new_secret()], "e", b"{}"
            )
            assert moved.kind == "status"
            assert moved.status == 307
            assert target.attempts == []
            failed = await sender.send(f"http://127.0.0.1:{port}/long", [new_secret()], "e", b"{}")
            assert failed.status == 500
            assert failed.error is not None
            assert len(failed.error) < 300
        finally:
            await sender.close()
            await runner.cleanup()
