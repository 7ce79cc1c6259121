"""Build one adapter per configured provider."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import SecretStr

from quorum.server.catalog import Catalog
from quorum.server.config import Config
from quorum.server.providers.base import Provider
from quorum.server.providers.http import HttpClient
from quorum.server.providers.simulated import SimulatedProvider


def build_providers(
    config: Config, catalog: Catalog, secrets: Mapping[str, SecretStr], http: HttpClient
) -> dict[str, Provider]:
    """Instantiate every provider of ``config``; HTTP adapters share ``http``."""
    providers: dict[str, Provider] = {}
    for name, cfg in config.providers.items():
        key = secrets.get(name)
        if cfg.kind == "simulated":
            behaviours = {
                m.model_id: m.simulated
                for m in catalog.models.values()
                if m.provider == name and m.simulated is not None
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
