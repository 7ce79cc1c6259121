"""The numpy TF-IDF equals scikit-learn's TfidfVectorizer."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer  # type: ignore[import-untyped]

from quorum.server.learned import text as text_module
from quorum.server.learned.data import DataError, default_data_files, load_rows
from quorum.server.learned.fitting import cue_block_scale
from quorum.server.learned.text import (
    CUE_NAMES,
    MAX_READ_CHARS,
    focus_and_cues,
    focus_text,
    prompt_cues,
)
from quorum.server.learned.tfidf import (
    TfidfBlock,
    char_wb_ngrams,
    frequent_words,
    padded_word_ngrams,
    word_ngrams,
)

TEXTS = [
    "the quick brown fox jumps over the lazy dog",
    "a b c  d\te\nf — naïve café déjà vu, x^2 + 3x = 7?",
    "Statement 1 | Every group is abelian. Statement 2 | Z_5 is a field.\nA. True, True",
    "",
    "ab",
    "I  I I ii iii iiii iiiii",
    "numbers 12 345 6,789 3.14 and $100 in 2024!",
]


@pytest.mark.parametrize(
    ("analyzer", "ngram_range"),
    [("word", (1, 2)), ("char_wb", (3, 5)), ("char_wb", (2, 2)), ("word", (2, 3))],
)
def test_numpy_tfidf_equals_sklearn(analyzer: str, ngram_range: tuple[int, int]) -> None:
    texts = [t.lower() for t in TEXTS]
    vec = TfidfVectorizer(
        analyzer=analyzer, ngram_range=ngram_range, sublinear_tf=True, preprocessor=lambda t: t
    ).fit(texts[:5])
    block = TfidfBlock(
        analyzer,
        ngram_range,
        {str(k): int(v) for k, v in vec.vocabulary_.items()},
        np.asarray(vec.idf_, dtype=np.float64),
    )
    expected = vec.transform(texts).toarray()
    for i, text in enumerate(texts):
        got = np.zeros(block.size)
        cols, vals = block.transform(text)
        got[cols] = vals
        np.testing.assert_allclose(got, expected[i], rtol=0, atol=1e-12)


def test_ngram_functions_follow_sklearn_order() -> None:
    assert word_ngrams("a bb cc dd", 1, 2) == ["bb", "cc", "dd", "bb cc", "cc dd"]
    assert char_wb_ngrams("ab cdef", 3, 4) == [
        " ab",
        "ab ",
        " ab ",
        " cd",
        "cde",
        "def",
        "ef ",
        " cde",
        "cdef",
        "def ",
    ]
    assert char_wb_ngrams("a", 3, 5) == [" a "]


def test_bad_block_is_rejected() -> None:
    with pytest.raises(ValueError, match="analyzer"):
        TfidfBlock("char", (1, 1), {}, np.zeros(0))
    with pytest.raises(ValueError, match="differ in length"):
        TfidfBlock("word", (1, 1), {"a": 0}, np.zeros(2))


def test_few_shot_prompts_focus_on_the_last_question() -> None:
    shot = "Q: {}\\nA) x\\nB) y\\nAnswer:\\nA"
    prompt = (
        "['"
        + "\\n\\n".join(
            [shot.format(i) for i in range(4)] + ["Q: the real one\\nA) x\\nB) y\\nAnswer:"]
        )
        + "']"
    )
    assert focus_text(prompt) == "q: the real one\na) x\nb) y\nanswer:"
    assert focus_text("Plain Question?") == "plain question?"
    cues = prompt_cues(prompt)
    assert len(cues) == len(CUE_NAMES)
    assert cues[CUE_NAMES.index("few_shot")] == 1.0


def test_cue_scale_is_floored() -> None:
    scale = cue_block_scale(np.array([0.0, 1.0, 4.0, 0.01]))
    np.testing.assert_allclose(scale, 2.0 * np.array([0.25, 1.0, 4.0, 0.25]))


def test_warm_and_cached_words_give_the_same_row() -> None:
    texts = [t.lower() for t in TEXTS]
    vec = TfidfVectorizer(
        analyzer="char_wb", ngram_range=(3, 5), sublinear_tf=True, preprocessor=lambda t: t
    ).fit(texts)
    vocab = {str(k): int(v) for k, v in vec.vocabulary_.items()}
    idf = np.asarray(vec.idf_, dtype=np.float64)
    cold = TfidfBlock("char_wb", (3, 5), vocab, idf)
    warm = TfidfBlock("char_wb", (3, 5), vocab, idf, warm_words=frequent_words(texts, 50, 1))
    for text in texts + texts:  # the second pass reads the cache filled by the first
        a, b = cold.transform(text), warm.transform(text)
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_allclose(a[1], b[1], rtol=0, atol=1e-15)
    with pytest.raises(ValueError, match="warm_words"):
        TfidfBlock("word", (1, 1), {"ab": 0}, np.ones(1), warm_words=("ab",))


def test_frequent_words_rank_by_document_frequency() -> None:
    assert frequent_words(["a b b", "b c", "c d", "b"], 10) == ("b", "c")
    assert frequent_words(["a b b", "b c", "c d", "b"], 1) == ("b",)
    assert frequent_words(["x"], 5, min_df=1) == ("x",)


def test_padded_word_ngrams_equal_char_wb_ngrams_of_one_word() -> None:
    for word in ("a", "ab", "abc", "abcd", "abcdefgh", "naïve"):
        for low, high in ((3, 5), (2, 2), (1, 4)):
            assert padded_word_ngrams(word, low, high) == char_wb_ngrams(word, low, high)


def test_only_the_tail_of_a_huge_prompt_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    # 3.5 MB: every cue but the two lengths is that of the last MAX_READ_CHARS characters,
    # and the lengths still count the whole prompt.
    prompt = "The quick brown fox jumps over 12345 sheep. " * 80_000 + "Why? Answer:"
    tail = prompt[-MAX_READ_CHARS:]
    read: list[int] = []
    classes = text_module._char_classes

    def counting(text: str) -> tuple[int, int, int]:
        read.append(len(text))
        return classes(text)

    monkeypatch.setattr(text_module, "_char_classes", counting)
    focus, cues = focus_and_cues(prompt)
    tail_focus, tail_cues = focus_and_cues(tail)
    assert read == [MAX_READ_CHARS, MAX_READ_CHARS]
    assert focus == tail_focus and focus.endswith("why? answer:")
    lengths = {CUE_NAMES.index("log_chars"), CUE_NAMES.index("log_focus_chars")}
    assert [c for i, c in enumerate(cues) if i not in lengths] == [
        c for i, c in enumerate(tail_cues) if i not in lengths
    ]
    for name in ("log_chars", "log_focus_chars"):
        assert cues[CUE_NAMES.index(name)] == math.log1p(len(prompt))
    assert prompt_cues(prompt) == cues and focus_text(prompt) == focus


def test_prompts_up_to_the_bound_are_read_whole() -> None:
    body = "a " * ((MAX_READ_CHARS - 4) // 2)
    whole = "123 " + body
    assert len(whole) == MAX_READ_CHARS
    numbers = CUE_NAMES.index("log_numbers")
    assert prompt_cues(whole)[numbers] == math.log1p(1)  # the leading number is read
    assert prompt_cues("x" + whole)[numbers] == math.log1p(1)  # one char over: "x" unread
    assert prompt_cues("1234 " + whole)[numbers] == math.log1p(1)  # "1234 " unread
    assert prompt_cues(whole[4:])[numbers] == 0.0


def test_a_huge_few_shot_prompt_still_focuses_on_its_last_question() -> None:
    shot = "Q: {}\\nA) x\\nB) y\\nAnswer:\\nA"
    shots = [shot.format(i) for i in range(20_000)]
    prompt = "['" + "\\n\\n".join([*shots, "Q: the real one\\nA) x\\nB) y\\nAnswer:"]) + "']"
    assert len(prompt) > 10 * MAX_READ_CHARS
    assert focus_text(prompt) == "q: the real one\na) x\nb) y\nanswer:"
    assert prompt_cues(prompt)[CUE_NAMES.index("few_shot")] == 1.0


def test_every_training_prompt_is_far_below_the_bound() -> None:
    # So the bound changes no feature the router was trained or calibrated on.
    try:
        rows = load_rows(default_data_files())
    except DataError:
        pytest.skip("routing data not available")
    assert max(len(r.prompt) for r in rows) * 2 <= MAX_READ_CHARS
