"""Build one adapter per configured provider."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import SecretStr

from quorum.server.catalog import Catalog
from quorum.server.config import Config, SimulatedBehaviour
from quorum.server.providers.base import Provider
from quorum.server.providers.http import HttpClient
from quorum.server.providers.simulated import SimulatedProvider


def build_providers(
    config: Config, catalog: Catalog, secrets: Mapping[str, SecretStr], http: HttpClient
) -> dict[str, Provider]:
    """Instantiate every provider of ``config``; HTTP adapters share ``http``.

    A simulated provider learns the behaviour of every model deployed on it.
    """
    providers: dict[str, Provider] = {}
    for name, cfg in config.providers.items():
        key = secrets.get(name)
        if cfg.kind == "simulated":
            behaviours = {
                d.model_id: m.simulated or SimulatedBehaviour()
                for m in catalog.models.values()
                for d in m.deployments
                if d.provider == name
            }
            providers[name] = SimulatedProvider(name, behaviours)
        elif cfg.kind == "openai":
            from quorum.server.providers.openai import OpenAIProvider

            providers[name] = OpenAIProvider(name, cfg, key, http)
        elif cfg.kind == "anthropic":
            from quorum.server.providers.anthropic import AnthropicProvider

            providers[name] = AnthropicProvider(name, cfg, key, http)
        elif cfg.kind == "gemini":
            from quorum.server.providers.gemini import GeminiProvider

            providers[name] = GeminiProvider(name, cfg, key, http)
    return providers
