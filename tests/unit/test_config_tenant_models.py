"""A tenant its plan and lists leave with no model is a config error that check-config
reports, not only serve: ``models: [a], tiers: [premium]`` passed check-config, then
serve exited 2 with ``tenants.t1: no model is left ...``."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest

from quorum.server import cli
from quorum.server.catalog import build_catalog
from quorum.server.config import Config, builtin_plans, parse_config
from quorum.server.errors import ConfigError
from quorum.server.tenants import compile_tenants
from tests.conftest import sim_config

DIGEST = "a" * 64
NO_MODEL = "no model is left once plan {plan!r} and the tenant's models/tiers lists are applied"


def _data(plans: dict[str, Any] | None = None, **tenant: Any) -> dict[str, Any]:
    return sim_config(plans=plans or {}, tenants={"t1": {"token_sha256": DIGEST, **tenant}})


def _problems(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    return list(info.value.problems)


@pytest.mark.parametrize(
    ("tenant", "plan"),
    [
        ({"models": ["flash"], "tiers": ["premium"]}, "pro"),  # the reviewer's case
        ({"models": []}, "pro"),
        ({"tiers": []}, "pro"),
        ({"models": [], "tiers": []}, "pro"),
        ({"plan": "free", "tiers": ["premium"]}, "free"),
        ({"plan": "free", "models": ["frontier"]}, "free"),
    ],
)
def test_a_tenant_left_with_no_model_is_named_by_the_config_checks(
    tenant: dict[str, Any], plan: str
) -> None:
    assert _problems(_data(**tenant)) == [f"tenants.t1: {NO_MODEL.format(plan=plan)}"]


def test_a_redefined_plan_counts_not_the_built_in_one() -> None:
    narrow = {"pro": {"max_tier": "cheap"}}
    assert _problems(_data(narrow, models=["mid"])) == [
        f"tenants.t1: {NO_MODEL.format(plan='pro')}"
    ]
    wide = {"free": {"max_tier": "premium"}}  # free redefined: premium models allowed
    assert parse_config(_data(wide, plan="free", models=["frontier"])).tenants["t1"]


def test_an_unknown_plan_or_model_is_named_for_itself() -> None:
    assert _problems(_data(plan="gold")) == [
        'tenants.t1.plan: unknown plan "gold" (known: enterprise, free, pro)'
    ]
    # An unknown name leaves nothing as well: both are said.
    assert [p.split(":")[0] for p in _problems(_data(models=["flsh"]))] == [
        "tenants.t1.models",
        "tenants.t1",
    ]


def _unchecked(data: dict[str, Any]) -> Config:
    """The config as serve's tenant compiler would get it, had the checks not run."""
    return Config.model_validate(data)


def test_serve_still_refuses_a_config_that_skipped_the_checks() -> None:
    cfg = _unchecked(_data(models=["flash"], tiers=["premium"]))
    with pytest.raises(ConfigError) as info:
        compile_tenants(cfg, build_catalog(cfg))
    assert info.value.problems == (f"tenants.t1: {NO_MODEL.format(plan='pro')}",)


MODELS = [None, [], ["flash"], ["mid"], ["frontier"], ["flash", "frontier"]]
TIERS = [None, [], ["cheap"], ["mid"], ["premium"], ["mid", "premium"]]
PLANS = [
    ("pro", {}),
    ("free", {}),
    ("pro", {"pro": {"max_tier": "mid"}}),
    ("pro", {"pro": {"max_tier": "cheap", "use_cases": {"autocomplete": {"max_tier": "cheap"}}}}),
]


@pytest.mark.parametrize(("plan", "plans"), PLANS)
def test_check_config_refuses_exactly_what_serve_refuses(plan: str, plans: dict[str, Any]) -> None:
    # Whatever the checks accept, the tenant compiler serve runs accepts too, and the
    # reverse: one rule, said once at load.
    for models, tiers in itertools.product(MODELS, TIERS):
        tenant: dict[str, Any] = {"plan": plan, "models": models, "tiers": tiers}
        data = _data(plans, **{k: v for k, v in tenant.items() if v is not None})
        try:
            parse_config(data)
            problems: tuple[str, ...] = ()
        except ConfigError as exc:
            problems = exc.problems
        checks_refuse = bool(problems)
        assert problems in ((), (f"tenants.t1: {NO_MODEL.format(plan=plan)}",)), tenant
        cfg = _unchecked(data)
        try:
            compile_tenants(cfg, build_catalog(cfg))
            serve_refuses = False
        except ConfigError:
            serve_refuses = True
        assert checks_refuse == serve_refuses, tenant


def test_the_built_in_plans_are_the_ones_serve_uses() -> None:
    from quorum.server.tenants import builtin_plans as serve_plans

    cfg = parse_config(sim_config())
    assert serve_plans(cfg) == builtin_plans(cfg.tiers)
    assert builtin_plans(cfg.tiers)["free"].max_tier == "cheap"


def test_check_config_exits_1_naming_the_tenant(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(
        "providers: {sim: {kind: simulated}}\n"
        "tiers: [cheap, premium]\n"
        "models:\n"
        "  a: {provider: sim, tier: cheap, input_usd_per_mtok: 0.1, output_usd_per_mtok: 0.4}\n"
        "  b: {provider: sim, tier: premium, input_usd_per_mtok: 5, output_usd_per_mtok: 25}\n"
        "auth: {mode: disabled}\n"
        f"tenants: {{t1: {{token_sha256: '{DIGEST}', models: [a], tiers: [premium]}}}}\n"
    )
    capsys.readouterr()
    assert cli.main(["check-config", str(path)]) == 1
    assert f"tenants.t1: {NO_MODEL.format(plan='pro')}" in capsys.readouterr().err
