"""The ``model`` naming scheme: which names mean "let Quorum route", and with what hints.

``model`` is one of:

* ``quorum:auto`` — classify, plan and route with the server's policy;
* ``quorum:<agent>`` — a configured agent (``agents``), e.g. ``quorum:email_assistant``:
  its system prompt, tools and models, the tier chosen by difficulty;
* ``quorum:<use-case>`` — a configured use case (``routing.use_cases``), e.g.
  ``quorum:legal_review``;
* ``quorum:<tier>`` — any model of a tier (cheapest first, failing over upwards), e.g.
  ``quorum:cheap``;
* a configured model name, e.g. ``sim-mid`` — that model first, failing over to others
  with the same capabilities.

A ``quorum:`` name may carry routing hints as a query string, e.g.
``quorum:auto?strategy=cascade&priority=quality&max_cost_usd=0.01``. The same hints may
be given as the body's ``quorum`` object (``extra_body={"quorum": {...}}`` in the OpenAI
SDKs); the two are merged, and a hint given both ways with different values is an error.
Hint keys: ``strategy``, ``priority``, ``tier``, ``use_case``, ``agent``, ``task``,
``max_cost_usd``, ``sensitivity``, ``required_capabilities``, ``critical``,
``consensus_size``, ``allow_cache``.

A query string has only text, so its values are first read as the JSON values the
``quorum`` object would carry (:func:`_query_value`: ``critical=true`` is the boolean,
``max_cost_usd=0.01`` the number, ``required_capabilities=tools,vision`` the list), then
both are checked by the same rules, which take JSON types as OpenAI does: a flag is
``true`` or ``false``, a number is a number, never a string that Python could read as one.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import field
from typing import Any
from urllib.parse import parse_qsl

from quorum.server.catalog import Catalog
from quorum.server.domain import Capability, Hints, Priority, Sensitivity, Strategy
from quorum.server.errors import NotFound, clip, echo
from quorum.server.frontdoor.errors import Violations
from quorum.server.names import NAME, NAME_RULE
from quorum.server.policy import RoutingPolicy
from quorum.server.values import value_type

PREFIX = "quorum:"
AUTO = "auto"
MAX_CONSENSUS_SIZE = 16
#: An unknown ``model`` is echoed in its 404 (message and metadata) only this far: it may
#: be megabytes long. Room for any configured name with the prefix and a short query.
MAX_MODEL_ECHO_CHARS = 128
# A number as a query string writes it: ASCII digits, a point, an exponent. Not what
# float() also takes: "1_0" (10), "١" (1), " 1 ", "nan", "infinity".
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", re.ASCII)
# Longer digit strings stay text, refused as not an integer: int() of one over 4300 digits
# raises, with Python's advice on its limit as the message; none is a consensus size.
_MAX_INTEGER_DIGITS = 8


@value_type
class Target:
    """What ``model`` (and the ``quorum`` object) asked for."""

    hints: Hints
    # Where each hint came from ("model" or "quorum.<key>"), for errors naming the field.
    origins: Mapping[str, str] = field(default_factory=dict)


def _choices(enum_type: type[Strategy | Priority | Sensitivity | Capability]) -> str:
    return ", ".join(m.value if isinstance(m.value, str) else m.name.lower() for m in enum_type)


def _enum(raw: Any, enum_type: type[Any]) -> Any:
    if not isinstance(raw, str):
        raise ValueError(f"must be a string, one of {_choices(enum_type)}")
    for member in enum_type:
        if raw.lower() in (member.name.lower(), str(member.value)):
            return member
    raise ValueError(f"unknown value {raw!r}; one of {_choices(enum_type)}")


def _text(raw: Any) -> str:
    if not isinstance(raw, str) or not NAME.fullmatch(raw):
        raise ValueError(NAME_RULE)
    return raw


def _number(raw: Any) -> float:
    """A JSON number (not a string, not a boolean), finite and not negative."""
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise ValueError("must be a number")
    try:
        value = float(raw)
    except OverflowError:  # an int too large for a float
        value = math.inf
    if not math.isfinite(value) or value < 0:
        raise ValueError("must be a finite number >= 0")
    return value


def _integer(raw: Any) -> int:
    """A JSON integer (not 3.0, not a boolean) that is a consensus size."""
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise ValueError("must be an integer")
    if raw == 1 or not 0 <= raw <= MAX_CONSENSUS_SIZE:
        raise ValueError(
            f"must be 0 (the configured size) or 2-{MAX_CONSENSUS_SIZE}: a vote needs two"
        )
    return raw


def _flag(raw: Any) -> bool:
    """A JSON boolean: OpenAI refuses 0, "yes" and the like rather than guess."""
    if isinstance(raw, bool):
        return raw
    raise ValueError("must be true or false")


def _capabilities(raw: Any) -> frozenset[Capability]:
    if not isinstance(raw, list):
        raise ValueError("must be a list of capabilities")
    return frozenset(_enum(item, Capability) for item in raw if item)


def _query_value(key: str, text: str) -> Any:
    """A query-string value as the JSON value the ``quorum`` object would carry for
    ``key``; text that is not one stays text, for the key's own check to refuse."""
    if key in ("critical", "allow_cache"):
        return {"true": True, "false": False}.get(text.lower(), text)
    if key == "max_cost_usd" and _DECIMAL.fullmatch(text):
        return float(text)
    if key == "consensus_size" and text.isascii() and text.isdigit():
        return int(text) if len(text) <= _MAX_INTEGER_DIGITS else text
    if key == "required_capabilities":
        return text.split(",")
    return text


