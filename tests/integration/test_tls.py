"""TLS and mutual TLS on the gRPC port, with certificates made here."""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from quorum.client import AsyncQuorumClient, QuorumError
from quorum.server.app import RunningServer, create_server
from quorum.server.config import parse_config
from quorum.server.errors import ConfigError
from tests.conftest import sim_config


@dataclass(frozen=True)
class Issued:
    key: bytes
    cert: bytes


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def issue(
    common: str,
    issuer: tuple[ec.EllipticCurvePrivateKey, x509.Name] | None = None,
    *,
    ca: bool = False,
    server: bool = False,
) -> tuple[Issued, ec.EllipticCurvePrivateKey]:
    """A key and a certificate for ``common``, self-signed unless ``issuer`` signs it."""
    key = ec.generate_private_key(ec.SECP256R1())
    signer, issuer_name = issuer or (key, _name(common))
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    cert = builder.sign(signer, hashes.SHA256())
    pem_key = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return Issued(pem_key, cert.public_bytes(serialization.Encoding.PEM)), key


@dataclass(frozen=True)
class Pki:
    ca: Issued
    server: Issued
    client: Issued
    stranger: Issued  # a client certificate from another CA


def make_pki() -> Pki:
    """A CA, a server and a client certificate it signed, and a stranger's from another CA."""
    ca, ca_key = issue("quorum test CA", ca=True)
    server, _ = issue("localhost", (ca_key, _name("quorum test CA")), server=True)
    client, _ = issue("acme-service", (ca_key, _name("quorum test CA")))
    other_ca, other_key = issue("someone else's CA", ca=True)
    stranger, _ = issue("intruder", (other_key, _name("someone else's CA")))
    assert other_ca.cert != ca.cert
    return Pki(ca, server, client, stranger)


@pytest.fixture(scope="module")
def pki() -> Pki:
    return make_pki()


def tls_section(tmp_path: Path, pki: Pki, *, mutual: bool) -> dict[str, Any]:
    for name, data in (("ca.pem", pki.ca.cert), ("server.pem", pki.server.cert),
                       ("server.key", pki.server.key)):  # fmt: skip
        (tmp_path / name).write_bytes(data)
    section: dict[str, Any] = {
        "cert_file": str(tmp_path / "server.pem"),
        "key_file": str(tmp_path / "server.key"),
    }
    if mutual:
        section |= {"client_ca_file": str(tmp_path / "ca.pem"), "require_client_auth": True}
    return section


@asynccontextmanager
async def serving(tls: dict[str, Any]) -> AsyncIterator[RunningServer]:
    data = sim_config()
    data["server"] = {"tls": tls}
    running = create_server(parse_config(data), "127.0.0.1:0")
    await running.start()
    try:
        yield running
    finally:
        await running.drain(0.5)


def secure(running: RunningServer, pki: Pki, client: Issued | None) -> AsyncQuorumClient:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=pki.ca.cert,
        private_key=client.key if client else None,
        certificate_chain=client.cert if client else None,
    )
    channel = grpc.aio.secure_channel(f"localhost:{running.port}", credentials)
    return AsyncQuorumClient("", channel=channel, timeout=5)


async def test_tls_serves_encrypted_and_refuses_plaintext(tmp_path: Path, pki: Pki) -> None:
    async with serving(tls_section(tmp_path, pki, mutual=False)) as running:
        async with secure(running, pki, None) as client:
            assert (await client.route("hello")).content
        async with AsyncQuorumClient(f"127.0.0.1:{running.port}", timeout=2) as plain:
            with pytest.raises(QuorumError) as info:
                await plain.route("hello")
        assert info.value.code is grpc.StatusCode.UNAVAILABLE


async def test_mutual_tls_requires_a_client_certificate_from_the_ca(
    tmp_path: Path, pki: Pki
) -> None:
    async with serving(tls_section(tmp_path, pki, mutual=True)) as running:
        async with secure(running, pki, pki.client) as client:
            assert (await client.route("hello")).content
        for who in (None, pki.stranger):
            async with secure(running, pki, who) as client:
                with pytest.raises(QuorumError) as info:
                    await client.route("hello")
            assert info.value.code is grpc.StatusCode.UNAVAILABLE


def test_unreadable_files_name_their_keys(tmp_path: Path) -> None:
    data = sim_config()
    (tmp_path / "not-pem.txt").write_text("hello")
    data["server"] = {
        "tls": {
            "cert_file": str(tmp_path / "missing.pem"),
            "key_file": str(tmp_path / "not-pem.txt"),
        }
    }
    with pytest.raises(ConfigError) as info:
        create_server(parse_config(data), "127.0.0.1:0")
    problems = info.value.problems
    assert problems[0].startswith("server.tls.cert_file: cannot read")
    assert problems[1].startswith("server.tls.key_file:") and "not a PEM file" in problems[1]


def test_client_auth_without_a_ca_is_a_config_error() -> None:
    data = sim_config()
    data["server"] = {"tls": {"cert_file": "a", "key_file": "b", "require_client_auth": True}}
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    assert info.value.problems == (
        "server.tls.client_ca_file: required when require_client_auth is true",
    )
