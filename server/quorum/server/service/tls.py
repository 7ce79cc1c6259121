"""TLS and mutual TLS for the gRPC port, from ``server.tls``.

``cert_file`` and ``key_file`` are the server's PEM certificate chain and key. With
``client_ca_file`` the server asks clients for a certificate signed by that CA; with
``require_client_auth`` it refuses connections without one (mutual TLS). Files are read
once at start-up; a file that cannot be read is a configuration error naming its key.
"""

from __future__ import annotations

from pathlib import Path

import grpc

from quorum.server.config import TlsConfig
from quorum.server.errors import ConfigError


def _read(path: str, key: str, problems: list[str]) -> bytes:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        problems.append(f"server.tls.{key}: cannot read {path} ({exc.strerror or exc})")
        return b""
    if b"-----BEGIN" not in data:
        problems.append(f"server.tls.{key}: {path} is not a PEM file")
    return data


def server_credentials(tls: TlsConfig) -> grpc.ServerCredentials:
    """gRPC server credentials for ``tls``; :class:`ConfigError` when a file is unusable."""
    problems: list[str] = []
    cert = _read(tls.cert_file, "cert_file", problems)
    key = _read(tls.key_file, "key_file", problems)
    ca = _read(tls.client_ca_file, "client_ca_file", problems) if tls.client_ca_file else None
    if problems:
        raise ConfigError(problems)
    return grpc.ssl_server_credentials(
        [(key, cert)],
        root_certificates=ca,
        require_client_auth=tls.require_client_auth,
    )
