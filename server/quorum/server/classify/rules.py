"""A rule-based classifier that runs in microseconds.

Task type comes from keyword and shape signals (code fences, arithmetic, "summarise",
"translate", ...); difficulty from length, reasoning markers and structure. Confidence
is high when one task's signals clearly dominate and low (0.55–0.6) when none or several
fire or the difficulty sits near a boundary: below the chain's ``confident_at`` (0.7), so
a classifier chain asks its embedding routes and LLM, but not below the planner's default
``routing.ambiguous_below`` (0.5) — a plain "hi there" is trivially easy chat and stays on
the cheap tier. Raise ``ambiguous_below`` above 0.55 to move unsure rules answers up.
Hints override: a caller that names the task keeps its task with confidence 1.
"""

from __future__ import annotations

import re

from quorum.server.domain import Classification, Difficulty, RouteRequest
from quorum.server.values import value_type

_SCAN_CHARS = 6000  # enough to classify; bounds the cost on huge prompts
_MANY_WORDS = 1501  # more words than the longest length threshold needs counted
_ARITHMETIC = r"\d\s*[-+*/^×÷]\s*\d"  # the math pattern's one alternative without words

_TASKS: tuple[tuple[str, re.Pattern[str], float], ...] = (
    (
        "code",
        re.compile(
            r"```|\b(def|class|function|return|import|const|let|var|public static|"
            r"SELECT\s+\w+\s+FROM|stack ?trace|traceback|compile[sr]?|regex|refactor|debug|"
            r"unit tests?|python|javascript|typescript|golang|rust|java\b|c\+\+|sql|bash|"
            r"dockerfile|kubernetes yaml|api endpoint)\b",
            re.IGNORECASE,
        ),
        1.0,
    ),
    (
        "math",
        re.compile(
            _ARITHMETIC + r"|\b(solve|equation|integral|derivative|probability|calculate|"
            r"compute|how many|how much|percent|sum of|prove|proof|theorem|lemma|algebra|"
            r"geometry|primes?)\b",
            re.IGNORECASE,
        ),
        1.0,
    ),
    (
        "summarization",
        re.compile(
            r"\b(summari[sz]e|summary|tl;?dr|key points|condense|recap|shorten)\b", re.IGNORECASE
        ),
        1.2,
    ),
    (
        "extraction",
        re.compile(
            r"\b(extract|parse|pull out|list all|find all|fields?|entities|json with|"
            r"named entit)",
            re.IGNORECASE,
        ),
        1.0,
    ),
    (
        "translation",
        re.compile(
            r"\btranslat(e|ion)\b|"
            r"\binto (english|french|german|spanish|italian|japanese|chinese)\b",
            re.IGNORECASE,
        ),
        1.3,
    ),
    (
        "classification",
        re.compile(
            r"\b(classify|categori[sz]e|sentiment|label (this|the)|which category|is this (spam|"
            r"positive|negative))\b",
            re.IGNORECASE,
        ),
        1.2,
    ),
    (
        "creative",
        re.compile(
            r"\b(poem|story|haiku|lyrics|slogan|creative|imagine|fiction|tagline|jokes?)\b",
            re.IGNORECASE,
        ),
        1.1,
    ),
    (
        "reasoning",
        re.compile(
            r"\b(why|analy[sz]e|compare|evaluate|trade-?offs?|pros and cons|design|architect|"
            r"strategy|plan for|implications?|reason)\b",
            re.IGNORECASE,
        ),
        0.8,
    ),
)
TASKS: tuple[str, ...] = ("chat", *(name for name, _, _ in _TASKS))
_HARD = re.compile(
    r"\b(prove|proof|derive|rigorous|step[- ]by[- ]step|in depth|comprehensive|distributed|"
    r"concurren\w*|optimi[sz]\w*|architect\w*|trade-?offs?|edge cases|formal|complexity|"
    r"multi-?step|end-to-end|scalab\w*|migrat\w*|thread-?safe|consisten\w*|security review)\b",
    re.IGNORECASE,
)
_MEDIUM = re.compile(
    r"\b(explain|describe|write|implement|function|compare|summari[sz]e|analy[sz]e|"
    r"translate|extract|debug|refactor|outline|draft|code review)\b",
    re.IGNORECASE,
)
# A bullet: a line's indent (whitespace other than a newline), a marker and a space. Not
# ``^\s*``: that crosses newlines, so from every line start it would scan all the blank
# lines below (quadratic on a prompt of newlines). Both count the same bullets: a match of
# ``^\s*`` whose run crosses newlines ends where this one, started after the run's last
# newline, ends (tests/unit/test_rules.py compares them).
_BULLETS = re.compile(r"^[^\S\n]*(?:\d+[.)]|[-*•])\s", re.MULTILINE)


