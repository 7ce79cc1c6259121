"""Field types every config section shares, and the strict base of every section."""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from yarl import URL

Name = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:/-]*$")]
CapabilityName = Literal["tools", "vision", "json_mode", "json_schema", "streaming", "logprobs"]
SensitivityName = Literal["public", "internal", "restricted"]
DifficultyName = Literal["low", "medium", "high"]
StrategyName = Literal["auto", "single", "cascade", "consensus_majority", "consensus_judge"]
PriorityName = Literal["latency", "balanced", "quality", "cost"]


class Strict(BaseModel):
    # strict: a number must be written as a number (``true`` or ``"0.1"`` is refused; an
    # integer is still taken where a float is expected), a flag as true/false.
    # allow_inf_nan: .inf and .nan are never a meaningful setting.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


# Token counts end up in protobuf uint32 fields (ModelInfo.context_window): 100M is far
# above any model's window and well inside that range.
MAX_TOKENS = 100_000_000

# Budgets count integer micro-dollars (budget/ledger.py to_micros), in Redis with HINCRBY
# and Lua numbers (doubles, exact to 2**53, about 9e15). A billion USD is 1e15 micro-dollars:
# no real budget reaches it, and a limit plus its overdraft stays exact there. Far larger
# ones (1e303) made every Route and Plan fail with an OverflowError.
MAX_USD = 1_000_000_000


NormalizerName = Literal["auto", "exact", "text", "numeric", "choice", "json", "labels"]
EnvName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
_HOST_PORT = r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]*):[0-9]{1,5}$"


# A host name's labels (RFC 1123): letters, digits and inner hyphens, 63 at most each.
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


def _host_port(value: str) -> str:
    """The host and port of a listen address as gRPC, aiohttp and the metrics server take
    them: ``[...]`` or ``1.2.3`` passed the pattern and then stopped ``serve`` with a raw
    gRPC core error."""
    host, _, port_text = value.rpartition(":")
    port = int(port_text)
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} is not within 0-65535")
    if host.startswith("["):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise ValueError(f'"{host[1:-1]}" in brackets is not an IPv6 address') from None
    elif host and re.fullmatch(r"[0-9.]+", host):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise ValueError(f'"{host}" is not an IPv4 address') from None
    elif host and not all(_LABEL.fullmatch(label) for label in host.split(".")):
        raise ValueError(f'"{host}" is not a valid host name')
    return value


HostPort = Annotated[str, Field(pattern=_HOST_PORT), AfterValidator(_host_port)]
"""``HOST:PORT`` (``[v6]:PORT`` too, an empty host for every address), the host an IPv4
or IPv6 address or a host name, the port within 0-65535."""


def _has_words(value: str) -> str:
    if not any(ch.isalnum() for ch in value):
        raise ValueError("an example needs at least one letter or digit")
    return value


Example = Annotated[str, Field(min_length=1, max_length=2000), AfterValidator(_has_words)]
"""An example utterance of a semantic route: blank or invisible text would embed close
to every short prompt and capture it."""


# A host as it may be written after IDNA encoding (yarl encodes non-ASCII names).
_HOST = re.compile(r"^[A-Za-z0-9._~-]+$")


def check_url(
    value: str,
    schemes: tuple[str, ...],
    *,
    host: bool = True,
    credentials: bool = False,
    query: bool = False,
) -> str:
    """Parse ``value`` as a URL the way the HTTP client will, and raise ValueError with
    what is wrong: a scheme not in ``schemes``, whitespace or control characters, no
    host (when ``host``), a bad port, user:password@ (unless ``credentials``), a query
    or fragment (unless ``query``)."""
    if not value.startswith(tuple(f"{scheme}://" for scheme in schemes)):
        raise ValueError("must start with " + " or ".join(f"{s}://" for s in schemes))
    if any(c.isspace() or unicodedata.category(c) in ("Cc", "Cf") for c in value):
        raise ValueError("must not contain spaces or control characters")
    try:
        url = URL(value)
        port = url.explicit_port
        raw_host = url.raw_host
    except (ValueError, TypeError, UnicodeError) as exc:
        raise ValueError(f"not a valid URL ({exc})") from None
    if host:
        if not raw_host:
            raise ValueError("has no host")
        if ":" not in raw_host and not _HOST.fullmatch(raw_host):  # ":": an IPv6 address
            raise ValueError(f'host "{url.host}" is not a valid host name')
        if port == 0:
            raise ValueError("port must be within 1-65535")
    if not credentials and (url.raw_user is not None or url.raw_password is not None):
        raise ValueError(
            "must not contain user:password@; put credentials in api_key_env or headers"
        )
    if not query and (url.raw_query_string or url.raw_fragment or "?" in value or "#" in value):
        raise ValueError("must not have a query (?) or fragment (#)")
    return value
