"""Field types every config section shares, and the strict base of every section."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

Name = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:/-]*$")]
CapabilityName = Literal["tools", "vision", "json_mode", "json_schema", "streaming", "logprobs"]
SensitivityName = Literal["public", "internal", "restricted"]
DifficultyName = Literal["low", "medium", "high"]
StrategyName = Literal["auto", "single", "cascade", "consensus_majority", "consensus_judge"]
PriorityName = Literal["latency", "balanced", "quality", "cost"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


NormalizerName = Literal["auto", "exact", "text", "numeric", "choice", "json", "labels"]
EnvName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
_HOST_PORT = r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]*):[0-9]{1,5}$"


def _port_in_range(value: str) -> str:
    port = int(value.rsplit(":", 1)[1])
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} is not within 0-65535")
    return value


HostPort = Annotated[str, Field(pattern=_HOST_PORT), AfterValidator(_port_in_range)]
"""``HOST:PORT`` (``[v6]:PORT`` too), the port within 0-65535."""
