"""Bearer-token authentication and the tenant of the current request.

Callers send ``authorization: Bearer <token>`` in gRPC metadata. The server never holds
a token: the config (or an environment variable fed from a Kubernetes Secret) lists the
hex digest of each tenant's token, plain SHA-256 or HMAC-SHA256 under a server key, and a
presented token is hashed and looked up. Nothing here logs, returns or echoes a token.
A token longer than :data:`MAX_TOKEN_CHARS` is refused as too long (UNAUTHENTICATED, the
message naming the limit) without being hashed.

The authenticated tenant travels with the request in a context variable set by the gRPC
interceptor (:mod:`quorum.server.service.gateway`); the router reads it with
:func:`current_tenant`. Another front door (HTTP) authenticates the same way and runs
its handler inside :func:`acting_as`.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from collections.abc import Mapping
from contextvars import ContextVar
from typing import TYPE_CHECKING

from quorum.server.config import Config
from quorum.server.errors import ConfigError, Unauthenticated

if TYPE_CHECKING:
    from quorum.server.tenants import TenantPolicy

_DIGEST = re.compile(r"\A[0-9a-f]{64}\Z")
_BEARER = re.compile(r"^\s*bearer\s+(\S+)\s*$", re.IGNORECASE)
MAX_TOKEN_CHARS = 4096
# Room for the scheme ("Bearer ") and spaces around the token: a value longer than the
# longest token plus this is refused before any pattern or hash is run over it.
_SCHEME_CHARS = 16

_current: ContextVar[TenantPolicy | None] = ContextVar("quorum_tenant", default=None)


def current_tenant() -> TenantPolicy | None:
    """The tenant authenticated for the request being served, if any."""
    return _current.get()


class acting_as:  # noqa: N801 - used like a function: ``with acting_as(tenant):``
    """Run a block as ``tenant`` (what the interceptor does around each RPC)."""

    __slots__ = ("_tenant", "_token")

    def __init__(self, tenant: TenantPolicy | None) -> None:
        self._tenant = tenant

    def __enter__(self) -> None:
        self._token = _current.set(self._tenant)

    def __exit__(self, *exc: object) -> None:
        # An abandoned stream is closed from another context, where reset cannot work.
        # (try/except, not contextlib.suppress: that is three Python calls on every RPC.)
        try:  # noqa: SIM105
            _current.reset(self._token)
        except ValueError:
            pass


def token_digest(token: str, key: bytes | None = None) -> str:
    """The hex digest a tenant's token is stored as: SHA-256, or HMAC-SHA256 under ``key``."""
    data = token.encode("utf-8")
    if key is None:
        return hashlib.sha256(data).hexdigest()
    return hmac.new(key, data, hashlib.sha256).hexdigest()


def bearer_token(value: str | bytes | None) -> str | None:
    """The token of an ``authorization`` metadata value, or None when it is not a bearer
    one or its token is too long (:func:`token_too_long` tells that case apart)."""
    if value is None or len(value) > MAX_TOKEN_CHARS + _SCHEME_CHARS:
        return None
    if isinstance(value, bytes):
        try:
            value = value.decode("ascii")
        except UnicodeDecodeError:
            return None
    match = _BEARER.match(value)
    if match is None or len(match[1]) > MAX_TOKEN_CHARS:
        return None
    return match[1]


def token_too_long(value: str | bytes | None) -> bool:
    """Whether an ``authorization`` value was refused for its length: longer than any
    accepted one, or a bearer token of more than MAX_TOKEN_CHARS. Told apart so that the
    caller hears its token is too long rather than that it sent none."""
    if value is None or len(value) <= MAX_TOKEN_CHARS:
        return False
    if len(value) > MAX_TOKEN_CHARS + _SCHEME_CHARS:
        return True
    text = value.decode("ascii", "replace") if isinstance(value, bytes) else value
    match = _BEARER.match(text)
    return match is not None and len(match[1]) > MAX_TOKEN_CHARS


class TokenVerifier:
    """Maps presented tokens to tenant names by digest."""

    def __init__(self, digests: Mapping[str, str], key: bytes | None = None) -> None:
        self._digests = dict(digests)
        self._key = key

    def verify(self, authorization: str | bytes | None) -> str:
        """The tenant whose token this is; :class:`Unauthenticated` otherwise."""
        token = bearer_token(authorization)
        if token is None:
            if token_too_long(authorization):
                raise Unauthenticated(
                    f"bearer token too long: at most {MAX_TOKEN_CHARS} characters; send "
                    "metadata 'authorization: Bearer <token>' with the tenant's token"
                )
            raise Unauthenticated(
                "missing credentials: send metadata 'authorization: Bearer <token>'"
            )
        # The lookup is by digest, not by token: timing can at most reveal a prefix of a
        # digest, which says nothing about any token.
        tenant = self._digests.get(token_digest(token, self._key))
        if tenant is None:
            raise Unauthenticated("unknown or revoked token")
        return tenant


def hash_key(config: Config, environ: Mapping[str, str] | None = None) -> bytes | None:
    """The HMAC key for token digests, from ``auth.hash_key_env``; None for plain SHA-256."""
    auth = config.auth
    if auth.token_hash != "hmac_sha256":
        return None
    env = os.environ if environ is None else environ
    name = auth.hash_key_env or ""
    value = env.get(name, "")
    if not value:
        raise ConfigError([f"auth.hash_key_env: environment variable {name} is not set"])
    return value.encode("utf-8")


def token_digests(config: Config, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Every accepted token digest and its tenant, from the config and the environment.

    A ``token_sha256_env`` variable holds one digest or several separated by commas or
    whitespace (to rotate a token, list the old and the new one for a while). Raises
    :class:`ConfigError` naming the key path of a variable that is unset or malformed,
    and of a digest shared by two tenants.
    """
    env = os.environ if environ is None else environ
    problems: list[str] = []
    owner: dict[str, str] = {}
    for name, tenant in config.tenants.items():
        digests = list(tenant.digests())
        if tenant.token_sha256_env is not None:
            path = f"tenants.{name}.token_sha256_env"
            raw = env.get(tenant.token_sha256_env, "")
            values = [v for v in re.split(r"[\s,]+", raw.strip().lower()) if v]
            if not values:
                problems.append(
                    f"{path}: environment variable {tenant.token_sha256_env} is not set"
                )
            elif not all(_DIGEST.match(v) for v in values):
                problems.append(
                    f"{path}: environment variable {tenant.token_sha256_env} must hold "
                    "64-character hex digests"
                )
            else:
                digests.extend(values)
        for digest in digests:
            if owner.get(digest, name) != name:
                problems.append(f"tenants.{name}: same token as tenants.{owner[digest]}")
            owner[digest] = name
    if problems:
        raise ConfigError(problems)
    return owner
