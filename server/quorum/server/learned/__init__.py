"""The learned router: which model should answer a prompt, learned from real routing data.

Trained on per-prompt results of real models (RouteLLM's GPT-4/Mixtral pair on MMLU and GSM8K,
RouterBench's 11 models, dcrouter's 9 open models), it estimates for every model of a pool the
chance that it answers a prompt well, and turns that into a decision calibrated to a quality
target ("95% of the premium model's quality") — see ``docs/learned-router.md``.

Runtime API (numpy only; no scikit-learn, no torch)::

    from quorum.server.learned import LearnedRouter

    router = LearnedRouter.load(path)            # once, at start-up
    scores = router.score(prompt)                # default source's model pool
    scores = router.score(prompt, source="routerbench")
    scores.recommended          # the model to call for the calibrated quality target
    scores.expected_scores      # per model (cheapest first): estimated P(answer is right)
    scores.gains                # expected quality gain of each model over the cheapest
    scores.expected_costs_usd   # per model, estimated from the prompt's length

    verdict = router.verify(prompt, cheap_answer, source="routellm-gsm8k")
    verdict.escalate            # cascade: call the strong model after reading the cheap answer

``score`` and ``verify`` are pure functions of their arguments and the loaded artifact, take well
under 5 ms a prompt, and raise :class:`UnknownSourceError` for a source the router never saw.
Loading checks the artifact's ``format_version`` and raises :class:`ArtifactError` with a
fix-it hint on a mismatch. ``DEFAULT_ARTIFACT`` is the committed default artifact.
"""

from quorum.server.learned.artifact import FORMAT_VERSION, ArtifactError, load_router
from quorum.server.learned.cli import DEFAULT_ARTIFACT
from quorum.server.learned.heads import CascadeDecision, RouterScores, SourceHead
from quorum.server.learned.router import LearnedRouter, UnknownSourceError

__all__ = [
    "DEFAULT_ARTIFACT",
    "FORMAT_VERSION",
    "ArtifactError",
    "CascadeDecision",
    "LearnedRouter",
    "RouterScores",
    "SourceHead",
    "UnknownSourceError",
    "load_router",
]