def _ascii_twin(pattern: re.Pattern[str]) -> re.Pattern[str]:
    """``pattern`` lower-cased and case-sensitive, for lower-cased ASCII text.

    On ASCII text both find the same number of matches, the twin at under half the
    cost (IGNORECASE matching is slow in ``re``); text with any other character keeps
    the original, with its Unicode case folding.
    """
    if re.search(r"\\[A-Z]", pattern.pattern):
        raise ValueError(f"an upper-case escape would change meaning: {pattern.pattern!r}")
    return re.compile(pattern.pattern.lower(), pattern.flags & ~re.IGNORECASE)


_TASKS_ASCII = tuple((task, _ascii_twin(p), weight) for task, p, weight in _TASKS)
_HARD_ASCII = _ascii_twin(_HARD)
_MEDIUM_ASCII = _ascii_twin(_MEDIUM)

# Gates in front of the ASCII twins. ``findall`` tries a pattern at every position of the
# text, the bulk of this function's cost, yet most patterns match nothing in a given prompt.
# Exact, not a heuristic: every match of a pattern in lower-cased ASCII text contains one of
# its gate's words as a whole word, a maximal run of ``\w`` characters (each alternative
# lists a piece of itself that the pattern bounds by ``\b`` or a non-word character), or
# one of its parts anywhere (a piece of an alternative with no such word: ``extract`` also
# matches "extracted"), or, for math, the ``_ARITHMETIC`` alternative itself. So a pattern
# whose gate stays shut has no match and counts 0 without running, and one whose gate opens
# runs as before: the counts never change. An alternative added to a pattern needs a piece
# here too (tests/property/test_rules_ascii.py checks the gates against the patterns).
_GATES: dict[str, tuple[str, tuple[str, ...]]] = {
    "code": (
        "def class function return import const let var static select trace stacktrace "
        "traceback compile compiles compiler regex refactor debug test tests python "
        "javascript typescript golang rust java sql bash dockerfile yaml endpoint",
        ("```", "c++"),
    ),
    "math": (
        "solve equation integral derivative probability calculate compute percent sum prove "
        "proof theorem lemma algebra geometry prime primes",
        ("how many", "how much"),  # not the words "many" and "much": too many false alarms
    ),
    "summarization": ("summarise summarize summary tl tldr points condense recap shorten", ()),
    "extraction": ("pull list find json named", ("extract", "parse", "field", "entities")),
    "translation": (
        "translate translation english french german spanish italian japanese chinese",
        (),
    ),
    "classification": (
        "classify categorise categorize sentiment label category spam positive negative",
        (),
    ),
    "creative": ("poem story haiku lyrics slogan creative imagine fiction tagline joke jokes", ()),
    "reasoning": (
        "why analyse analyze compare evaluate trade tradeoff tradeoffs cons design architect "
        "strategy plan implication implications reason",
        (),
    ),
    "hard": (
        "prove proof derive rigorous step depth comprehensive distributed trade tradeoff "
        "tradeoffs cases formal complexity multistep safe threadsafe review",
        ("concurren", "optimi", "architect", "scalab", "migrat", "consisten", "end-to-end"),
    ),
    "medium": (
        "explain describe write implement function compare summarise summarize analyse "
        "analyze translate extract debug refactor outline draft review",
        (),
    ),
}
# Bit i of a gate mask stands for pattern i in this order (``_task_scores`` relies on it).
_GATED = (*(task for task, _, _ in _TASKS), "hard", "medium")
_MATH_BIT, _HARD_BIT, _MEDIUM_BIT = (1 << _GATED.index(name) for name in ("math", "hard", "medium"))
_ALL_OPEN = -1  # every bit set: no gate (the non-ASCII path)
_WORD_BYTES = bytes(c if re.match(r"\w", chr(c)) else ord(" ") for c in range(256))
_ARITHMETIC_ASCII = re.compile(_ARITHMETIC)


def _gate_tables() -> tuple[dict[bytes, int], tuple[tuple[str, int], ...]]:
    if sorted(_GATED) != sorted(_GATES):
        raise ValueError("every pattern needs exactly one gate")
    words: dict[bytes, int] = {}
    parts: list[tuple[str, int]] = []
    for bit, name in enumerate(_GATED):
        gate_words, gate_parts = _GATES[name]
        for word in gate_words.split():
            words[word.encode()] = words.get(word.encode(), 0) | 1 << bit
        parts += [(part, 1 << bit) for part in gate_parts]
    return words, tuple(parts)


