"""Assemble the configured classifier chain."""

from __future__ import annotations

import functools
import os
import zipfile
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import structlog
from pydantic import SecretStr

from quorum.server.classify.base import Classifier
from quorum.server.classify.chain import ChainClassifier
from quorum.server.classify.llm import LLMClassifier
from quorum.server.classify.rules import TASKS, RulesClassifier
from quorum.server.config import Config, LearnedRouterConfig
from quorum.server.domain import Message, RouteRequest
from quorum.server.errors import ConfigError

if TYPE_CHECKING:
    from quorum.server.classify.embedding import Encoder
    from quorum.server.execute.gate import Verifier
    from quorum.server.learned.router import LearnedRouter
    from quorum.server.providers.http import HttpClient

log = structlog.get_logger("quorum.classify")

# What loading an artifact can raise: ArtifactError (a ValueError) for a missing manifest,
# another format version or an inconsistent artifact; OSError for an unreadable file;
# numpy's own errors for a damaged weights file.
_LOAD_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile)

ModelCall = Callable[[str, tuple[Message, ...], float], Awaitable[str]]


def build_classifier(
    config: Config,
    agents: Mapping[str, object],
    call: ModelCall,
    may_see: Callable[[str, RouteRequest], bool] | None = None,
    *,
    http: HttpClient | None = None,
    secrets: Mapping[str, SecretStr] | None = None,
) -> Classifier:
    """Rules alone unless embeddings (task routes or agent examples) or an LLM are set.

    With ``classifier.embedding.remote`` the examples are embedded here, through the
    endpoint, on the session ``http`` (the providers' shared one) with the provider's key
    from ``secrets`` (default: its ``api_key_env``). An endpoint that cannot embed them
    is a :class:`ConfigError` naming ``classifier.embedding.remote``.
    """
    settings = config.classifier
    agent_examples = {name: a.examples for name, a in config.agents.items() if a.examples}
    tasks = settings.embedding.tasks
    task_routes = agent_routes = None
    remote = settings.embedding.remote
    if settings.embedding.enabled and (tasks or agent_examples):
        # numpy and the model load only when semantic routes are configured.
        from quorum.server.classify.embedding import EmbeddingUnavailable, SemanticRoutes

        encoder = _encoder(config, http, secrets)
        emb = settings.embedding
        try:
            if tasks:
                task_routes = SemanticRoutes(encoder, tasks, threshold=emb.threshold, k=emb.k)
            if agent_examples:
                agent_routes = SemanticRoutes(
                    encoder, agent_examples, threshold=emb.threshold, k=emb.k
                )
        except EmbeddingUnavailable as exc:
            raise ConfigError(
                [
                    f"classifier.embedding.remote: {exc}; fix the endpoint, or remove "
                    "classifier.embedding.remote to embed with the local model"
                ]
            ) from None
        log.info(
            "semantic_routes_ready",
            tasks=len(tasks),
            agents=len(agent_examples),
            **_encoder_fields(encoder, remote is not None),
        )
    llm = None
    if settings.llm is not None:
        names = sorted(set(TASKS) | set(tasks))
        llm = LLMClassifier(
            partial(call, settings.llm.model),
            tasks=names,
            timeout_s=settings.llm.timeout_ms / 1000.0,
            may_see=partial(may_see, settings.llm.model) if may_see is not None else None,
        )
    first: Classifier = RulesClassifier()
    router = learned_router(config)
    if router is not None and settings.learned is not None and settings.learned.difficulty:
        from quorum.server.classify.learned import LearnedClassifier

        first = LearnedClassifier(router, source=settings.learned.source)
    if task_routes is None and agent_routes is None and llm is None:
        return first
    chain = ChainClassifier
    if remote is not None and (task_routes is not None or agent_routes is not None):
        # A remote encoder may fail per request: the chain then goes on without it.
        from quorum.server.classify.embedding import FallbackChain

        chain = FallbackChain
    return chain(
        rules=first,
        tasks=task_routes,
        agents=agent_routes,
        llm=llm,
        confident_at=settings.confident_at,
    )


def _encoder(
    config: Config,
    http: HttpClient | None,
    secrets: Mapping[str, SecretStr] | None,
) -> Encoder:
    """The configured encoder: all-MiniLM-L6-v2 locally, or the remote endpoint."""
    remote = config.classifier.embedding.remote
    if remote is None:
        from quorum.server.embeddings import MiniLMEncoder

        return MiniLMEncoder()
    from quorum.server.providers.embeddings_http import RemoteEncoder

    provider = config.providers[remote.provider]  # kind openai: config cross-references
    if secrets is not None:
        key = secrets.get(remote.provider)
    else:
        value = os.environ.get(provider.api_key_env) if provider.api_key_env else None
        key = SecretStr(value) if value else None
    return RemoteEncoder(remote.provider, provider, remote, key, http)


