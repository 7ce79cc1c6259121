"""The ``server`` section: the listening addresses, TLS, deadlines and draining."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from quorum.server.config.fields import HostPort, Strict

# gRPC takes a connection's age and its grace as 32-bit milliseconds (about 24.8 days at
# most): a longer one, or .inf, would stop `serve` as it builds the server.
MAX_CONNECTION_AGE_S = 24 * 86_400
# Recycling is for rebalancing over minutes. At 0.001 s every RPC failed (UNAVAILABLE,
# then RESOURCE_EXHAUSTED once the load shedder's own delay probe stopped getting
# through), and with no grace gRPC core aborted the process; 1 s keeps clear of that.
MIN_CONNECTION_AGE_S = 1


def _connection_age(value: float) -> float:
    if not value <= MAX_CONNECTION_AGE_S:  # .inf and .nan too
        raise ValueError(
            f"must be at most {MAX_CONNECTION_AGE_S} (24 days): gRPC counts connection ages "
            "in 32-bit milliseconds"
        )
    return value


# .inf gets the message above rather than pydantic's "should be a finite number".
ConnectionAge = Annotated[float, Field(allow_inf_nan=True), AfterValidator(_connection_age)]


def _long_enough(value: float) -> float:
    if not value >= MIN_CONNECTION_AGE_S:
        raise ValueError(
            f"must be at least {MIN_CONNECTION_AGE_S} s: recycling connections faster fails "
            "calls (UNAVAILABLE) and the load shedder's probe; it is meant to rebalance "
            "clients over minutes"
        )
    return value


def _grpc_host(value: str) -> str:
    if value.startswith(":"):
        raise ValueError("needs a host: gRPC cannot listen on an empty one; [::] listens on all")
    return value


class TlsConfig(Strict):
    """TLS on the gRPC port; mutual TLS when clients must present a certificate."""

    cert_file: str = Field(min_length=1)
    key_file: str = Field(min_length=1)
    client_ca_file: str | None = None
    require_client_auth: bool = False


class ServerConfig(Strict):
    """The gRPC listener and its limits."""

    address: Annotated[HostPort, AfterValidator(_grpc_host)] = "[::]:50051"
    http_address: HostPort | None = Field(
        None, description="HOST:PORT of the OpenAI-compatible HTTP front door; off when unset"
    )
    grace_period_s: float = Field(20.0, ge=0, le=600)
    max_connection_age_s: Annotated[ConnectionAge, AfterValidator(_long_enough)] = 300.0
    max_connection_age_grace_s: ConnectionAge = Field(30.0, ge=0)
    max_request_bytes: int = Field(4 * 1024 * 1024, ge=1024, le=64 * 1024 * 1024)
    max_messages: int = Field(256, ge=1, le=10_000)
    max_concurrent_rpcs: int = Field(1024, ge=1, le=1_000_000)
    default_deadline_s: float = Field(60.0, gt=0, le=3600)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_prompts: bool = False
    tls: TlsConfig | None = None
