"""OpenTelemetry tracing: one span per RPC, a child span per upstream attempt.

Off by default. With ``observability.tracing`` set, each RouteService RPC gets a server
span (continuing the caller's trace from W3C ``traceparent`` metadata), sampled at
``sample_ratio`` unless the caller's trace decides, and exported with OTLP over gRPC in
batches. Attempts are recorded as child spans once their account is known, from the
start offsets and latencies the executor measured, so the executors need no tracing
code. Every log line of a traced RPC carries ``trace_id`` and ``span_id``.

OpenTelemetry is imported only when tracing is configured: the server starts without
the packages when it is off.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import structlog

from quorum.server.config import TracingConfig
from quorum.server.domain import Attempt, AttemptOutcome

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Span, Tracer

log = structlog.get_logger("quorum.tracing")


def require_packages() -> None:
    """:class:`ConfigError` naming the key when the tracing packages are not installed."""
    try:
        import opentelemetry.exporter.otlp.proto.grpc.trace_exporter
        import opentelemetry.sdk.trace  # noqa: F401
    except ImportError as exc:  # pragma: no cover - depends on the installation
        from quorum.server.errors import ConfigError

        raise ConfigError(
            [
                "observability.tracing: the opentelemetry-sdk and "
                "opentelemetry-exporter-otlp-proto-grpc packages are not installed"
            ]
        ) from exc


class Tracing:
    """A tracer provider of its own (never the global one) and the spans Quorum makes."""

    def __init__(self, provider: TracerProvider) -> None:
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self.provider = provider
        self.tracer: Tracer = provider.get_tracer("quorum.server")
        self._propagator = TraceContextTextMapPropagator()

    @classmethod
    def create(
        cls,
        config: TracingConfig,
        *,
        exporter: SpanExporter | None = None,
        batch: bool = True,
    ) -> Tracing:
        """Set up tracing from config; ``exporter`` replaces OTLP (tests pass an in-memory
        one, with ``batch=False`` so spans arrive at once)."""
        require_packages()
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
        from opentelemetry.sdk.trace.sampling import ParentBasedTraceIdRatio

        if exporter is None:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

            insecure = config.insecure
            if insecure is None:
                insecure = config.otlp_endpoint.startswith("http://")
            exporter = OTLPSpanExporter(endpoint=config.otlp_endpoint, insecure=insecure)
        provider = TracerProvider(
            sampler=ParentBasedTraceIdRatio(config.sample_ratio),
            resource=Resource.create({"service.name": config.service_name}),
        )
        processor = BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter)
        provider.add_span_processor(processor)
        return cls(provider)

    @contextmanager
    def rpc(
        self, method: str, metadata: Sequence[tuple[str, str | bytes]] | None
    ) -> Iterator[Span]:
        """A server span for one RPC, current for its duration, its ids bound into logs."""
        from opentelemetry.trace import SpanKind, format_span_id, format_trace_id

        carrier = {k: v for k, v in metadata or () if isinstance(v, str)}
        parent = self._propagator.extract(carrier)
        name = method.lstrip("/")
        service, _, rpc_method = name.partition("/")
        with self.tracer.start_as_current_span(
            name,
            context=parent,
            kind=SpanKind.SERVER,
            attributes={"rpc.system": "grpc", "rpc.service": service, "rpc.method": rpc_method},
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            ctx = span.get_span_context()
            with structlog.contextvars.bound_contextvars(
                trace_id=format_trace_id(ctx.trace_id), span_id=format_span_id(ctx.span_id)
            ):
                yield span

    def attempts(self, attempts: Iterable[Attempt], started_ns: int) -> None:
        """Child spans of the current span for attempts that began ``started_ns`` (wall
        clock) plus their ``started_ms`` offset."""
        from opentelemetry.trace import Status, StatusCode

        for a in attempts:
            if a.outcome is AttemptOutcome.SKIPPED and not a.latency_ms:
                continue
            start = started_ns + int(a.started_ms * 1_000_000)
            span = self.tracer.start_span(
                f"attempt {a.model}",
                start_time=start,
                attributes={
                    "quorum.model": a.model,
                    "quorum.provider": a.provider,
                    "quorum.tier": a.tier,
                    "quorum.role": a.role,
                    "quorum.outcome": a.outcome.value,
                    "quorum.error_reason": a.error_reason,
                    "quorum.cost_usd": a.cost_usd,
                    "gen_ai.usage.input_tokens": a.usage.input_tokens,
                    "gen_ai.usage.output_tokens": a.usage.output_tokens,
                },
            )
            if a.outcome is AttemptOutcome.FAILED:
                span.set_status(Status(StatusCode.ERROR, a.error_reason))
            span.end(end_time=start + int(a.latency_ms * 1_000_000))

    @staticmethod
    def annotate(attributes: dict[str, Any]) -> None:
        """Set attributes on the current span (a no-op when none is recording)."""
        from opentelemetry import trace

        span = trace.get_current_span()
        if span.is_recording():
            span.set_attributes(attributes)

    def shutdown(self) -> None:
        """Flush and stop the exporter."""
        self.provider.shutdown()
