"""Tenant policies, token verification and the config shapes of tenants, auth and plans."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import pytest

from quorum.server.catalog import build_catalog
from quorum.server.config import Config, parse_config
from quorum.server.domain import (
    GenerationParams,
    Hints,
    Message,
    Role,
    RouteRequest,
    Sensitivity,
    Strategy,
    Tool,
)
from quorum.server.errors import ConfigError, PermissionDenied, Unauthenticated
from quorum.server.service.auth import (
    MAX_TOKEN_CHARS,
    TokenVerifier,
    bearer_token,
    token_digest,
    token_digests,
    token_too_long,
)
from quorum.server.tenants import (
    ANONYMOUS,
    Tenants,
    cheapest_tier,
    check_request,
    compile_tenants,
    with_tenant_defaults,
)
from tests.conftest import sim_config

DIGEST = hashlib.sha256(b"secret-token").hexdigest()


def config(**overrides: Any) -> Config:
    return parse_config(sim_config(**overrides))


def request(**hints: Any) -> RouteRequest:
    return RouteRequest("r", (Message(Role.USER, "hi"),), hints=Hints(**hints))


def problems(**overrides: Any) -> tuple[str, ...]:
    with pytest.raises(ConfigError) as info:
        config(**overrides)
    return info.value.problems


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"auth": {"mode": "tokens"}}, "auth.mode: tokens needs at least one tenant under tenants"),
        (
            {"auth": {"token_hash": "hmac_sha256"}},
            "auth.hash_key_env: required when auth.token_hash is hmac_sha256",
        ),
        ({"tenants": {"a": {}}}, "tenants.a: set token_sha256 or token_sha256_env"),
        (
            {"tenants": {"a": {"token_sha256": "abc"}}},
            "tenants.a.token_sha256: must be the 64-character lowercase hex",
        ),
        (
            {"tenants": {"a": {"token_sha256": DIGEST}, "b": {"token_sha256": DIGEST}}},
            "tenants.b.token_sha256: same token as tenants.a",
        ),
        (
            {"tenants": {"a": {"token_sha256": DIGEST, "plan": "gold"}}},
            'tenants.a.plan: unknown plan "gold" (known: enterprise, free, pro)',
        ),
        (
            {"tenants": {"a": {"token_sha256": DIGEST, "models": ["flsh"]}}},
            'tenants.a.models: unknown model "flsh"',
        ),
        (
            {"tenants": {"a": {"token_sha256": DIGEST, "tiers": ["gold"]}}},
            'tenants.a.tiers: unknown tier "gold"',
        ),
        (
            {"tenants": {"a": {"token_sha256": DIGEST, "agents": ["x"]}}},
            'tenants.a.agents: unknown agent "x"',
        ),
        ({"tenants": {"a": {"token_sha256": DIGEST, "colour": "red"}}}, "tenants.a.colour"),
        ({"plans": {"gold": {"max_tier": "top"}}}, 'plans.gold.max_tier: unknown tier "top"'),
        (
            {"plans": {"gold": {"use_cases": {"chat": {}}}}},
            'plans.gold.use_cases.chat: unknown use case "chat"',
        ),
        ({"budgets": {"global": {"daily_usd": -1}}}, "budgets.global.daily_usd: "),
        ({"budgets": {"soft_limit_ratio": 1.5}}, "budgets.soft_limit_ratio: "),
        ({"cache": {"ttl_s": 0}}, "cache.ttl_s: "),
        ({"observability": {"metrics_address": "nine"}}, "observability.metrics_address: "),
        (
            {"observability": {"tracing": {"otlp_endpoint": "collector:4317"}}},
            "observability.tracing.otlp_endpoint: must start with http://",
        ),
        ({"admission": {"max_inflight": 0}}, "admission.max_inflight: "),
    ],
)
def test_each_bad_shape_names_its_key(overrides: dict[str, Any], expected: str) -> None:
    assert any(p.startswith(expected) for p in problems(**overrides)), problems(**overrides)


def test_free_plan_keeps_to_the_cheapest_tier_and_no_consensus() -> None:
    cfg = config(tenants={"f": {"token_sha256": DIGEST, "plan": "free"}})
    (policy,) = compile_tenants(cfg, build_catalog(cfg)).values()
    assert set(policy.catalog.models) == {"flash", "flash-b"}
    assert policy.catalog.tiers == ("cheap", "mid", "premium")  # ranks unchanged
    assert policy.catalog.baseline.name == "frontier"  # savings still against premium
    assert not policy.allows_strategy(Strategy.CONSENSUS_MAJORITY)
    assert policy.allows_strategy(Strategy.AUTO) and policy.allows_strategy(Strategy.SINGLE)


def test_plans_key_on_the_use_case_and_intersect_with_the_tenant() -> None:
    cfg = config(
        plans={
            "pro": {"use_cases": {"autocomplete": {"max_tier": "cheap", "strategies": ["single"]}}}
        },
        tenants={"p": {"token_sha256": DIGEST, "models": ["flash", "mid", "frontier"]}},
    )
    (policy,) = compile_tenants(cfg, build_catalog(cfg)).values()
    assert set(policy.catalog.models) == {"flash", "mid", "frontier"}
    assert set(policy.catalog_for("autocomplete").models) == {"flash"}
    assert policy.strategies_for("autocomplete") == frozenset({Strategy.SINGLE})
    assert cheapest_tier(policy.catalog_for("legal_review")) == "cheap"


def test_a_tenant_left_with_no_model_is_a_config_error() -> None:
    tenants = {"f": {"token_sha256": DIGEST, "plan": "free", "tiers": ["premium"]}}
    # The config checks say it (so check-config does), and compile_tenants still refuses a
    # config that skipped them.
    assert problems(tenants=tenants)[0].startswith("tenants.f: no model is left")
    cfg = Config.model_validate(sim_config(tenants=tenants))
    with pytest.raises(ConfigError) as info:
        compile_tenants(cfg, build_catalog(cfg))
    assert info.value.problems[0].startswith("tenants.f: no model is left")


def test_check_request_names_everything_denied() -> None:
    cfg = config(
        agents={"support": {}},
        tenants={
            "f": {"token_sha256": DIGEST, "plan": "free", "agents": [], "tools": ["lookup"],
                  "use_cases": []},
        },
    )  # fmt: skip
    (policy,) = compile_tenants(cfg, build_catalog(cfg)).values()
    req = RouteRequest(
        "r",
        (Message(Role.USER, "hi"),),
        GenerationParams(tools=(Tool("lookup"), Tool("rm_rf"))),
        Hints(
            model="frontier",
            tier="mid",
            strategy=Strategy.CONSENSUS_JUDGE,
            agent="support",
            use_case="autocomplete",
        ),
    )
    with pytest.raises(PermissionDenied) as info:
        check_request(policy, req)
    assert info.value.message == (
        "tenant f (plan free) may not use: use case autocomplete, model frontier, tier mid, "
        "strategy consensus_judge, agent support, tool rm_rf"
    )
    check_request(policy, request(model="flash"))  # allowed: no error


def test_tenant_defaults_fill_only_what_the_request_left_open() -> None:
    cfg = config(tenants={"v": {"token_sha256": DIGEST, "default_sensitivity": "restricted"}})
    (policy,) = compile_tenants(cfg, build_catalog(cfg)).values()
    assert with_tenant_defaults(policy, request()).hints.sensitivity is Sensitivity.RESTRICTED
    public = with_tenant_defaults(policy, request(sensitivity=Sensitivity.PUBLIC))
    assert public.hints.sensitivity is Sensitivity.PUBLIC
    assert public.tenant == "v"


def test_bearer_tokens_and_digests() -> None:
    assert bearer_token("Bearer abc") == "abc"
    assert bearer_token("bearer   abc  ") == "abc"
    assert bearer_token(b"Bearer abc") == "abc"
    assert bearer_token("Basic abc") is None
    assert bearer_token("Bearer a b") is None
    assert bearer_token(None) is None
    assert token_digest("t") == hashlib.sha256(b"t").hexdigest()
    assert token_digest("t", b"k") == hmac.new(b"k", b"t", hashlib.sha256).hexdigest()
    verifier = TokenVerifier({token_digest("t", b"k"): "acme"}, b"k")
    assert verifier.verify("Bearer t") == "acme"
    for bad in (None, "Bearer u", "t"):
        with pytest.raises(Unauthenticated):
            verifier.verify(bad)


@pytest.mark.parametrize("chars", [MAX_TOKEN_CHARS + 1, MAX_TOKEN_CHARS + 10, 7000, 100_000])
@pytest.mark.parametrize("as_bytes", [False, True])
def test_a_token_too_long_is_named_too_long_not_missing(chars: int, as_bytes: bool) -> None:
    token = "x" * chars
    text = f"Bearer {token}"
    value: str | bytes = text.encode() if as_bytes else text
    assert bearer_token(value) is None  # never hashed
    assert token_too_long(value)
    with pytest.raises(Unauthenticated) as info:
        TokenVerifier({token_digest(token): "acme"}).verify(value)
    message = info.value.message
    assert message.startswith("bearer token too long")
    assert f"at most {MAX_TOKEN_CHARS} characters" in message
    assert "missing" not in message
    assert "xxxxxxxx" not in message  # the token is never echoed


def test_a_token_at_the_limit_is_looked_up_and_others_are_not_too_long() -> None:
    token = "y" * MAX_TOKEN_CHARS
    verifier = TokenVerifier({token_digest(token): "acme"})
    assert verifier.verify(f"Bearer {token}") == "acme"
    assert verifier.verify(f"  bearer   {token}  ") == "acme"
    # What is not a bearer token at all, and short enough to tell, is still "missing".
    for value in (None, "", "Bearer ", "Basic " + "z" * MAX_TOKEN_CHARS):
        assert not token_too_long(value)
        with pytest.raises(Unauthenticated) as info:
            verifier.verify(value)
        assert info.value.message.startswith("missing credentials")


def test_token_digests_come_from_config_and_environment() -> None:
    other = hashlib.sha256(b"rotated").hexdigest()
    cfg = config(
        tenants={
            "a": {"token_sha256": DIGEST},
            "b": {"token_sha256_env": "B_TOKENS"},
        }
    )
    assert token_digests(cfg, {"B_TOKENS": f"{other}, {other.upper()[:0]}"}) == {
        DIGEST: "a",
        other: "b",
    }
    for environ, expected in (
        ({}, "tenants.b.token_sha256_env: environment variable B_TOKENS is not set"),
        ({"B_TOKENS": "xyz"}, "tenants.b.token_sha256_env: environment variable B_TOKENS must"),
        ({"B_TOKENS": DIGEST}, "tenants.b: same token as tenants.a"),
    ):
        with pytest.raises(ConfigError) as info:
            token_digests(cfg, environ)
        assert info.value.problems[0].startswith(expected)


def test_resolving_the_tenant_of_a_request() -> None:
    cfg = config(tenants={"a": {"token_sha256": DIGEST}})
    tenants = Tenants(cfg, build_catalog(cfg), environ={})
    assert tenants.auth_required
    acme = tenants.authenticate("Bearer secret-token")
    assert acme is not None and acme.name == "a"
    assert tenants.for_request(acme, "") is acme
    assert tenants.for_request(acme, "a") is acme
    with pytest.raises(PermissionDenied):
        tenants.for_request(acme, "b")
    with pytest.raises(Unauthenticated):
        tenants.for_request(None, "a")
    open_cfg = config(auth={"mode": "disabled"}, tenants={"a": {}})
    open_tenants = Tenants(open_cfg, build_catalog(open_cfg))
    assert open_tenants.authenticate() is None
    assert open_tenants.for_request(None, "").name == ANONYMOUS
    assert open_tenants.for_request(None, "a").name == "a"
    with pytest.raises(PermissionDenied):
        open_tenants.for_request(None, "zzz")
    no_tenants = Tenants(config(), build_catalog(config()))
    assert not no_tenants.auth_required
    assert no_tenants.for_request(None, "whatever").name == ANONYMOUS
