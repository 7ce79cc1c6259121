"""Secrets never show: a real ``quorum serve`` with a tenant token, a token-hash key and a
provider key, exercised through success, refusal and provider errors; its logs (debug),
responses, error statuses and metrics are searched for every secret."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import grpc
import pytest
import yaml
from google.protobuf import json_format

from quorum.client import AsyncQuorumClient, QuorumError
from quorum.route.v1 import types_pb2 as pb
from tests.conftest import log_events
from tests.fakes import openai_server
from tests.integration.test_drain import free_port, wait_serving

QUORUM = Path(sys.executable).with_name("quorum")
TOKEN = "qtok-7f3a9c1e5b2d8f4a6c0e9b7d"
HASH_KEY = "hkey-41d8cd98f00b204e9800998ecf8427e"
PROVIDER_KEY = "sk-live-9a8b7c6d5e4f3a2b1c0d"
SECRETS = (TOKEN, HASH_KEY, PROVIDER_KEY)


async def test_no_secret_in_logs_responses_errors_or_metrics(tmp_path: Path) -> None:
    digest = hmac.new(HASH_KEY.encode(), TOKEN.encode(), hashlib.sha256).hexdigest()
    seen: list[str] = []
    async with openai_server.serve() as fake:
        data = {
            "server": {"log_level": "debug"},
            "providers": {
                "openai": {"kind": "openai", "base_url": fake.base_url, "api_key_env": "OAI_KEY"}
            },
            "tiers": ["cheap", "premium"],
            "models": {
                "good": {
                    "provider": "openai",
                    "model_id": "ok",
                    "tier": "cheap",
                    "input_usd_per_mtok": 0.1,
                    "output_usd_per_mtok": 0.4,
                },
                "locked": {
                    "provider": "openai",
                    "model_id": "error-401",
                    "tier": "premium",
                    "input_usd_per_mtok": 1,
                    "output_usd_per_mtok": 2,
                },
            },
            "auth": {"token_hash": "hmac_sha256", "hash_key_env": "TOKEN_KEY"},
            "tenants": {"acme": {"token_sha256_env": "ACME_TOKEN"}},
            "budgets": {"global": {"daily_usd": 5}},
            "cache": {"enabled": True, "default_allow": True},
        }
        config = tmp_path / "quorum.yaml"
        config.write_text(yaml.safe_dump(data))
        address, metrics = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
        log_path = tmp_path / "serve.log"
        env = {**os.environ, "OAI_KEY": PROVIDER_KEY, "TOKEN_KEY": HASH_KEY, "ACME_TOKEN": digest}
        with log_path.open("wb") as log_file:
            proc = subprocess.Popen(
                [str(QUORUM), "serve", "--config", str(config), "--address", address,
                 "--metrics-address", metrics],
                stdout=log_file, stderr=subprocess.STDOUT, cwd=tmp_path, env=env,
            )  # fmt: skip
            try:
                await wait_serving(address)
                good = [("authorization", f"Bearer {TOKEN}")]
                async with AsyncQuorumClient(address, timeout=10, metadata=good) as client:
                    for _ in range(2):  # the second is a cache hit
                        r = await client.route("What is 2 + 2?")
                        seen.append(json_format.MessageToJson(r))
                    seen.append(json_format.MessageToJson(await client.plan("hello")))
                    seen.append(json_format.MessageToJson(await client.list_models()))
                    for hints in (pb.RoutingHints(model="locked"), pb.RoutingHints(tier="x")):
                        try:
                            await client.route("hello again", hints=hints)
                        except QuorumError as exc:
                            seen.append(f"{exc} {exc.metadata} {exc.attempts}")
                    with_tenant = pb.RouteRequest(
                        tenant=TOKEN[:20], messages=[pb.Message(role=pb.ROLE_USER, content="x")]
                    )
                    try:
                        await client.route(with_tenant)
                    except QuorumError as exc:
                        seen.append(f"{exc} {exc.metadata}")
                for bad in (f"Bearer {TOKEN}x", TOKEN, f"Bearer {PROVIDER_KEY}"):
                    async with AsyncQuorumClient(
                        address, metadata=[("authorization", bad)]
                    ) as client:
                        with pytest.raises(QuorumError) as info:
                            await client.route("hello")
                        assert info.value.code is grpc.StatusCode.UNAUTHENTICATED
                        seen.append(f"{info.value} {info.value.metadata}")
                url = f"http://{metrics}/metrics"
                page = await asyncio.to_thread(urllib.request.urlopen, url, timeout=10)
                with page:
                    body = page.read()
                seen.append(body.decode())
            finally:
                proc.send_signal(signal.SIGTERM)
                await asyncio.to_thread(proc.wait, 10)
    logs = log_path.read_text()
    events = log_events(logs)
    assert "routed" in events and "attempt_failed" in events  # the paths ran
    assert "rpc_refused" in logs
    everything = "\n".join([logs, *seen])
    for secret in SECRETS:
        assert secret not in everything
        assert secret[:12] not in everything  # nor a recognisable prefix
