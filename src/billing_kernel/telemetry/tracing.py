"""Traces for the operator's OpenTelemetry collector, when OpenTelemetry's own variables ask
for them (OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT; the service name,
resource attributes, headers and batching follow theirs too): a server span per request,
named by its route's template and continuing the caller's W3C `traceparent`, with a span per
database statement under it (its text, never its parameters). Without them, nothing of the
SDK is imported and nothing is done."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

ENDPOINTS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")


def requested() -> bool:
    """Whether the environment asks for traces (and does not turn the SDK off)."""
    if os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return False
    return any(os.environ.get(name) for name in ENDPOINTS)


class Tracing:
    """An OpenTelemetry tracer exporting over OTLP/HTTP in batches, from a thread of its own."""

    def __init__(self) -> None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.trace import SpanKind, Status, StatusCode
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        name = os.environ.get("OTEL_SERVICE_NAME") or "billing-kernel"
        self._provider = TracerProvider(resource=Resource.create({"service.name": name}))
        self._provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        self._tracer = self._provider.get_tracer("billing_kernel")
        self._propagator = TraceContextTextMapPropagator()
        self._server, self._client = SpanKind.SERVER, SpanKind.CLIENT
        self._status, self._failed = Status, StatusCode.ERROR
        self._system = ""

    def _error(self, reason: str) -> Any:
        return self._status(self._failed, reason)

    @contextmanager
    def request(self, method: str, path: str, headers: Mapping[str, str]) -> Iterator[Any]:
        """The span of one request (named `METHOD path` until `answered` names its route)."""
        context = self._propagator.extract(dict(headers))
        with self._tracer.start_as_current_span(
            f"{method} {path}", context=context, kind=self._server
        ) as span:
            span.set_attribute("http.request.method", method)
            span.set_attribute("url.path", path)
            yield span

    def answered(self, span: Any, method: str, route: str, status: int) -> None:
        span.update_name(f"{method} {route}")
        span.set_attribute("http.route", route)
        span.set_attribute("http.response.status_code", status)
        if status >= 500:
            span.set_status(self._error(f"answered {status}"))

    def watch(self, database: Any) -> None:
        """A span for each statement `database` (a `db.Database`) sends."""
        self._system = "postgresql" if database.is_postgresql else "sqlite"
        database.observe_statements(self._statement_began, self._statement_ended)

    def _statement_began(self, statement: str) -> Any:
        operation = statement.lstrip().split(None, 1)[0].upper() if statement.strip() else "SQL"
        span = self._tracer.start_span(operation, kind=self._client)
        span.set_attribute("db.system", self._system)
        span.set_attribute("db.query.text", statement[:2000])
        return span

    def _statement_ended(self, span: Any, error: BaseException | None) -> None:
        if error is not None:
            span.record_exception(error)
            span.set_status(self._error(type(error).__name__))
        span.end()

    def shutdown(self) -> None:
        """Send what is batched, then stop (at the app's shutdown)."""
        self._provider.shutdown()
