"""The rules classifier's fast path for ASCII text counts exactly what IGNORECASE does."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from quorum.server.classify import rules

WORDS = [
    "def", "class", "SELECT name FROM users", "Python", "RUST", "c++", "```", "Solve",
    "2 + 3", "how many", "Summarise", "TL;DR", "extract", "Named Entities", "translate",
    "into French", "classify", "is this spam", "poem", "Haiku", "why", "trade-offs",
    "step-by-step", "Prove", "in depth", "explain", "Debug", "code review", "?", "\n- ",
    "\n1) ", "api endpoint", "stack trace", "compilers", "Percent", "PLAN FOR",
]  # fmt: skip
TEXT = st.lists(
    st.one_of(st.sampled_from(WORDS), st.text(alphabet=st.characters(max_codepoint=127))),
    max_size=30,
).map(" ".join)


@settings(max_examples=200, deadline=None)
@given(text=TEXT)
def test_ascii_twins_count_the_same_matches(text: str) -> None:
    lowered = text.lower()
    pairs = [
        (p, twin) for (_, p, _), (_, twin, _) in zip(rules._TASKS, rules._TASKS_ASCII, strict=True)
    ]
    pairs += [(rules._HARD, rules._HARD_ASCII), (rules._MEDIUM, rules._MEDIUM_ASCII)]
    for original, twin in pairs:
        assert len(original.findall(text)) == len(twin.findall(lowered)), original.pattern


@settings(max_examples=100, deadline=None)
@given(text=TEXT, extra=st.sampled_from(["", "é", "İ", "K", "ſum of"]))
def test_non_ascii_text_keeps_unicode_case_folding(text: str, extra: str) -> None:
    # Non-ASCII text takes the IGNORECASE patterns: same result as scoring them directly.
    scan = (text + extra)[: rules._SCAN_CHARS]
    result = rules.classify_text(text + extra)
    if not scan.isascii():
        assert result.task == rules._task_scores(scan).task


@settings(max_examples=300, deadline=None)
@given(text=TEXT)
def test_gates_open_wherever_a_pattern_matches(text: str) -> None:
    # A shut gate skips its pattern: it must never shut on text that pattern matches.
    lowered = text.lower()
    gates = rules._open_gates(lowered)
    twins = [twin for _, twin, _ in rules._TASKS_ASCII] + [rules._HARD_ASCII, rules._MEDIUM_ASCII]
    for bit, twin in enumerate(twins):
        if twin.search(lowered):
            assert gates >> bit & 1, (rules._GATED[bit], twin.pattern)


_TWINS = [*(twin for _, twin, _ in rules._TASKS_ASCII), rules._HARD_ASCII, rules._MEDIUM_ASCII]


@settings(max_examples=1500, deadline=None)
@given(data=st.data(), bit=st.sampled_from(range(len(_TWINS))))
def test_every_alternative_of_a_pattern_opens_its_gate(data: st.DataObject, bit: int) -> None:
    # Text drawn from the pattern itself, with ASCII around it: an alternative added to a
    # pattern without a gate entry shows up here (1,500 draws over about 150 alternatives).
    twin = _TWINS[bit]
    around = st.text(alphabet=st.characters(max_codepoint=127), max_size=12)
    text = data.draw(around) + data.draw(st.from_regex(twin)) + data.draw(around)
    if not text.isascii():
        return
    lowered = text.lower()
    if twin.search(lowered):
        assert rules._open_gates(lowered) >> bit & 1, (rules._GATED[bit], lowered)
