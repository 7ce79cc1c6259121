"""``providers.<name>.headers`` are checked at load: a value with CR/LF/NUL passed
check-config and then failed every call with a traceback (aiohttp refuses header
injection); a name with a space, an empty one, or a header the HTTP client writes itself
(Content-Length, Host, ...) went on the wire."""

from __future__ import annotations

from typing import Any

import pytest

from quorum.server.config import load_config_text, parse_config, resolve_secrets
from quorum.server.config.providers import CLIENT_HEADERS
from quorum.server.domain import GenerationParams, Message, Role
from quorum.server.errors import ConfigError
from quorum.server.providers.base import ProviderRequest
from quorum.server.providers.http import HttpClient
from quorum.server.providers.openai import OpenAIProvider
from tests.conftest import sim_config
from tests.fakes import scripted
from tests.fakes.scripted import Canned

SECRET = "sk-never-echo-0123456789"


def _with_headers(headers: dict[Any, Any], **provider: Any) -> dict[str, Any]:
    data = sim_config()
    data["providers"]["oa"] = {
        "kind": "openai",
        "base_url": "http://127.0.0.1:9/v1",
        "headers": headers,
        **provider,
    }
    return data


def _problems(headers: dict[Any, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(_with_headers(headers))
    return list(info.value.problems)


@pytest.mark.parametrize(
    "value",
    [
        f"Bearer {SECRET}\r\nX-Evil: 1",
        f"Bearer {SECRET}\nX-Evil: 1",
        f"Bearer {SECRET}\r",
        f"Bearer {SECRET}\x00",
        f"Bearer {SECRET}\x1b[2J",
        f"Bearer {SECRET}\x7f",
    ],
    ids=["crlf", "lf", "cr", "nul", "escape", "del"],
)
def test_a_control_character_in_a_value_is_named_and_the_value_not_echoed(value: str) -> None:
    (problem,) = _problems({"Authorization": value})
    assert problem.startswith(
        "providers.oa.headers.Authorization: a header value must not contain control characters"
    )
    assert SECRET not in problem


@pytest.mark.parametrize("value", [" Bearer x", "Bearer x ", "Bearer x\t"])
def test_a_value_with_outer_whitespace_is_named(value: str) -> None:
    assert _problems({"Authorization": value}) == [
        "providers.oa.headers.Authorization: a header value must not start or end with a "
        "space or tab"
    ]


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("Bad Header", "Bad Header"),
        ("", '""'),
        ("X-Colon:", "X-Colon:"),
        ("X(paren)", "X(paren)"),
        ("X-Café", "X-Café"),
        ("X\r\nEvil", '"X\\r\\nEvil"'),
    ],
)
def test_a_name_that_is_not_a_token_is_named(name: str, shown: str) -> None:
    (problem,) = _problems({name: "v"})
    assert problem.startswith(f"providers.oa.headers.{shown}: not a valid header name: ")


@pytest.mark.parametrize("name", [*sorted(CLIENT_HEADERS), "Content-Length", "HOST", "Te"])
def test_a_header_the_http_client_writes_itself_is_refused(name: str) -> None:
    (problem,) = _problems({name: "1"})
    assert problem.startswith(f"providers.oa.headers.{name}: {name} is written by the HTTP client")


def test_every_client_managed_header_is_in_the_list() -> None:
    listed = {
        "connection",
        "content-length",
        "host",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
    assert listed == CLIENT_HEADERS


def test_a_name_written_twice_in_different_case_is_named() -> None:
    problems = _problems({"X-Api-Key": "a", "Accept": "b", "x-api-key": "c", "X-API-KEY": "d"})
    assert problems == [
        'providers.oa.headers.x-api-key: the same header as "X-Api-Key" '
        "(header names are case-insensitive); keep one",
        'providers.oa.headers.X-API-KEY: the same header as "X-Api-Key" '
        "(header names are case-insensitive); keep one",
    ]


def test_every_problem_of_several_headers_is_reported_at_once() -> None:
    problems = _problems({"Bad Header": "v", "Host": "x", "X-Ok": "a\nb"})
    assert sorted(p.split(":")[0] for p in problems) == [
        "providers.oa.headers.Bad Header",
        "providers.oa.headers.Host",
        "providers.oa.headers.X-Ok",
    ]


def test_the_reviewers_yaml_is_refused() -> None:
    text = (
        "providers:\n"
        "  o: {kind: openai, base_url: 'http://127.0.0.1:9/v1', "
        'headers: {Authorization: "Bearer test\\r\\nX-Evil: 1"}}\n'
        "tiers: [cheap]\n"
        "models:\n"
        "  a: {provider: o, model_id: ok, tier: cheap, input_usd_per_mtok: 0.1, "
        "output_usd_per_mtok: 0.4}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config_text(text, "c.yaml")
    (problem,) = info.value.problems
    assert problem.startswith("providers.o.headers.Authorization: a header value must not")


ACCEPTED = {
    "Authorization": "Bearer sk-123",
    "OpenAI-Organization": "org-1",
    "x-custom_!#$%&'*+.^`|~": "a b\tc",
    "X-Empty": "",
    "X-Latin": "café",
}


async def test_accepted_headers_reach_the_upstream_as_written() -> None:
    config = parse_config(_with_headers(ACCEPTED))
    answer = {"choices": [{"message": {"content": "4"}, "finish_reason": "stop"}]}
    http = HttpClient()
    try:
        async with scripted.serve(Canned.json(answer)) as upstream:
            provider_config = config.providers["oa"].model_copy(
                update={"base_url": f"{upstream.root}/v1"}
            )
            provider = OpenAIProvider("oa", provider_config, None, http)
            request = ProviderRequest(
                "m", (Message(Role.USER, "2+2?"),), GenerationParams(), timeout_s=5
            )
            assert (await provider.complete(request)).content == "4"
            (seen,) = upstream.seen
    finally:
        await http.close()
    for name, value in ACCEPTED.items():  # non-ASCII text goes as UTF-8 (obs-text)
        assert seen.headers[name] == value


@pytest.mark.parametrize("key", [f"{SECRET}\n", f"{SECRET}\r\n", f"sk-\x00{SECRET}"])
def test_an_api_key_with_a_control_character_is_named_and_not_echoed(key: str) -> None:
    # The key goes in a header (Authorization: Bearer ...): a trailing newline from a
    # mounted Secret file failed every call with a traceback.
    config = parse_config(_with_headers({}, api_key_env="OA_KEY"))
    with pytest.raises(ConfigError) as info:
        resolve_secrets(config, {"OA_KEY": key})
    (problem,) = info.value.problems
    assert problem.startswith(
        "providers.oa.api_key_env: environment variable OA_KEY holds a control character"
    )
    assert SECRET not in problem
    assert resolve_secrets(config, {"OA_KEY": SECRET})["oa"].get_secret_value() == SECRET
