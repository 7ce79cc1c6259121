"""Loading: YAML text or a file to a validated :class:`Config`, the embedded default,
and the providers' API keys from the environment."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import SecretStr, ValidationError

from quorum.server.config.checks import cross_reference_problems
from quorum.server.config.providers import has_control_characters
from quorum.server.config.root import Config
from quorum.server.errors import ConfigError

# What pydantic puts before the message of an error raised by a validator.
_VALIDATOR_PREFIXES = ("Value error, ", "Assertion failed, ")


def _key_text(key: object) -> str:
    """A mapping key as it was written in YAML: ``123``, ``null``, ``true``; quoted when
    it holds characters a terminal would not show."""
    if key is None:
        return "null"
    if isinstance(key, bool):
        return "true" if key else "false"
    text = str(key)
    if not text or not text.isprintable() or text != text.strip():
        return json.dumps(text)
    return text


def _key_path(loc: tuple[int | str, ...], data: Any = None) -> str:
    """A pydantic error location as the key path the cross-reference checks write:
    ``models.fast.capabilities[0]``, list indices in brackets.

    ``data`` (the validated input) tells a list index from a mapping key that is a
    number (``models: {123: ...}`` is ``models.123``, not ``models[123]``) and gives back
    keys pydantic wrote as text (``None``); pydantic's ``[key]`` marker (the key itself
    is wrong) is left out."""
    path = ""
    node: Any = data
    for part in loc:
        if part == "[key]":
            break
        key: object = part
        if isinstance(node, Mapping):
            # The key as written: pydantic gives true as 1 and None or 1.5 as text.
            key = next((k for k in node if k == part), None)
            if key is None:
                key = next((k for k in node if str(k) == str(part)), part)
            text = _key_text(key)
            path += f".{text}" if path else text
        elif isinstance(part, int):
            path += f"[{part}]"
        else:
            text = _key_text(part)
            path += f".{text}" if path else text
        try:
            node = node[key]
        except (KeyError, IndexError, TypeError):
            node = None
    return path or "(top level)"


def _format_pydantic(error: ValidationError, data: Any = None) -> list[str]:
    problems = []
    for item in error.errors():
        loc = item["loc"]
        path = _key_path(loc, data)
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown key"
        elif item["type"] == "missing":
            message = "required key is missing"
        for prefix in _VALIDATOR_PREFIXES:
            message = message.removeprefix(prefix)
        if loc and loc[-1] == "[key]":
            key = item.get("input")
            if not isinstance(key, str):
                message = (
                    f"a name must be a string, not {_yaml_type(key)} "
                    f'(write "{_key_text(key)}" in quotes if that is the name)'
                )
            elif item["type"] != "value_error":  # a validator's own message says it all
                message = f"not a valid name ({message})"
        problems.append(f"{path}: {message}")
    return problems


def _yaml_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return f"a {type(value).__name__}"


def parse_config(data: Any) -> Config:
    """Validate already-parsed YAML data; raises :class:`ConfigError` naming key paths."""
    if not isinstance(data, Mapping):
        raise ConfigError(["(top level): must be a mapping of keys"])
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_pydantic(exc, data)) from None
    problems = cross_reference_problems(config)
    if problems:
        raise ConfigError(problems)
    return config


# Hundreds of times any real config; PyYAML's safe loader reads about 1 MB in seconds,
# so a 50 MB file would hold `check-config` and `serve` for minutes.
MAX_CONFIG_BYTES = 1024 * 1024

_MERGE_TAG = "tag:yaml.org,2002:merge"


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, with a value it cannot build (``2024-13-45`` as a date,
    ``!!int abc``, an integer of thousands of digits) reported at its place like a
    syntax error, where the safe loader raised a bare ValueError or KeyError; and a key
    written twice in one mapping refused, where the safe loader kept the last."""

    def construct_document(self, node: yaml.Node) -> Any:
        _check_duplicate_keys(node)
        return super().construct_document(node)

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (ValueError, KeyError, TypeError, OverflowError) as exc:
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read this value ({type(exc).__name__})", node.start_mark
            ) from None


