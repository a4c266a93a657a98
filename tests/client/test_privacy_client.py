"""The Python SDK's privacy calls against the real service: set_privacy / get_privacy, and
what a hidden viewer and an invisible user look like through the other calls."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime

import pytest
from aiohttp.test_utils import TestServer

from presence_svc.auth import Scope, TokenCodec
from presence_svc.client import PresenceClient, PresenceClientError, Privacy
from presence_svc.http.app import create_app
from presence_svc.settings import Settings


def _token(tokens: TokenCodec, user: str, scope: str = "client") -> str:
    return tokens.issue(user, scope=Scope(scope), ttl_s=600)


async def test_set_and_get_privacy_and_what_others_see(
    aiohttp_server: Callable[..., Awaitable[TestServer]], settings: Settings, tokens: TokenCodec
) -> None:
    server = await aiohttp_server(create_app(settings))
    url = str(server.make_url("")).rstrip("/")
    async with (
        PresenceClient(url, _token(tokens, "alice")) as alice,
        PresenceClient(url, _token(tokens, "board", "dashboard")) as board,
    ):
        assert await alice.get_privacy("alice") == Privacy(user_id="alice")
        stored = await alice.set_privacy("alice", view_history="hidden")
        assert (stored.view_history, stored.presence) == ("hidden", "visible")
        assert isinstance(stored.updated_at, datetime)
        stored = await alice.set_privacy("alice", presence="hidden")
        assert (stored.view_history, stored.presence) == ("hidden", "hidden")
        assert await alice.get_privacy("alice") == stored

        await alice.record_view("doc-1", "v1")
        page = await board.viewers("doc-1", "v1")
        assert (page.viewers, page.hidden_viewers) == ([], 1)
        assert (await board.stats("doc-1")).unique_viewers == 1
        await alice.heartbeat("doc-1", session_id="tab-alice-1")
        listed = await board.presence("doc-1")
        assert (listed.online, listed.users) == (1, [])

        with pytest.raises(PresenceClientError) as refused:
            await board.set_privacy("alice", presence="visible")
        assert refused.value.status == 403
