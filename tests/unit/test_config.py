"""Config errors: one test per bad shape, each naming its key path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from quorum.server.config import (
    default_config,
    load_config,
    load_config_text,
    parse_config,
    resolve_secrets,
)
from quorum.server.errors import ConfigError
from tests.conftest import sim_config, with_model

ROOT = Path(__file__).resolve().parents[2]


def _problems(data: Any) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    return list(info.value.problems)


def test_embedded_default_is_valid_and_simulated() -> None:
    config = default_config()
    assert set(config.tiers) == {"cheap", "mid", "premium"}
    assert all(config.providers[m.provider].kind == "simulated" for m in config.models.values())


def test_examples_are_valid() -> None:
    files = sorted((ROOT / "examples").glob("*.yaml"))
    assert files, "examples/ should hold at least one config"
    for path in files:
        load_config(path)


def test_unknown_key_is_named() -> None:
    data = with_model(sim_config(), "flash", colour="red")
    assert _problems(data) == ["models.flash.colour: unknown key"]


def test_missing_required_key_is_named() -> None:
    data = sim_config()
    del data["models"]["flash"]["input_usd_per_mtok"]
    assert _problems(data) == ["models.flash.input_usd_per_mtok: required key is missing"]


def test_unknown_provider_is_named_with_suggestion() -> None:
    data = with_model(sim_config(), "flash", provider="simm")
    (problem,) = _problems(data)
    assert problem.startswith('models.flash.provider: unknown provider "simm"')
    assert 'did you mean "sim' in problem


def test_unknown_tier_is_named() -> None:
    data = with_model(sim_config(), "mid", tier="middle")
    problems = _problems(data)
    assert any(p.startswith('models.mid.tier: unknown tier "middle"') for p in problems)


def test_tier_without_model() -> None:
    data = sim_config(tiers=["cheap", "mid", "premium", "ultra"])
    assert 'tiers: tier "ultra" has no model' in _problems(data)


def test_negative_price() -> None:
    data = with_model(sim_config(), "flash", output_usd_per_mtok=-1)
    (problem,) = _problems(data)
    assert problem.startswith("models.flash.output_usd_per_mtok:")


def test_bad_base_url() -> None:
    data = sim_config()
    data["providers"]["oa"] = {"kind": "openai", "base_url": "api.openai.com"}
    (problem,) = _problems(data)
    assert problem.startswith("providers.oa.base_url:")


def test_http_provider_needs_base_url() -> None:
    data = sim_config()
    data["providers"]["oa"] = {"kind": "anthropic"}
    assert _problems(data) == ["providers.oa.base_url: required for kind 'anthropic'"]


def test_unknown_provider_kind() -> None:
    data = sim_config()
    data["providers"]["oa"] = {"kind": "opena", "base_url": "https://x"}
    (problem,) = _problems(data)
    assert problem.startswith("providers.oa.kind:")


def test_simulated_block_on_http_model() -> None:
    data = sim_config()
    data["providers"]["oa"] = {"kind": "openai", "base_url": "https://x/v1"}
    data = with_model(data, "flash", provider="oa")
    assert "models.flash.simulated: only for models of a simulated provider" in _problems(data)


def test_unknown_baseline_model() -> None:
    data = sim_config()
    data["routing"]["baseline_model"] = "gpt-9"
    (problem,) = _problems(data)
    assert problem.startswith('routing.baseline_model: unknown model "gpt-9"')


def test_difficulty_tier_unknown() -> None:
    data = sim_config()
    data["routing"]["difficulty_tiers"]["high"] = "top"
    (problem,) = _problems(data)
    assert problem.startswith('routing.difficulty_tiers.high: unknown tier "top"')


def test_use_case_tier_unknown() -> None:
    data = sim_config()
    data["routing"]["use_cases"]["chat"] = {"tier": "fast"}
    (problem,) = _problems(data)
    assert problem.startswith('routing.use_cases.chat.tier: unknown tier "fast"')


def test_bad_capability() -> None:
    data = with_model(sim_config(), "flash", capabilities=["telepathy"])
    (problem,) = _problems(data)
    assert problem.startswith("models.flash.capabilities[0]:")


def test_skill_out_of_range() -> None:
    data = with_model(sim_config(), "flash", simulated={"skill": {"low": 1.5}})
    (problem,) = _problems(data)
    assert problem.startswith("models.flash.simulated.skill:")


def test_duplicate_tiers() -> None:
    data = sim_config(tiers=["cheap", "mid", "premium", "mid"])
    assert "tiers: names must be unique" in _problems(data)


def test_redis_url_scheme() -> None:
    data = sim_config(state={"redis_url": "localhost:6379"})
    (problem,) = _problems(data)
    assert problem.startswith("state.redis_url:")


def test_several_problems_reported_at_once() -> None:
    data = with_model(sim_config(), "flash", provider="nope", tier="nope")
    assert len(_problems(data)) == 2


def test_top_level_not_a_mapping() -> None:
    assert _problems(["a", "b"]) == ["(top level): must be a mapping of keys"]


def test_yaml_syntax_error_names_line() -> None:
    with pytest.raises(ConfigError) as info:
        load_config_text("providers: {sim: [kind: simulated\n", "bad.yaml")
    assert info.value.problems[0].startswith("bad.yaml: not valid YAML (line")


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "missing.yaml")
    assert "cannot read" in info.value.problems[0]


def test_secrets_from_environment() -> None:
    data = sim_config()
    data["providers"]["oa"] = {
        "kind": "openai",
        "base_url": "https://x/v1",
        "api_key_env": "OA_KEY",
    }
    config = parse_config(data)
    keys = resolve_secrets(config, {"OA_KEY": "sk-test"})
    assert keys["oa"].get_secret_value() == "sk-test"
    assert "sk-test" not in repr(keys)
    with pytest.raises(ConfigError) as info:
        resolve_secrets(config, {})
    assert info.value.problems == (
        "providers.oa.api_key_env: environment variable OA_KEY is not set",
    )


def test_list_items_are_named_in_brackets_as_the_cross_reference_checks_name_them() -> None:
    # Validation named list items "capabilities.1", the cross-reference checks
    # "cascade.tiers[1]"; both now write the index in brackets.
    data = with_model(sim_config(), "flash", capabilities=["streaming", "telepathy"])
    (problem,) = _problems(data)
    assert problem.startswith("models.flash.capabilities[1]: Input should be ")
    data = sim_config()
    data["routing"]["cascade"] = {"tiers": ["cheap", "gold"]}
    (problem,) = _problems(data)
    assert problem.startswith('routing.cascade.tiers[1]: unknown tier "gold"')


def test_validator_messages_have_no_pydantic_prefix() -> None:
    data = sim_config(tenants={"support-bot": {"token_sha256": "abc"}})
    (problem,) = _problems(data)
    assert problem.startswith("tenants.support-bot.token_sha256: must be the 64-character")
    assert "Value error" not in problem


def test_assertion_messages_have_no_pydantic_prefix() -> None:
    from pydantic import BaseModel, ValidationError, field_validator

    from quorum.server.config.load import _format_pydantic

    class Item(BaseModel):
        size: int

        @field_validator("size")
        @classmethod
        def _small(cls, value: int) -> int:
            if value >= 10:  # not `assert`: pytest would rewrite its message
                raise AssertionError("must be below 10")
            return value

    class Outer(BaseModel):
        items: dict[str, list[Item]]

    with pytest.raises(ValidationError) as info:
        Outer.model_validate({"items": {"a": [{"size": 1}, {"size": 12}]}})
    assert _format_pydantic(info.value) == ["items.a[1].size: must be below 10"]


@pytest.mark.parametrize("key", ["max_connection_age_s", "max_connection_age_grace_s"])
@pytest.mark.parametrize("value", [2_592_000, float("inf")])  # 30 days; .inf in YAML
def test_a_connection_age_past_what_grpc_takes_is_named(key: str, value: float) -> None:
    # These passed check-config, then `quorum serve` died with an OverflowError traceback:
    # gRPC takes them as 32-bit milliseconds (about 24.8 days at most).
    (problem,) = _problems(sim_config(server={key: value}))
    assert problem.startswith(f"server.{key}: must be at most 2073600 (24 days)")


def test_the_longest_connection_ages_build_a_grpc_server() -> None:
    from concurrent import futures

    import grpc

    from quorum.server.app import server_options

    longest = {"max_connection_age_s": 2_073_600, "max_connection_age_grace_s": 2_073_600}
    config = parse_config(sim_config(server=longest))
    server = grpc.server(futures.ThreadPoolExecutor(1), options=server_options(config))
    server.stop(None)


@pytest.mark.parametrize(
    "value",
    ["2024-13-45", "!!int abc", "!!bool maybe", "9" * 5000],
    ids=["date", "int", "bool", "huge"],
)
def test_a_yaml_value_that_cannot_be_read_is_named_by_its_place(value: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config_text(f"server:\n  grace_period_s: {value}\n", "c.yaml")
    assert info.value.problems[0].startswith("c.yaml: not valid YAML (line 2, column 19)")


def test_yaml_nested_too_deeply_is_an_error_not_a_crash() -> None:
    with pytest.raises(ConfigError, match="nested too deeply"):
        load_config_text("x: " + "[" * 2000 + "]" * 2000, "c.yaml")
