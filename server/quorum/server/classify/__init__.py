"""Classify: task type, difficulty and confidence of a request."""

from quorum.server.classify.base import Classifier
from quorum.server.classify.rules import RulesClassifier, classify_text

__all__ = ["Classifier", "RulesClassifier", "classify_text"]