def _encoder_fields(encoder: Encoder, remote: bool) -> dict[str, object]:
    """What the start-up log says about the encoder."""
    if not remote:
        return {"encoder": "minilm"}
    from quorum.server.providers.embeddings_http import RemoteEncoder

    assert isinstance(encoder, RemoteEncoder)
    return {
        "encoder": "remote",
        "url": encoder.url,
        "model": encoder.model,
        "dimensions": encoder.dim,
        "prompt_tokens": encoder.startup_tokens,
    }


def learned_router(config: Config) -> LearnedRouter | None:
    """The configured learned router, loaded from its artifact (None when not configured).

    Everything the classifier and the verifier will ask of it is checked here, at
    start-up: the artifact loads, the source has a head, the verifier (when configured)
    exists for that source. Any failure is a :class:`ConfigError` naming the key path,
    never an error at request time.
    """
    settings = config.classifier.learned
    return None if settings is None else _checked_router(settings, _load_router)


def check_learned(config: Config) -> None:
    """The checks :func:`learned_router` makes, without keeping the artifact loaded: for
    ``quorum check-config`` and the ``--workers`` supervisor, which serve no request."""
    settings = config.classifier.learned
    if settings is not None:
        from quorum.server.learned.router import LearnedRouter

        _checked_router(settings, LearnedRouter.load)


def _checked_router(
    settings: LearnedRouterConfig, load: Callable[[str], LearnedRouter]
) -> LearnedRouter:
    from quorum.server.learned.cli import DEFAULT_ARTIFACT

    path = DEFAULT_ARTIFACT if settings.artifact == "default" else Path(settings.artifact)
    try:
        router = load(str(path.resolve()))
    except _LOAD_ERRORS as exc:
        raise ConfigError([f"classifier.learned.artifact: {_load_failure(path, exc)}"]) from None
    problems = _learned_problems(router, settings)
    if problems:
        raise ConfigError(problems)
    if settings.quality_target is not None:  # one of the calibrations the artifact stores
        from quorum.server.learned.heads import QualityTargetError

        try:
            return router.with_quality_target(settings.quality_target, settings.source)
        except QualityTargetError as exc:
            raise ConfigError([f"classifier.learned.quality_target: {exc}"]) from None
    return router


def _load_failure(path: Path, exc: BaseException) -> str:
    """Why the artifact at ``path`` did not load, as one line."""
    from quorum.server.learned.artifact import ArtifactError

    if isinstance(exc, ArtifactError):
        return str(exc)  # names the file and says how to fix it
    if isinstance(exc, OSError) and exc.strerror:
        return f"{path}: cannot read ({exc.strerror})"
    return f"{path}: not a usable router artifact ({type(exc).__name__}: {exc})"


def _learned_problems(router: LearnedRouter, settings: LearnedRouterConfig) -> list[str]:
    """What the configured source and verifier need that the loaded artifact lacks."""
    sources = router.sources
    if settings.source and settings.source not in sources:  # empty: the default source
        return [
            f'classifier.learned.source: unknown source "{settings.source}" '
            f"(the artifact has: {', '.join(sorted(sources)) or 'none'})"
        ]
    head = router.head(settings.source)
    if settings.verifier and head.cascade is None:
        with_one = ", ".join(s for s in sources if router.head(s).cascade is not None)
        return [
            f"classifier.learned.verifier: source {head.source!r} has no cascade "
            f"verifier; set classifier.learned.source to one that has "
            f"({with_one or 'none in this artifact'})"
        ]
    return []


@functools.lru_cache(maxsize=4)
def _load_router(path: str) -> LearnedRouter:
    """One load per artifact, shared by the classifier and the verifier."""
    from quorum.server.learned.router import LearnedRouter

    return LearnedRouter.load(path)


def build_verifiers(config: Config) -> tuple[Verifier, ...]:
    """Learned checks for the cascade's quality gate, when configured."""
    settings = config.classifier.learned
    if settings is None or not settings.verifier:
        return ()
    router = learned_router(config)  # checks that the source has a cascade verifier
    if router is None:
        return ()
    from quorum.server.classify.learned import LearnedVerifier

    return (LearnedVerifier(router, settings.source),)
