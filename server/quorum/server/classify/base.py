"""The classifier interface: a request in, a :class:`Classification` out.

Classifiers only score; the planner decides. Rules run in microseconds; embedding,
learned and LLM classifiers plug in behind the same interface and can be composed.
"""

from __future__ import annotations

from typing import Protocol

from quorum.server.domain import Classification, RouteRequest


class Classifier(Protocol):
    """Anything that classifies a request's task, difficulty and confidence."""

    async def classify(self, request: RouteRequest) -> Classification:
        """Classify ``request``; never raises for any valid request."""
        ...