def _check_duplicate_keys(root: yaml.Node) -> None:
    """Raise a ConstructorError at the first (in the text) of keys written twice in one
    mapping, naming its key path. Each node is visited once (aliases share nodes), and
    without recursion."""
    seen_nodes: set[int] = set()
    stack: list[tuple[yaml.Node, str]] = [(root, "")]
    duplicates: list[tuple[yaml.Node, str, yaml.Node]] = []  # (key, path, first key)
    while stack:
        node, path = stack.pop()
        if id(node) in seen_nodes:
            continue
        seen_nodes.add(id(node))
        if isinstance(node, yaml.MappingNode):
            keys: dict[tuple[str, str], yaml.Node] = {}
            for key_node, value_node in node.value:
                if key_node.tag == _MERGE_TAG:  # <<: *base, overridden by the keys beside it
                    stack.append((value_node, path))
                    continue
                if not isinstance(key_node, yaml.ScalarNode):
                    continue  # the safe loader refuses a list or mapping as a key
                key_path = f"{path}.{key_node.value}" if path else str(key_node.value)
                first = keys.setdefault((key_node.tag, key_node.value), key_node)
                if first is not key_node:
                    duplicates.append((key_node, key_path, first))
                stack.append((value_node, key_path))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((item, f"{path}[{i}]") for i, item in enumerate(node.value))
    if duplicates:
        key_node, key_path, first = min(
            duplicates, key=lambda d: (d[0].start_mark.line, d[0].start_mark.column)
        )
        raise yaml.constructor.ConstructorError(
            None,
            None,
            f"duplicate key {key_path} (first at line {first.start_mark.line + 1})",
            key_node.start_mark,
        )


def load_config_text(text: str, source: str = "<config>") -> Config:
    """Parse YAML text and validate it."""
    if len(text) > MAX_CONFIG_BYTES:
        raise ConfigError([_too_large(source)])
    try:
        data = yaml.load(text, Loader=_Loader)  # a SafeLoader: builds plain data only
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or ""
        detail = f": {problem}" if problem.startswith(("cannot read", "duplicate key")) else ""
        raise ConfigError([f"{source}: not valid YAML{where}{detail}"]) from None
    except RecursionError:
        raise ConfigError([f"{source}: nested too deeply to read"]) from None
    return parse_config(data)


def _too_large(source: str) -> str:
    limit = MAX_CONFIG_BYTES // (1024 * 1024)
    return f"{source}: too large (over the {limit} MiB limit of a config file)"


def load_config(path: str | Path) -> Config:
    """Load and validate a config file."""
    try:
        with Path(path).open("rb") as file:
            raw = file.read(MAX_CONFIG_BYTES + 1)  # never the whole of a huge file
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read ({exc.strerror or exc})"]) from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError([_too_large(str(path))])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError([f"{path}: not UTF-8 text"]) from None
    return load_config_text(text, str(path))


def default_config_text() -> str:
    """The embedded default: simulated cheap, mid and premium models, no keys needed."""
    return resources.files("quorum.server").joinpath("default.yaml").read_text("utf-8")


def default_config() -> Config:
    return load_config_text(default_config_text(), "<embedded default>")


def resolve_secrets(
    config: Config, environ: Mapping[str, str] | None = None
) -> dict[str, SecretStr]:
    """Read each provider's API key from its environment variable.

    Returns keys by provider name. Raises :class:`ConfigError` naming the key path of
    every provider whose variable is unset or empty, or holds a control character (a
    trailing newline from a file, say): sent in a header, it would fail every call.
    """
    env = os.environ if environ is None else environ
    keys: dict[str, SecretStr] = {}
    problems: list[str] = []
    for name, provider in config.providers.items():
        if provider.api_key_env is None:
            continue
        value = env.get(provider.api_key_env, "")
        if not value:
            problems.append(
                f"providers.{name}.api_key_env: environment variable "
                f"{provider.api_key_env} is not set"
            )
        elif has_control_characters(value):  # the value is never repeated
            problems.append(
                f"providers.{name}.api_key_env: environment variable "
                f"{provider.api_key_env} holds a control character (a trailing newline?); "
                "a key is sent in a header, where the HTTP client refuses it"
            )
        else:
            keys[name] = SecretStr(value)
    if problems:
        raise ConfigError(problems)
    return keys
