"""Assemble the configured classifier chain."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from functools import partial

import structlog

from quorum.server.classify.base import Classifier
from quorum.server.classify.chain import ChainClassifier
from quorum.server.classify.llm import LLMClassifier
from quorum.server.classify.rules import TASKS, RulesClassifier
from quorum.server.config import Config
from quorum.server.domain import Message

log = structlog.get_logger("quorum.classify")

ModelCall = Callable[[str, tuple[Message, ...], float], Awaitable[str]]


def build_classifier(config: Config, agents: Mapping[str, object], call: ModelCall) -> Classifier:
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
        )
    if task_routes is None and agent_routes is None and llm is None:
        return RulesClassifier()
    return ChainClassifier(
        tasks=task_routes, agents=agent_routes, llm=llm, confident_at=settings.confident_at
    )
