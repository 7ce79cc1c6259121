"""Listen addresses and connection ages that check-config took and serve could not use:
``server.address: '[...]:5000'`` and ``http_address: '[:]:0'`` matched the pattern and
then stopped serve with a raw gRPC core error; ``max_connection_age_s: 0.001`` made every
RPC fail UNAVAILABLE."""

from __future__ import annotations

import asyncio
from concurrent import futures
from typing import Any

import grpc
import pytest

from quorum.server import cli
from quorum.server.app import server_options
from quorum.server.config import parse_config
from quorum.server.config.server import MIN_CONNECTION_AGE_S
from quorum.server.errors import ConfigError
from tests.conftest import running_server, sim_config

KEYS = ["server.address", "server.http_address", "observability.metrics_address"]


def _data(key: str, address: str) -> dict[str, Any]:
    section, name = key.split(".")
    return sim_config(**{section: {name: address}})


def _problems(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    return list(info.value.problems)


@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize(
    ("address", "problem"),
    [
        ("[...]:5000", '"..." in brackets is not an IPv6 address'),
        ("[:]:0", '":" in brackets is not an IPv6 address'),
        ("[1.2.3.4]:5000", '"1.2.3.4" in brackets is not an IPv6 address'),
        ("[::1::2]:5000", '"::1::2" in brackets is not an IPv6 address'),
        ("[12345::]:5000", '"12345::" in brackets is not an IPv6 address'),
        ("1.2.3:5000", '"1.2.3" is not an IPv4 address'),
        ("999.1.1.1:5000", '"999.1.1.1" is not an IPv4 address'),
        ("...:5000", '"..." is not an IPv4 address'),
        ("a..b:5000", '"a..b" is not a valid host name'),
        ("-host:5000", '"-host" is not a valid host name'),
        ("localhost.:5000", '"localhost." is not a valid host name'),
        ("[::1]:70000", "port 70000 is not within 0-65535"),
    ],
)
def test_an_address_no_listener_can_bind_is_named(key: str, address: str, problem: str) -> None:
    assert _problems(_data(key, address)) == [f"{key}: {problem}"]


def test_the_grpc_address_needs_a_host() -> None:
    assert _problems(_data("server.address", ":5000")) == [
        "server.address: needs a host: gRPC cannot listen on an empty one; [::] listens on all"
    ]
    # The HTTP and metrics listeners take an empty host as every address.
    parse_config(_data("server.http_address", ":8080"))
    parse_config(_data("observability.metrics_address", ":9090"))


@pytest.mark.parametrize(
    "address",
    ["[::]:0", "[::1]:0", "[0:0:0:0:0:0:0:1]:0", "[::ffff:127.0.0.1]:0", "127.0.0.1:0",
     "0.0.0.0:0", "localhost:0", "LOCALHOST:0"],
)  # fmt: skip
def test_every_accepted_grpc_address_binds(address: str) -> None:
    config = parse_config(_data("server.address", address))
    server = grpc.server(futures.ThreadPoolExecutor(1))
    try:
        assert server.add_insecure_port(config.server.address) > 0
    finally:
        server.stop(None)


def test_serve_refuses_the_flag_as_the_config_does(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_server(*args: object, **kwargs: object) -> None:
        raise AssertionError("a server was made")

    monkeypatch.setattr("quorum.server.app.create_server", no_server)
    capsys.readouterr()
    assert cli.main(["serve", "--address", "[...]:5000"]) == 2
    assert capsys.readouterr().err == (
        "quorum serve: --address '[...]:5000': \"...\" in brackets is not an IPv6 address\n"
    )


# ---- connection ages -------------------------------------------------------------------


@pytest.mark.parametrize("value", [0, 0.001, 0.1, 0.999])
def test_a_connection_age_too_short_to_serve_is_named(value: float) -> None:
    assert _problems(sim_config(server={"max_connection_age_s": value})) == [
        f"server.max_connection_age_s: must be at least {MIN_CONNECTION_AGE_S} s: recycling "
        "connections faster fails calls (UNAVAILABLE) and the load shedder's probe; it is "
        "meant to rebalance clients over minutes"
    ]


def test_the_shortest_connection_age_and_the_shipped_ones_are_taken() -> None:
    config = parse_config(sim_config(server={"max_connection_age_s": MIN_CONNECTION_AGE_S}))
    assert ("grpc.max_connection_age_ms", 1000) in server_options(config)
    # deploy/k8s sets 300 with a grace of 30 and 120; a grace of 0 stays a choice.
    for age, grace in ((300, 30), (300, 120), (1, 0)):
        parse_config(
            sim_config(server={"max_connection_age_s": age, "max_connection_age_grace_s": grace})
        )


@pytest.mark.slow
async def test_a_server_at_the_shortest_connection_age_answers_across_recycles() -> None:
    config = parse_config(sim_config(server={"max_connection_age_s": MIN_CONNECTION_AGE_S}))
    async with running_server(config) as (_, client):
        for _ in range(6):  # one channel, over about three connection ages
            assert (await client.route("What is 2+2?")).model
            await asyncio.sleep(0.5)
