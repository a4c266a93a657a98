"""Health, readiness, metrics and the OpenAPI document."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable

import redis
from prometheus_client import REGISTRY

from presence_svc.http.openapi import ENDPOINTS
from tests.conftest import AppClient

Auth = Callable[..., dict[str, str]]


async def test_health_and_readiness(client: AppClient) -> None:
    assert (await client.get("/healthz")).status == 200
    response = await client.get("/readyz")
    assert response.status == 200
    assert (await response.json())["ready"] is True


async def test_readiness_reloads_scripts_redis_lost(
    client: AppClient, sync_redis: redis.Redis
) -> None:
    sync_redis.script_flush()
    response = await client.get("/readyz")
    assert response.status == 200
    assert (await response.json())["checks"]["scripts"] == "reloaded"


async def test_heartbeat_survives_a_script_flush(
    client: AppClient, auth: Auth, sync_redis: redis.Redis
) -> None:
    body = {"artifactId": "doc-1", "sessionId": "tab-aaaa1"}
    assert (await client.post("/v1/heartbeat", json=body, headers=auth("a"))).status == 200
    sync_redis.script_flush()
    response = await client.post("/v1/heartbeat", json=body, headers=auth("a"))
    assert response.status == 200
    query = "/v1/online?artifactId=doc-1&artifactId=doc-2"
    sync_redis.script_flush()
    response = await client.get(query, headers=auth("d", scope="dashboard"))
    assert (await response.json())["counts"]["doc-1"] == {
        "online": 1,
        "sessions": 1,
        "active": 1,
        "away": 0,
    }


async def test_metrics_count_requests_by_route_without_ids(client: AppClient, auth: Auth) -> None:
    await client.post(
        "/v1/heartbeat",
        json={"artifactId": "secret-doc", "sessionId": "tab-aaaa1"},
        headers=auth("alice"),
    )
    await client.get("/v1/artifacts/secret-doc/online", headers=auth("alice"))
    text = await (await client.get("/metrics")).text()
    assert re.search(
        r'presence_http_requests_total\{method="POST",route="/v1/heartbeat",'
        r'status="200"\} [1-9]',
        text,
    )
    assert 'route="/v1/artifacts/{artifactId}/online"' in text
    assert 'presence_redis_script_seconds_count{script="heartbeat"}' in text
    assert "secret-doc" not in text
    assert "alice" not in text


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_metrics_count_every_request_and_view_exactly(client: AppClient, auth: Auth) -> None:
    """The tallies of a loop turn are folded into the metrics: many requests answered in
    the same turns count one each, in the histogram's count, sum and buckets too, and a
    scrape shows them all."""
    route = {"route": "/v1/heartbeat", "method": "POST"}
    before = _sample("presence_http_requests_total", status="200", **route)
    count = _sample("presence_http_request_seconds_count", **route)
    total = _sample("presence_http_request_seconds_sum", **route)
    inf = _sample("presence_http_request_seconds_bucket", le="+Inf", **route)
    views = _sample("presence_views_total", outcome="counted")
    debounced = _sample("presence_views_total", outcome="debounced")

    async def beat(n: int) -> int:
        body = {"artifactId": f"doc-{n % 3}", "sessionId": f"tab-{n:05d}"}
        response = await client.post("/v1/heartbeat", json=body, headers=auth(f"u{n}"))
        return response.status

    assert await asyncio.gather(*(beat(n) for n in range(40))) == [200] * 40
    view = {"artifactId": "doc-1", "versionId": "v1", "sessionId": "tab-00001"}
    for _ in range(3):  # the same viewer again at once: one counted, two debounced
        response = await client.post("/v1/views", json=view, headers=auth("viewer"))
        assert response.status == 200

    await asyncio.sleep(0)  # no scrape needed: folded by the end of the loop turn
    assert _sample("presence_http_requests_total", status="200", **route) == before + 40
    assert _sample("presence_views_total", outcome="counted") == views + 1
    assert _sample("presence_views_total", outcome="debounced") == debounced + 2
    text = await (await client.get("/metrics")).text()

    def scraped(series: str) -> float:
        match = re.search(re.escape(series) + r" (\S+)", text)
        assert match is not None, series
        return float(match.group(1))

    labels = 'method="POST",route="/v1/heartbeat"'
    assert scraped(f"presence_http_request_seconds_count{{{labels}}}") == count + 40
    assert scraped(f'presence_http_request_seconds_bucket{{le="+Inf",{labels}}}') == inf + 40
    assert scraped(f"presence_http_request_seconds_sum{{{labels}}}") > total
    buckets = [
        float(value)
        for value in re.findall(
            r'presence_http_request_seconds_bucket\{le="[^"]+",' + re.escape(labels) + r"\} (\S+)",
            text,
        )
    ]
    assert len(buckets) == 13
    assert buckets == sorted(buckets)  # cumulative, as observed


async def test_openapi_describes_every_route(client: AppClient) -> None:
    doc = await (await client.get("/openapi.json")).json()
    assert doc["openapi"].startswith("3.1")
    served = {
        (route.method, route.resource.canonical)
        for route in client.app.router.routes()
        # "*" is the fallback, answering 404, 405 and CORS preflights: no endpoint.
        if route.method not in ("HEAD", "*") and route.resource is not None
    }
    described = {(e.method, e.path) for e in ENDPOINTS}
    assert served == described
    heartbeat = doc["paths"]["/v1/heartbeat"]["post"]
    ref = heartbeat["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    schema = doc["components"]["schemas"][ref.rsplit("/", 1)[1]]
    assert set(schema["required"]) == {"artifactId", "sessionId"}
    leave = doc["paths"]["/v1/leave"]["post"]["requestBody"]["content"]
    assert "text/plain" in leave  # the page-close beacon
    ledger = {p["name"] for p in doc["paths"]["/v1/ledger"]["get"]["parameters"]}
    assert "order" in ledger
