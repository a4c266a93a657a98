"""OpenTelemetry (``PRESENCE_OTEL=1``): a server span per request, named after its route
template, with each Lua script call as a client span under it; off by default, when
requests make no span at all. Spans go to the SDK's in-memory exporter."""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from presence_svc.redis.connection import connect
from presence_svc.redis.keys import Keyspace
from presence_svc.settings import ConfigError, Settings
from tests.cli.test_cli import Server, _heartbeat, _wait_ready
from tests.conftest import MakeClient, free_port

Auth = Callable[..., dict[str, str]]
BEAT = {"artifactId": "doc-1", "sessionId": "tab-aaaa1"}


@pytest.fixture(scope="module")
def exporter() -> InMemorySpanExporter:
    """The process's tracer provider (set once per process), exporting to memory: the
    service sees a provider is set and uses it, as under ``opentelemetry-instrument``."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    return memory


@pytest.fixture
def spans(exporter: InMemorySpanExporter) -> Iterator[Callable[[], list[ReadableSpan]]]:
    exporter.clear()
    yield lambda: list(exporter.get_finished_spans())
    exporter.clear()


async def test_a_request_is_a_span_and_its_script_call_a_child(
    make_client: MakeClient, auth: Auth, spans: Callable[[], list[ReadableSpan]]
) -> None:
    client = await make_client(otel=True)
    response = await client.post("/v1/heartbeat", json=BEAT, headers=auth("alice"))
    assert response.status == 200
    [server] = [s for s in spans() if s.kind is SpanKind.SERVER]
    assert server.name == "POST /v1/heartbeat"
    assert server.attributes is not None
    assert server.attributes["http.route"] == "/v1/heartbeat"
    assert server.attributes["http.response.status_code"] == 200
    # The heartbeat's script (the rate limiter's settlement may be another client span).
    [script] = [s for s in spans() if s.kind is SpanKind.CLIENT and "heartbeat" in s.name]
    assert script.name == "EVALSHA heartbeat"
    assert script.attributes is not None
    assert script.attributes["db.system"] == "redis"
    assert script.parent is not None
    assert server.context is not None
    assert script.parent.span_id == server.context.span_id
    assert script.context is not None
    assert script.context.trace_id == server.context.trace_id


async def test_a_views_script_call_is_a_child_of_its_request(
    make_client: MakeClient, auth: Auth, spans: Callable[[], list[ReadableSpan]]
) -> None:
    """The view and the user's notes go out as one script call on a single server
    (lua/stats/view.lua; a Cluster's two scripts are one batch, a span each), with its
    span."""
    client = await make_client(otel=True)
    view = {"artifactId": "doc-1", "versionId": "v1"}
    response = await client.post("/v1/views", json=view, headers=auth("alice"))
    assert response.status == 200
    [server] = [s for s in spans() if s.kind is SpanKind.SERVER]
    assert server.context is not None
    scripts = {s.name: s for s in spans() if s.kind is SpanKind.CLIENT and "take" not in s.name}
    assert set(scripts) == {"EVALSHA view"}
    for script in scripts.values():
        assert script.parent is not None
        assert script.parent.span_id == server.context.span_id
        assert script.status.status_code is StatusCode.UNSET


async def test_paths_with_ids_are_named_by_their_template(
    make_client: MakeClient, auth: Auth, spans: Callable[[], list[ReadableSpan]]
) -> None:
    client = await make_client(otel=True)
    await client.post("/v1/heartbeat", json=BEAT, headers=auth("alice"))
    spans_before = len(spans())
    online = await client.get("/v1/online?artifactId=doc-1&artifactId=doc-2", headers=auth("a"))
    assert online.status == 200
    listed = await client.get("/v1/artifacts/secret-doc/online", headers=auth("alice"))
    assert listed.status == 200
    names = [s.name for s in spans()[spans_before:]]
    assert "GET /v1/online" in names
    assert "GET /v1/artifacts/{artifactId}/online" in names
    assert "EVALSHA online" in names  # the batch read, one span per call of its pipeline
    assert not [n for n in names if "secret-doc" in n]
    for span in spans():
        assert "secret-doc" not in str(dict(span.attributes or {})), span.name


async def test_a_callers_traceparent_is_continued(
    make_client: MakeClient, auth: Auth, spans: Callable[[], list[ReadableSpan]]
) -> None:
    client = await make_client(otel=True)
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    parent = f"00-{trace_id}-00f067aa0ba902b7-01"
    response = await client.post(
        "/v1/heartbeat", json=BEAT, headers={**auth("alice"), "traceparent": parent}
    )
    assert response.status == 200
    ids = {format(s.context.trace_id, "032x") for s in spans() if s.context is not None}
    assert ids == {trace_id}


async def test_errors_mark_the_span(
    make_client: MakeClient, auth: Auth, spans: Callable[[], list[ReadableSpan]]
) -> None:
    client = await make_client(otel=True)
    missing = await client.get("/nowhere")
    assert missing.status == 404
    bad = await client.post("/v1/heartbeat", json={"artifactId": ""}, headers=auth("alice"))
    assert bad.status == 400
    by_name = {s.name: s for s in spans()}
    assert by_name["GET unmatched"].attributes["http.response.status_code"] == 404  # type: ignore[index]
    assert (
        by_name["POST /v1/heartbeat"].status.status_code is StatusCode.UNSET
    )  # a 4xx is the client's
    assert not [s for s in spans() if s.kind is SpanKind.CLIENT]  # refused before Redis


async def test_off_by_default_no_request_makes_a_span(
    make_client: MakeClient, auth: Auth, spans: Callable[[], list[ReadableSpan]]
) -> None:
    client = await make_client()  # PRESENCE_OTEL unset, although a provider is installed
    response = await client.post("/v1/heartbeat", json=BEAT, headers=auth("alice"))
    assert response.status == 200
    assert spans() == []


async def test_script_calls_outside_a_request_make_no_span(
    settings: Settings, spans: Callable[[], list[ReadableSpan]]
) -> None:
    """The worker's sweeps and drains: no parent, so no span (no flood of root spans)."""
    redis = connect(settings.replace(otel=True))
    try:
        tracer = trace.get_tracer("test")
        online = redis.scripts.online
        keys = Keyspace(settings.partitions)
        await redis.run(online.call(keys.tag_of("doc-1"), ["doc-1"], json=False))
        assert spans() == []
        with tracer.start_as_current_span("job"):
            await redis.run_many([online.call(keys.tag_of("doc-1"), ["doc-1"], json=False)] * 2)
        assert sorted(s.name for s in spans()) == ["EVALSHA online", "EVALSHA online", "job"]
    finally:
        await redis.aclose()


def test_presence_otel_takes_a_boolean() -> None:
    assert Settings.from_env({"PRESENCE_OTEL": "1"}).otel is True
    assert Settings.from_env({}).otel is False
    with pytest.raises(ConfigError, match="PRESENCE_OTEL"):
        Settings.from_env({"PRESENCE_OTEL": "maybe"})


def test_unknown_exporter_is_a_config_error() -> None:
    from presence_svc.http.tracing import _exporter

    with pytest.raises(ConfigError, match="OTEL_TRACES_EXPORTER='zipkin'"):
        _exporter("zipkin")


@pytest.mark.timeout(60)
async def test_serve_exports_spans_with_the_standard_otel_variables(tmp_path: Path) -> None:
    """A real ``serve``: no provider set, so the service installs one from ``OTEL_*``
    (here the console exporter) and flushes it when stopped."""
    server = Server(
        tmp_path / "data",
        free_port(),
        PRESENCE_OTEL="1",
        OTEL_TRACES_EXPORTER="console",
        OTEL_SERVICE_NAME="presence-test",
    )
    try:
        await _wait_ready(server)
        token = server.token("--user", "alice")
        await _heartbeat(server, token, "tab-aaaa1")
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(15) == 0
        out = server.process.stdout.read().decode()  # type: ignore[union-attr]
    finally:
        server.reap()
    assert '"name": "POST /v1/heartbeat"' in out
    assert '"name": "EVALSHA heartbeat"' in out
    assert '"service.name": "presence-test"' in out
