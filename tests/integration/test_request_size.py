"""Oversized requests: INVALID_ARGUMENT naming the field well past ``server.max_request_bytes``;
only past the transport's own limit does gRPC refuse them, with RESOURCE_EXHAUSTED."""

from __future__ import annotations

import grpc
import pytest

from quorum.client import QuorumError
from quorum.route.v1 import types_pb2 as pb
from quorum.server.app import server_options, transport_limit
from quorum.server.config import parse_config
from tests.conftest import running_server, sim_config

MIB = 1024 * 1024


def _of(size: int) -> pb.RouteRequest:
    return pb.RouteRequest(messages=[pb.Message(role=pb.ROLE_USER, content="x" * size)])


def test_the_transport_takes_well_more_than_the_limit_and_is_bounded() -> None:
    assert transport_limit(4 * MIB) == 20 * MIB  # the default limit
    assert transport_limit(1024) == 1024 + 16 * MIB
    assert transport_limit(64 * MIB) == 128 * MIB  # the largest limit the config takes
    options = dict(server_options(parse_config(sim_config())))
    assert options["grpc.max_receive_message_length"] == 20 * MIB


async def test_a_request_twice_the_limit_is_invalid_argument_naming_the_field() -> None:
    async with running_server(parse_config(sim_config())) as (_, client):
        # 10 MB used to pass gRPC's transport limit (2 x 4 MiB + 1 MiB) and get
        # RESOURCE_EXHAUSTED "Received message larger than max" with no details.
        for size in (5_000_000, 10_000_000, 19 * MIB):
            with pytest.raises(QuorumError) as info:
                await client.route(_of(size))
            err = info.value
            assert err.code is grpc.StatusCode.INVALID_ARGUMENT, (size, err)
            assert err.reason == "INVALID_REQUEST"
            assert [v.field for v in err.field_violations] == ["messages"]
            assert f"limit {4 * MIB}" in err.field_violations[0].description
        # Past the transport's limit, gRPC itself refuses the call.
        with pytest.raises(QuorumError) as info:
            await client.route(_of(21 * MIB))
        assert info.value.code is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert (await client.route("hello")).content  # the server is unharmed
