"""The request body as the front door reads it: ``Content-Encoding`` undone by Quorum.

A body that is not the gzip or deflate data its header says, or an encoding Quorum does
not decode, is a 400 in OpenAI's shape naming the field (``body`` or
``content-encoding``): not a 500 with tracebacks, nor aiohttp's plain-text refusal. A
body that decompresses past ``server.max_request_bytes`` is refused at the limit.
"""

from __future__ import annotations

import gzip
import zlib

import aiohttp
import pytest
import structlog

from quorum.server.errors import InvalidRequest
from quorum.server.frontdoor.body import decode
from tests.integration.test_openai_front_door import MATH, _base_url, front_door
from tests.integration.test_openai_front_door_hostile import _requests

_JSON = b'{"model":"quorum:auto","messages":[{"role":"user","content":"What is 17 * 23?"}]}'


def _raw_deflate(data: bytes) -> bytes:
    encoder = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return encoder.compress(data) + encoder.flush()


# --- decode, without a server ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("encoding", "raw"),
    [
        ("", _JSON),
        ("identity", _JSON),
        ("gzip", gzip.compress(_JSON)),
        ("x-gzip", gzip.compress(_JSON)),
        ("gzip", gzip.compress(_JSON[:10]) + gzip.compress(_JSON[10:])),  # two members
        ("deflate", zlib.compress(_JSON)),
        ("deflate", _raw_deflate(_JSON)),  # bare deflate, as some clients send it
    ],
    ids=["none", "identity", "gzip", "x-gzip", "gzip-two-members", "deflate", "raw-deflate"],
)
def test_encoded_bodies_are_decoded(encoding: str, raw: bytes) -> None:
    assert decode(raw, encoding, 1000) == _JSON


@pytest.mark.parametrize(
    ("encoding", "raw", "field"),
    [
        ("gzip", b"garbage", "body"),
        ("deflate", b"garbage", "body"),
        ("gzip", gzip.compress(_JSON)[:-6], "body"),  # truncated
        ("deflate", zlib.compress(_JSON)[:-6], "body"),
        ("gzip", gzip.compress(_JSON) + b"junk", "body"),
        ("deflate", zlib.compress(_JSON) + b"junk", "body"),
        ("br", b"x", "content-encoding"),
        ("zstd", b"x", "content-encoding"),
        ("compress", b"x", "content-encoding"),
        ("gzip, gzip", b"x", "content-encoding"),
        # Past the limit once decompressed, however small compressed.
        ("gzip", gzip.compress(b" " * 1001), "messages"),
        ("gzip", gzip.compress(b" " * 600) + gzip.compress(b" " * 600), "messages"),
        ("deflate", zlib.compress(b" " * 10_000_000), "messages"),
    ],
    ids=[
        "gzip-garbage",
        "deflate-garbage",
        "gzip-truncated",
        "deflate-truncated",
        "gzip-trailing-junk",
        "deflate-trailing-junk",
        "br",
        "zstd",
        "compress",
        "gzip-gzip",
        "gzip-over-limit",
        "gzip-members-over-limit",
        "deflate-bomb",
    ],
)
def test_bad_encodings_name_their_field(encoding: str, raw: bytes, field: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        decode(raw, encoding, 1000)
    assert caught.value.violations[0].field == field


def test_the_limit_is_the_decoded_size() -> None:
    assert decode(gzip.compress(b" " * 1000), "gzip", 1000) == b" " * 1000
    with pytest.raises(InvalidRequest) as caught:
        decode(gzip.compress(b" " * 1001), "gzip", 1000)
    assert "over 1000 bytes once decompressed" in caught.value.message


def test_an_unsupported_encoding_lists_the_supported_ones() -> None:
    with pytest.raises(InvalidRequest) as caught:
        decode(b"x", "br", 1000)
    assert caught.value.violations[0].description == (
        "'br' is not supported; use one of gzip, deflate, identity"
    )


# --- over HTTP ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("encoding", "body"),
    [("gzip", gzip.compress(_JSON)), ("deflate", zlib.compress(_JSON))],
    ids=["gzip", "deflate"],
)
async def test_a_compressed_body_is_served(encoding: str, body: bytes) -> None:
    async with front_door() as (running, _):
        async with aiohttp.ClientSession() as http:
            async with http.post(
                _base_url(running) + "/chat/completions",
                data=body,
                headers={"Content-Type": "application/json", "Content-Encoding": encoding},
            ) as response:
                assert response.status == 200, await response.text()
                assert (await response.json())["choices"][0]["message"]["content"]


@pytest.mark.parametrize(
    ("encoding", "body", "param"),
    [
        ("gzip", b"garbage", "body"),
        ("deflate", b"garbage", "body"),
        ("gzip", gzip.compress(b" " * 5_000_000), "messages"),  # a bomb: 5 MB from 5 kB
        ("br", b"garbage", "content-encoding"),
        ("zstd", b"garbage", "content-encoding"),
    ],
    ids=["gzip", "deflate", "gzip-bomb", "br", "zstd"],
)
async def test_a_body_that_cannot_be_decoded_is_a_400_naming_the_field(
    encoding: str, body: bytes, param: str, capfd: pytest.CaptureFixture[str]
) -> None:
    async with front_door() as (running, client):
        registry = running.router.metrics.registry
        async with aiohttp.ClientSession() as http:
            with structlog.testing.capture_logs() as logs:
                async with http.post(
                    _base_url(running) + "/chat/completions",
                    data=body,
                    headers={"Content-Type": "application/json", "Content-Encoding": encoding},
                ) as response:
                    assert response.status == 400, await response.text()
                    assert response.content_type == "application/json"
                    error = (await response.json())["error"]
        assert (error["type"], error["code"], error["param"]) == (
            "invalid_request_error",
            "invalid_request",
            param,
        )
        assert [e["event"] for e in logs] == ["http_failed"], logs
        assert _requests(registry) == {"INVALID_ARGUMENT": 1}
        # The connection and the server are fine: the next caller is served as usual.
        answer = await client.chat.completions.create(model="quorum:auto", messages=MATH)
        assert answer.choices[0].message.content
    assert "Traceback" not in capfd.readouterr().err
