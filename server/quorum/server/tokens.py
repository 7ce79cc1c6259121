"""Token estimates used before a provider reports real usage."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from quorum.server.domain import Message


def count_tokens(text: str) -> int:
    """About four characters a token, at least one: cheap and close enough to plan with."""
    return max(1, (len(text) + 3) // 4)


def prompt_tokens(messages: Iterable[Message]) -> int:
    """Input tokens of a conversation: its text plus a few per message for the framing."""
    return sum(count_tokens(m.text) + 4 for m in messages)