_PARSERS: Mapping[str, Callable[[Any], Any]] = {
    "strategy": lambda raw: _enum(raw, Strategy),
    "priority": lambda raw: _enum(raw, Priority),
    "sensitivity": lambda raw: _enum(raw, Sensitivity),
    "tier": _text,
    "use_case": _text,
    "agent": _text,
    "task": _text,
    "max_cost_usd": _number,
    "required_capabilities": _capabilities,
    "critical": _flag,
    "consensus_size": _integer,
    "allow_cache": _flag,
}


def _hint_values(
    raw: Mapping[str, Any], violations: Violations, *, in_query: bool
) -> dict[str, tuple[Any, str]]:
    """Parse hint values; returns key → (value, origin). The origin is ``model`` for the
    query string, where a violation's description then says which hint it is about, and
    ``quorum.<key>`` for the body's object."""
    out: dict[str, tuple[Any, str]] = {}
    for key, value in raw.items():
        origin = "model" if in_query else f"quorum.{key}"
        named = f" {echo(key)}" if in_query else ""
        parser = _PARSERS.get(key)
        if parser is None:
            known = ", ".join(_PARSERS)
            violations.add(origin, f"unknown hint{named}; known: {known}")
            continue
        try:
            out[key] = (parser(value), origin)
        except ValueError as exc:
            violations.add(origin, f"hint{named} {exc}" if named else str(exc))
    return out


