"""Loading: YAML text or a file to a validated :class:`Config`, the embedded default,
and the providers' API keys from the environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import SecretStr, ValidationError

from quorum.server.config.checks import cross_reference_problems
from quorum.server.config.root import Config
from quorum.server.errors import ConfigError

# What pydantic puts before the message of an error raised by a validator.
_VALIDATOR_PREFIXES = ("Value error, ", "Assertion failed, ")


def _key_path(loc: tuple[int | str, ...]) -> str:
    """A pydantic error location as the key path the cross-reference checks write:
    ``models.fast.capabilities[0]``, list indices in brackets."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path or "(top level)"


def _format_pydantic(error: ValidationError) -> list[str]:
    problems = []
    for item in error.errors():
        path = _key_path(item["loc"])
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown key"
        elif item["type"] == "missing":
            message = "required key is missing"
        for prefix in _VALIDATOR_PREFIXES:
            message = message.removeprefix(prefix)
        problems.append(f"{path}: {message}")
    return problems


def parse_config(data: Any) -> Config:
    """Validate already-parsed YAML data; raises :class:`ConfigError` naming key paths."""
    if not isinstance(data, Mapping):
        raise ConfigError(["(top level): must be a mapping of keys"])
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_pydantic(exc)) from None
    problems = cross_reference_problems(config)
    if problems:
        raise ConfigError(problems)
    return config


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, with a value it cannot build (``2024-13-45`` as a date,
    ``!!int abc``, an integer of thousands of digits) reported at its place like a
    syntax error, where the safe loader raised a bare ValueError or KeyError."""

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (ValueError, KeyError, TypeError, OverflowError) as exc:
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read this value ({type(exc).__name__})", node.start_mark
            ) from None


def load_config_text(text: str, source: str = "<config>") -> Config:
    """Parse YAML text and validate it."""
    try:
        data = yaml.load(text, Loader=_Loader)  # a SafeLoader: builds plain data only
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or ""
        detail = f": {problem}" if problem.startswith("cannot read") else ""
        raise ConfigError([f"{source}: not valid YAML{where}{detail}"]) from None
    except RecursionError:
        raise ConfigError([f"{source}: nested too deeply to read"]) from None
    return parse_config(data)


def load_config(path: str | Path) -> Config:
    """Load and validate a config file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read ({exc.strerror or exc})"]) from None
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
    every provider whose variable is unset or empty.
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
        else:
            keys[name] = SecretStr(value)
    if problems:
        raise ConfigError(problems)
    return keys
