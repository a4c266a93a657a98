"""OpenTelemetry traces, optional (the ``otel`` extra, ``PRESENCE_OTEL=1``): a server span per
request, named after its method and route template, continuing a caller's ``traceparent``.

Off, nothing here is imported and no handler is wrapped: the request path is unchanged. Spans
carry the route template, never the path, so no artifact or user id leaves the service.
"""

from __future__ import annotations

import os

from aiohttp import web
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

from presence_svc.http.edge import Handler
from presence_svc.settings import ConfigError

__all__ = ["install_provider", "traced"]

_TRACER = "presence_svc.http"


def install_provider() -> None:
    """Give the process an SDK tracer provider unless it has one (``opentelemetry-instrument``
    or the embedding program set it up): the standard ``OTEL_*`` variables choose the
    exporter (``OTEL_TRACES_EXPORTER``: ``otlp``, the default, ``console`` or ``none``), its
    endpoint (``OTEL_EXPORTER_OTLP_ENDPOINT``) and the service name (``OTEL_SERVICE_NAME``,
    default ``presence-svc``)."""
    if isinstance(trace.get_tracer_provider(), TracerProvider):
        return
    named = "OTEL_SERVICE_NAME" in os.environ or "service.name=" in os.environ.get(
        "OTEL_RESOURCE_ATTRIBUTES", ""
    )
    provider = TracerProvider(
        resource=Resource.create({} if named else {"service.name": "presence-svc"})
    )
    exporter = _exporter(os.environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower())
    if exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)


def _exporter(name: str) -> SpanExporter | None:
    if name == "none":
        return None
    if name == "console":
        return ConsoleSpanExporter()
    if name == "otlp":
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError as exc:
            raise ConfigError(
                "OTEL_TRACES_EXPORTER=otlp needs the OTLP exporter: "
                "pip install 'presence-svc[otel]'"
            ) from exc
        exporter: SpanExporter = OTLPSpanExporter()
        return exporter
    raise ConfigError(f"OTEL_TRACES_EXPORTER={name!r}: presence-svc knows otlp, console and none")


def traced(handler: Handler, route: str) -> Handler:
    """``handler`` (already wrapped by ``edge.endpoint``, so it answers and never raises) in a
    server span ``METHOD route``."""
    tracer = trace.get_tracer(_TRACER)

    async def answer(request: web.Request) -> web.StreamResponse:
        with tracer.start_as_current_span(
            f"{request.method} {route}",
            context=propagate.extract(request.headers),
            kind=SpanKind.SERVER,
            attributes={"http.request.method": request.method, "http.route": route},
        ) as span:
            response = await handler(request)
            span.set_attribute("http.response.status_code", response.status)
            if response.status >= 500:
                span.set_status(Status(StatusCode.ERROR))
            return response

    answer.__name__ = handler.__name__
    answer.__qualname__ = handler.__qualname__
    answer.__doc__ = handler.__doc__
    return answer