_WORD_GATES, _PART_GATES = _gate_tables()


def _open_gates(lowered: str) -> int:
    """The gate mask for lower-cased ASCII text: bit i clear if pattern i cannot match."""
    words = lowered.encode("ascii").translate(_WORD_BYTES).split()
    mask = 0
    for word in _WORD_GATES.keys() & words:
        mask |= _WORD_GATES[word]
    for part, bit in _PART_GATES:
        if part in lowered:
            mask |= bit
    if _ARITHMETIC_ASCII.search(lowered):
        mask |= _MATH_BIT
    return mask


@value_type
class _Scores:
    task: str
    task_score: float
    runner_up: float
    signals: tuple[str, ...]


def _task_scores(
    text: str,
    tasks: tuple[tuple[str, re.Pattern[str], float], ...] = _TASKS,
    gates: int = _ALL_OPEN,
) -> _Scores:
    best, best_score, second = "chat", 0.0, 0.0
    signals: list[str] = []
    for i, (task, pattern, weight) in enumerate(tasks):
        hits = len(pattern.findall(text)) if gates >> i & 1 else 0
        if not hits:
            continue
        score = weight * min(hits, 4)
        signals.append(f"task:{task}x{hits}")
        if score > best_score:
            best, best_score, second = task, score, best_score
        elif score > second:
            second = score
    return _Scores(best, best_score, second, tuple(signals))


def classify_text(text: str, *, turns: int = 1) -> Classification:
    """Classify a prompt's text. Pure and fast; ``turns`` is the conversation length."""
    scan = text[:_SCAN_CHARS]
    if scan.isascii():
        lowered = scan.lower()
        gates = _open_gates(lowered)
        scores = _task_scores(lowered, _TASKS_ASCII, gates)
        hard = len(_HARD_ASCII.findall(lowered)) if gates & _HARD_BIT else 0
        medium = len(_MEDIUM_ASCII.findall(lowered)) if gates & _MEDIUM_BIT else 0
    else:
        scores = _task_scores(scan)
        hard = len(_HARD.findall(scan))
        medium = len(_MEDIUM.findall(scan))
    # Counted only as far as the largest threshold below: a huge prompt is not split whole.
    words = len(text.split(maxsplit=_MANY_WORDS))
    signals = list(scores.signals)
    points = 0.0
    if words > 1500:
        points += 3.0
        signals.append("very_long_prompt")
    elif words > 400:
        points += 2.5
        signals.append("long_prompt")
    elif words > 120:
        points += 1.0
        signals.append("medium_prompt")
    if hard:
        points += 1.5 * min(hard, 3)
        signals.append(f"hard_markers:{hard}")
    if medium:
        points += 0.75 if medium == 1 else 1.0
        signals.append(f"medium_markers:{medium}")
    # Four bullets start four lines: three newlines at least, else no need to look.
    if scan.count("?") > 2 or (scan.count("\n") > 2 and len(_BULLETS.findall(scan)) > 3):
        points += 0.75
        signals.append("multi_part")
    if scores.task in ("code", "math") and words > 25:
        points += 0.5
    if turns > 6:
        points += 0.5
        signals.append("long_conversation")

    if points >= 3.0:
        difficulty = Difficulty.HIGH
    elif points >= 0.75:
        difficulty = Difficulty.MEDIUM
    else:
        difficulty = Difficulty.LOW
    # Confidence: how clearly one task wins, and how far difficulty sits from a boundary.
    margin = scores.task_score - scores.runner_up
    task_conf = 0.55 if scores.task_score == 0 else min(0.95, 0.6 + 0.15 * margin)
    boundary = min(abs(points - 0.75), abs(points - 3.0))
    diff_conf = min(0.95, 0.55 + 0.2 * boundary)
    confidence = round(min(task_conf, diff_conf), 3)
    return Classification(
        task=scores.task,
        difficulty=difficulty,
        confidence=confidence,
        classifier="rules",
        signals=tuple(signals),
    )


class RulesClassifier:
    """The microsecond rule-based classifier, honouring the caller's task hint."""

    async def classify(self, request: RouteRequest) -> Classification:
        result = classify_text(request.prompt_text, turns=len(request.messages))
        if request.hints.task:
            return Classification(
                task=request.hints.task,
                difficulty=result.difficulty,
                confidence=1.0,
                classifier="hint+rules",
                agent=request.hints.agent,
                signals=result.signals,
            )
        if request.hints.agent:
            return Classification(
                task=result.task,
                difficulty=result.difficulty,
                confidence=result.confidence,
                classifier=result.classifier,
                agent=request.hints.agent,
                signals=result.signals,
            )
        return result
