"""Observability: Prometheus metrics, OpenTelemetry tracing, structured logs."""
