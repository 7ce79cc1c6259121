"""Vote counting and early-exit arithmetic as tables."""

from __future__ import annotations

import pytest

from quorum.server.domain import Completion, ToolCall, VoteGroup
from quorum.server.execute.vote import (
    Ballot,
    agreement,
    decided,
    leaders,
    min_deciding_weight,
    most_capable_group,
    tally,
)
from quorum.server.execute.voters import answer_text, canonical_calls


def _b(model: str, answer: str, weight: float = 1.0, rank: int = 0) -> Ballot:
    return Ballot(model, answer, weight, (rank, 0.0))


def test_tally_groups_equal_answers_in_first_seen_order() -> None:
    groups = tally([_b("a", "42"), _b("b", "41"), _b("c", "42", 2.0), _b("d", "")])
    assert groups == (VoteGroup("42", 3.0, ("a", "c")), VoteGroup("41", 1.0, ("b",)))


def test_abstentions_make_no_group() -> None:
    assert tally([_b("a", ""), _b("b", "")]) == ()


@pytest.mark.parametrize(
    ("weights", "outstanding", "expected"),
    [
        # leader, runner-up …; outstanding weight of calls still running
        ([2.0], 1.0, 0),  # 2 > 0 + 1: two of three agree, the third cannot change it
        ([1.0], 2.0, None),  # first answer of three: anything can happen
        ([1.0, 1.0], 1.0, None),  # split, one outstanding: it decides
        ([2.0, 1.0], 1.0, None),  # 2 vs 1 + 1: a tie is still possible
        ([2.0, 1.0], 0.9, 0),  # a lighter outstanding voter cannot tie
        ([3.0, 1.0], 1.0, 0),
        ([1.0, 2.5], 0.4, 1),  # the leader need not be the first group
        ([0.9, 0.3], 0.5, 0),  # weighted: 0.9 > 0.3 + 0.5
        ([0.9, 0.5], 0.5, None),  # 0.9 < 0.5 + 0.5
        ([1.0, 1.0], 0.0, None),  # a finished tie is not decided here (tie-break does it)
        ([], 1.0, None),
    ],
)
def test_decided(weights: list[float], outstanding: float, expected: int | None) -> None:
    groups = [VoteGroup(str(i), w, (str(i),)) for i, w in enumerate(weights)]
    assert decided(groups, outstanding) == expected


def test_leaders_and_capability_tie_break() -> None:
    ballots = [_b("flash", "1", rank=0), _b("mid", "2", rank=1), _b("frontier", "3", rank=2)]
    groups = tally(ballots)
    tied = leaders(groups)
    assert tied == [0, 1, 2]
    assert most_capable_group(groups, tied, ballots) == 2


def test_agreement() -> None:
    groups = tally([_b("a", "x"), _b("b", "x"), _b("c", "y")])
    assert agreement(groups, 0, 3.0) == pytest.approx(2 / 3)
    assert agreement(groups, 0, 4.0) == pytest.approx(0.5)  # a refusal counted as received
    assert agreement(groups, -1, 3.0) == 0.0


@pytest.mark.parametrize(
    ("weights", "k"),
    [([1.0, 1.0, 1.0], 2), ([1.0] * 5, 3), ([1.0, 1.0], 2), ([0.5, 0.5, 3.0], 3), ([3.0, 1.0], 1)],
)
def test_min_deciding_weight(weights: list[float], k: int) -> None:
    assert min_deciding_weight(weights) == k


def test_tool_call_answers_vote_by_tool_and_arguments() -> None:
    # The same call however its JSON is spaced or ordered; never two different tools
    # that happen to share a number.
    def calls(*pairs: tuple[str, str]) -> Completion:
        return Completion("", tuple(ToolCall(f"c{i}", n, a) for i, (n, a) in enumerate(pairs)))

    same = {
        canonical_calls(calls(("get_weather", '{"city": "Paris", "unit": "C"}'))),
        canonical_calls(calls(("get_weather", '{"unit":"C","city":"Paris"}'))),
    }
    assert len(same) == 1
    assert canonical_calls(calls(("get_weather", '{"days": 7}'))) != canonical_calls(
        calls(("delete_account", '{"id": 7}'))
    )


def test_a_judge_is_shown_the_tool_calls() -> None:
    shown = answer_text(Completion("", (ToolCall("c1", "get_weather", '{"city": "Paris"}'),)))
    assert shown == '[calls tool get_weather with arguments {"city":"Paris"}]'
    assert answer_text(Completion("Paris is sunny.")) == "Paris is sunny."
