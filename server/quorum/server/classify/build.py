"""Assemble the configured classifier chain."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from quorum.server.classify.base import Classifier
from quorum.server.classify.chain import ChainClassifier
from quorum.server.classify.llm import LLMClassifier
from quorum.server.classify.rules import TASKS, RulesClassifier
from quorum.server.config import Config
from quorum.server.domain import Message, RouteRequest
from quorum.server.errors import ConfigError

if TYPE_CHECKING:
    from quorum.server.execute.gate import Verifier
    from quorum.server.learned.router import LearnedRouter

log = structlog.get_logger("quorum.classify")

ModelCall = Callable[[str, tuple[Message, ...], float], Awaitable[str]]


def build_classifier(
    config: Config,
    agents: Mapping[str, object],
    call: ModelCall,
    may_see: Callable[[str, RouteRequest], bool] | None = None,
) -> Classifier:
    """Rules alone unless embeddings (task routes or agent examples) or an LLM are set."""
    settings = config.classifier
    agent_examples = {name: a.examples for name, a in config.agents.items() if a.examples}
    tasks = settings.embedding.tasks
    task_routes = agent_routes = None
    if settings.embedding.enabled and (tasks or agent_examples):
        # numpy and the model load only when semantic routes are configured.
        from quorum.server.classify.embedding import SemanticRoutes
        from quorum.server.embeddings import MiniLMEncoder

        encoder = MiniLMEncoder()
        emb = settings.embedding
        if tasks:
            task_routes = SemanticRoutes(encoder, tasks, threshold=emb.threshold, k=emb.k)
        if agent_examples:
            agent_routes = SemanticRoutes(encoder, agent_examples, threshold=emb.threshold, k=emb.k)
        log.info("semantic_routes_ready", tasks=len(tasks), agents=len(agent_examples))
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
    return ChainClassifier(
        rules=first,
        tasks=task_routes,
        agents=agent_routes,
        llm=llm,
        confident_at=settings.confident_at,
    )


def learned_router(config: Config) -> LearnedRouter | None:
    """The configured learned router, loaded from its artifact (None when not configured)."""
    settings = config.classifier.learned
    if settings is None:
        return None
    from quorum.server.learned.cli import DEFAULT_ARTIFACT

    path = DEFAULT_ARTIFACT if settings.artifact == "default" else Path(settings.artifact)
    return _load_router(str(path.resolve()))


@functools.lru_cache(maxsize=4)
def _load_router(path: str) -> LearnedRouter:
    """One load per artifact, shared by the classifier and the verifier."""
    from quorum.server.learned.router import LearnedRouter

    return LearnedRouter.load(path)


def build_verifiers(config: Config) -> tuple[Verifier, ...]:
    """Learned checks for the cascade's quality gate, when configured."""
    settings = config.classifier.learned
    router = learned_router(config) if settings is not None and settings.verifier else None
    if router is None or settings is None:
        return ()
    head = router.head(settings.source)
    if head.cascade is None:
        with_one = ", ".join(s for s in router.sources if router.head(s).cascade is not None)
        raise ConfigError(
            [
                f"classifier.learned.verifier: source {head.source!r} has no cascade "
                f"verifier; set classifier.learned.source to one that has "
                f"({with_one or 'none in this artifact'})"
            ]
        )
    from quorum.server.classify.learned import LearnedVerifier

    return (LearnedVerifier(router, settings.source),)
