"""Config values that passed check-config and then broke `serve` or an RPC: integers past
a protobuf field's range, URLs the HTTP client cannot use, duplicate YAML keys, numbers
written as text or flags, names that are not text, and files too large to read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from quorum.server.config import load_config, load_config_text, parse_config
from quorum.server.config.load import MAX_CONFIG_BYTES
from quorum.server.errors import ConfigError
from tests.conftest import sim_config, with_model

ROOT = Path(__file__).resolve().parents[2]


def _problems(data: Any) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    return list(info.value.problems)


# ---- integers copied into protobuf fields ---------------------------------------------


@pytest.mark.parametrize("key", ["context_window", "max_output_tokens"])
@pytest.mark.parametrize("value", [2**32, 99999999999999999999999])
def test_a_token_count_past_its_proto_field_is_named(key: str, value: int) -> None:
    # context_window is ModelInfo.context_window (uint32): ListModels failed with INTERNAL.
    (problem,) = _problems(with_model(sim_config(), "flash", **{key: value}))
    assert problem.startswith(f"models.flash.{key}: Input should be less than or equal to")


def test_the_largest_context_window_fits_model_info() -> None:
    from quorum.server.catalog import build_catalog
    from quorum.server.domain import BreakerState
    from quorum.server.resilience.breakers import ProviderHealth
    from quorum.server.service.convert import model_info_pb

    config = parse_config(with_model(sim_config(), "flash", context_window=100_000_000))
    spec = build_catalog(config).models["flash"]
    health = ProviderHealth(state=BreakerState.CLOSED, failure_count=0, cooldown_remaining_s=0.0)
    assert model_info_pb(spec, health).context_window == 100_000_000


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ("limits", "requests_per_minute"),
        ("limits", "tokens_per_minute"),
    ],
)
def test_unbounded_provider_limits_are_bounded(section: str, key: str) -> None:
    data = sim_config()
    data["providers"]["sim"][section] = {key: 10**30}
    (problem,) = _problems(data)
    assert problem.startswith(f"providers.sim.{section}.{key}: Input should be less than")


def test_server_and_cache_integers_are_bounded() -> None:
    data = sim_config(server={"max_concurrent_rpcs": 10**30}, cache={"max_memory_bytes": 10**30})
    assert sorted(p.split(":")[0] for p in _problems(data)) == [
        "cache.max_memory_bytes",
        "server.max_concurrent_rpcs",
    ]


# ---- URLs ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://[::1", "not a valid URL"),
        ("http://", "has no host"),
        ("http:///v1", "has no host"),
        ("http://x:99999/v1", "not a valid URL"),
        ("http://x:abc/v1", "not a valid URL"),
        ("http://x:0/v1", "port must be within 1-65535"),
        ("http://ex ample.com/v1", "spaces or control characters"),
        ("http://example.com/v1\n", "spaces or control characters"),
        ("http://exa\x00mple.com", "spaces or control characters"),
        ("http://a<b>/v1", "not a valid host name"),
        ("http://u:p@example.com/v1", "user:password@"),
        ("http://example.com/v1?x=1", "query"),
        ("ftp://example.com", "must start with http:// or https://"),
    ],
)
def test_a_base_url_the_http_client_cannot_use_is_named(url: str, message: str) -> None:
    data = sim_config()
    data["providers"]["oa"] = {"kind": "openai", "base_url": url}
    (problem,) = _problems(data)
    assert problem.startswith("providers.oa.base_url: ")
    assert message in problem


@pytest.mark.parametrize(
    "url",
    [
        "https://api.openai.com/v1",
        "http://127.0.0.1:8080/v1/",
        "http://[::1]:8080/v1",
        "http://localhost:11434/v1",
        "https://my-resource.openai.azure.com/openai",
        "http://bücher.example/v1",
    ],
)
def test_usual_base_urls_are_accepted(url: str) -> None:
    data = sim_config()
    data["providers"]["oa"] = {"kind": "openai", "base_url": url}
    config = parse_config(data)
    assert config.providers["oa"].base_url == url.rstrip("/")


def test_the_openai_adapter_builds_from_any_accepted_base_url() -> None:
    # "http://[::1" used to pass check-config and then stop `serve` with a traceback here.
    from quorum.server.providers.openai import OpenAIProvider

    data = sim_config()
    data["providers"]["oa"] = {"kind": "openai", "base_url": "http://[::1]:9/v1"}
    config = parse_config(data)
    OpenAIProvider("oa", config.providers["oa"], None, None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://[::1", "not a valid URL"),
        ("http://", "has no host"),
        ("http://collector:99999", "not a valid URL"),
        ("http://col lector:4317", "spaces"),
        ("grpc://collector:4317", "must start with http:// or https://"),
    ],
)
def test_a_bad_tracing_endpoint_is_named(url: str, message: str) -> None:
    data = sim_config(observability={"tracing": {"otlp_endpoint": url}})
    (problem,) = _problems(data)
    assert problem.startswith("observability.tracing.otlp_endpoint: ")
    assert message in problem


@pytest.mark.parametrize(
    "url",
    [
        "redis://localhost:6379/0",
        "redis://redis",
        "rediss://:secret@redis.example:6380/1",
        "redis://user:secret@[::1]:6379",
        "unix:///run/redis/redis.sock",
        "unix:///run/redis/redis.sock?db=2",
    ],
)
def test_redis_urls_stay_valid(url: str) -> None:
    assert parse_config(sim_config(state={"redis_url": url})).state.redis_url == url


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis://", "has no host"),
        ("redis://[::1", "not a valid URL"),
        ("redis://redis:99999", "not a valid URL"),
        ("redis://red is:6379", "spaces"),
        ("redis://redis/zero", "must be a number"),
        ("unix://", "socket's path"),
        ("http://redis:6379", "must start with redis://"),
    ],
)
def test_a_bad_redis_url_is_named(url: str, message: str) -> None:
    (problem,) = _problems(sim_config(state={"redis_url": url}))
    assert problem.startswith("state.redis_url: ")
    assert message in problem


# ---- duplicate YAML keys ---------------------------------------------------------------


def test_a_duplicate_key_is_named_with_its_path_and_line() -> None:
    text = "tiers: [cheap]\nserver:\n  log_level: info\n  log_level: debug\ntiers: [a]\n"
    with pytest.raises(ConfigError) as info:
        load_config_text(text, "c.yaml")
    assert info.value.problems == (
        "c.yaml: not valid YAML (line 4, column 3): duplicate key server.log_level "
        "(first at line 3)",
    )


def test_a_duplicate_key_inside_a_list_is_named() -> None:
    text = "x:\n  - a: 1\n  - b: 1\n    b: 2\n"
    with pytest.raises(ConfigError, match=r"\(line 4, column 5\): duplicate key x\[1\]\.b"):
        load_config_text(text, "c.yaml")


def test_merge_keys_may_be_overridden_and_aliases_are_checked_once() -> None:
    text = (
        "base: &base {kind: simulated, timeout_s: 5}\n"
        "providers:\n"
        "  sim: {<<: *base, timeout_s: 9}\n"
        "  sim-b: *base\n"
    )
    # No duplicate-key error: the keys beside "<<" override the merged ones.
    with pytest.raises(ConfigError) as info:
        load_config_text(text, "c.yaml")
    assert "base: unknown key" in info.value.problems


# ---- numbers must be numbers -----------------------------------------------------------


@pytest.mark.parametrize("value", [True, "0.1", "1"])
def test_a_price_that_is_not_a_number_is_refused(value: object) -> None:
    (problem,) = _problems(with_model(sim_config(), "flash", input_usd_per_mtok=value))
    assert problem == "models.flash.input_usd_per_mtok: Input should be a valid number"


@pytest.mark.parametrize(
    ("section", "data", "path"),
    [
        ("server", {"max_messages": "10"}, "server.max_messages"),
        ("server", {"max_messages": True}, "server.max_messages"),
        ("server", {"grace_period_s": "5"}, "server.grace_period_s"),
        ("routing", {"max_failover_attempts": False}, "routing.max_failover_attempts"),
        ("cache", {"ttl_s": "60"}, "cache.ttl_s"),
        ("shadow", {"daily_budget_usd": float("inf")}, "shadow.daily_budget_usd"),
        ("budgets", {"global": {"daily_usd": float("nan")}}, "budgets.global.daily_usd"),
    ],
)
def test_numbers_in_any_section_must_be_numbers(
    section: str, data: dict[str, Any], path: str
) -> None:
    (problem,) = _problems(sim_config(**{section: data}))
    assert problem.startswith(f"{path}: ")


def test_integers_are_still_accepted_for_float_fields() -> None:
    config = parse_config(with_model(sim_config(), "flash", input_usd_per_mtok=1))
    assert config.models["flash"].input_usd_per_mtok == 1.0
    assert isinstance(config.models["flash"].input_usd_per_mtok, float)


def test_shipped_configs_still_validate() -> None:
    files = [
        ROOT / "server/quorum/server/default.yaml",
        *sorted((ROOT / "examples").glob("*.yaml")),
        *(p for p in sorted((ROOT / "deploy").rglob("quorum.yaml"))),
    ]
    assert len(files) >= 3
    for path in files:
        load_config(path)


# ---- names that are not text -----------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "kind"),
    [("123", "a number"), ("1.5", "a number"), ("null", "null"), ("true", "a boolean")],
)
def test_a_name_that_is_not_text_is_named_plainly(written: str, kind: str) -> None:
    text = (
        "providers: {sim: {kind: simulated}}\ntiers: [cheap]\nmodels:\n"
        f"  {written}: {{provider: sim, tier: cheap, input_usd_per_mtok: 1, "
        "output_usd_per_mtok: 1}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config_text(text, "c.yaml")
    assert info.value.problems[0] == (
        f"models.{written}: a name must be a string, not {kind} "
        f'(write "{written}" in quotes if that is the name)'
    )
    assert not any("[" in problem for problem in info.value.problems)


def test_a_numeric_key_is_not_shown_as_a_list_index() -> None:
    data = sim_config()
    data["models"][7] = data["models"].pop("flash")
    data["models"][7]["colour"] = "red"
    problems = _problems(data)
    assert "models.7.colour: unknown key" in problems
    assert all("[7]" not in problem for problem in problems)


def test_list_indices_still_read_in_brackets() -> None:
    (problem,) = _problems(with_model(sim_config(), "flash", capabilities=["tools", "x"]))
    assert problem.startswith("models.flash.capabilities[1]: ")


def test_an_unprintable_name_is_quoted() -> None:
    data = sim_config()
    data["providers"]["bad\x00"] = {"kind": "simulated"}
    (problem,) = _problems(data)
    assert problem.startswith('providers."bad\\u0000": not a valid name')


# ---- file size -------------------------------------------------------------------------


def test_a_config_file_over_the_limit_is_refused_before_parsing(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_text("x: [" + "1, " * (MAX_CONFIG_BYTES // 3 + 10) + "]\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.problems == (f"{path}: too large (over the 1 MiB limit of a config file)",)


def test_config_text_over_the_limit_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"\n  <config>: too large"):
        load_config_text("#" * (MAX_CONFIG_BYTES + 1))