def resolve(
    model: str,
    extension: Mapping[str, Any],
    catalog: Catalog,
    policy: RoutingPolicy,
    agents: Collection[str] = (),
) -> Target:
    """Turn ``model`` and the ``quorum`` object into routing hints.

    Raises :class:`NotFound` (param ``model``) for a name that is neither a configured
    model nor a ``quorum:`` route, and :class:`InvalidRequest` for bad hints.
    """
    violations = Violations()
    query: dict[str, str] = {}
    base: dict[str, Any] = {}
    if model.startswith(PREFIX):
        route, _, query_text = model[len(PREFIX) :].partition("?")
        if route in agents:
            base["agent"] = route
        elif route in policy.use_cases:
            base["use_case"] = route
        elif route in catalog.tiers:
            base["tier"] = route
        elif route != AUTO:
            raise _unknown(model)
        pairs = parse_qsl(query_text, keep_blank_values=True)
        for key, value in pairs:
            if key in query:
                violations.add("model", f"hint {key!r} given twice")
            query[key] = value
    elif model in catalog.models:
        base["model"] = model
    else:
        raise _unknown(model)

    typed = {key: _query_value(key, text) for key, text in query.items()}
    values = _hint_values(typed, violations, in_query=True)
    from_body = _hint_values(extension, violations, in_query=False)
    for key, (value, origin) in from_body.items():
        if key in values and values[key][0] != value:
            violations.add(origin, f"conflicts with {key}={query[key]} in model")
        values[key] = (value, origin)
    for key, value in base.items():
        if key in values:
            violations.add(values[key][1], f"{key} is already set by model")
        values[key] = (value, "model")

    def get(key: str, default: Any) -> Any:
        return values[key][0] if key in values else default

    tier = get("tier", "")
    use_case = get("use_case", "")
    forced = get("model", "")
    agent = get("agent", "")
    if agent and agent not in agents:
        known = _join(sorted(agents)) or "none configured"
        violations.add(values["agent"][1], f"unknown agent {agent!r} (known: {known})")
    if tier and tier not in catalog.tiers:
        violations.add(values["tier"][1], f"unknown tier {tier!r} (known: {_join(catalog.tiers)})")
    if use_case and use_case not in policy.use_cases:
        violations.add(
            values["use_case"][1],
            f"unknown use case {use_case!r} (known: {_join(policy.use_cases) or 'none'})",
        )
    if forced and tier and tier in catalog.tiers and catalog.models[forced].tier != tier:
        violations.add(
            values["tier"][1], f"model {forced!r} is in tier {catalog.models[forced].tier!r}"
        )
    if violations.total:
        raise violations.error()
    hints = Hints(
        strategy=get("strategy", Strategy.AUTO),
        priority=get("priority", Priority.BALANCED),
        task=get("task", ""),
        agent=agent,
        use_case=use_case,
        required_capabilities=get("required_capabilities", frozenset()),
        max_cost_usd=get("max_cost_usd", None),
        model=forced,
        tier=tier,
        sensitivity=get("sensitivity", None),
        critical=get("critical", False),
        consensus_size=get("consensus_size", 0),
        allow_cache=get("allow_cache", False),
    )
    return Target(hints, {key: origin for key, (_, origin) in values.items()})


def _join(names: Any) -> str:
    return ", ".join(names)


def unknown_model(model: str, message: str) -> NotFound:
    """A 404 (param ``model``) about ``model``; the name is clipped, in the message
    (``{model}`` in ``message``) and in the metadata, so that a caller's megabytes are
    not echoed, doubled, in the answer and the log."""
    shown = clip(model, MAX_MODEL_ECHO_CHARS)
    return NotFound(message.format(model=shown), metadata={"param": "model", "model": shown})


def _unknown(model: str) -> NotFound:
    # The configured names are not listed: a tenant may not be allowed to see them all;
    # GET /v1/models lists the caller's own.
    return unknown_model(
        model,
        "The model `{model}` does not exist or you do not have access to it "
        "(GET /v1/models lists the models you may use; `quorum:auto` lets Quorum choose)",
    )


def model_entries(
    catalog: Catalog, use_cases: Collection[str], agents: Collection[str] = ()
) -> list[tuple[str, str, str]]:
    """Every name ``model`` accepts, as (id, kind, owner): routes first, in the order
    :func:`resolve` looks them up, each name once; tiers only when they hold a model."""
    tiers = [tier for tier in catalog.tiers if catalog.by_tier.get(tier)]
    routes: dict[str, str] = {AUTO: "route"}
    for kind, names in (("agent", agents), ("use_case", use_cases), ("tier", tiers)):
        for name in names:
            routes.setdefault(name, kind)
    entries = [(PREFIX + name, kind, "quorum") for name, kind in routes.items()]
    entries += [(spec.name, "model", spec.provider) for spec in catalog.ordered()]
    return entries
