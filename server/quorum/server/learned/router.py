"""The learned router as the planner sees it: load once, then score prompts.

``LearnedRouter`` holds one :class:`~quorum.server.learned.heads.SourceHead` per trained source
(model pool). ``score(prompt, source=None)`` uses the named head, or the artifact's default one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from quorum.server.learned.heads import CascadeDecision, RouterScores, SourceHead


class UnknownSourceError(KeyError):
    """The router has no head for the requested source."""


@dataclass(frozen=True)
class LearnedRouter:
    """Trained heads keyed by source, with the manifest they were loaded from."""

    heads: Mapping[str, SourceHead]
    default_source: str
    manifest: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.default_source not in self.heads:
            raise ValueError(f"default source {self.default_source!r} has no head")

    @classmethod
    def load(cls, path: Path | str) -> LearnedRouter:
        """Load an artifact directory written by :func:`~.artifact.save_router`."""
        from quorum.server.learned.artifact import load_router

        return load_router(Path(path))

    @property
    def sources(self) -> tuple[str, ...]:
        """Sources the router was trained on."""
        return tuple(self.heads)

    def head(self, source: str | None = None) -> SourceHead:
        """The head for ``source`` (default: the artifact's default source)."""
        name = source or self.default_source
        try:
            return self.heads[name]
        except KeyError:
            known = ", ".join(sorted(self.heads))
            raise UnknownSourceError(f"no head for source {name!r} (known: {known})") from None

    def with_quality_target(self, target: str, source: str | None = None) -> LearnedRouter:
        """This router with the head of ``source`` (default: the default source) deciding at
        the stored calibration for ``target``, e.g. ``"95% of premium"`` or ``"80% of gap"``
        (:meth:`SourceHead.at_target`); the other heads are unchanged.

        Raises :class:`~.heads.QualityTargetError` listing the stored targets when the head
        has no calibration for ``target``.
        """
        name = source or self.default_source
        heads = dict(self.heads)
        heads[name] = self.head(name).at_target(target)
        return replace(self, heads=heads)

    def score(self, prompt: str, source: str | None = None) -> RouterScores:
        """Per-model expected scores, costs and the recommended model for ``prompt``."""
        return self.head(source).score(prompt)

    def verify(
        self, prompt: str, cheap_response: str, source: str | None = None
    ) -> CascadeDecision:
        """The cascade verifier's verdict on the cheap model's answer to ``prompt``."""
        return self.head(source).verify(prompt, cheap_response)
