"""TF-IDF n-gram features in plain numpy, equal to scikit-learn's ``TfidfVectorizer``.

Serving must not import scikit-learn, so the fitted vectorisers are exported (vocabulary and idf)
and re-applied here. The tokenisation follows scikit-learn's rules exactly:

* ``word``: tokens match ``(?u)\\b\\w\\w+\\b``; n-grams join tokens with one space.
* ``char_wb``: runs of whitespace become one space; each whitespace-separated word is padded with
  a space on both sides and cut into n-grams; a padded word shorter than or as long as ``n`` yields
  itself once and stops the longer n-grams of that word.

Then term counts (``1 + ln(count)`` when sublinear), times idf, L2-normalised per block. A test
checks the output against scikit-learn to 1e-9.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from quorum.server.learned.text import focus_and_cues, prompt_cues

_WORD = re.compile(r"(?u)\b\w\w+\b")
_SPACES = re.compile(r"\s\s+")

WORD_CACHE_LIMIT = 100_000
"""Distinct words whose char n-gram columns a block remembers before starting afresh."""

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


def word_ngrams(text: str, low: int, high: int) -> list[str]:
    """Word n-grams of ``text`` for n in ``[low, high]``, in scikit-learn's order."""
    tokens = _WORD.findall(text)
    out: list[str] = list(tokens) if low == 1 else []
    start = max(low, 2)
    for n in range(start, min(high + 1, len(tokens) + 1)):
        out.extend(" ".join(tokens[i : i + n]) for i in range(len(tokens) - n + 1))
    return out


def char_wb_ngrams(text: str, low: int, high: int) -> list[str]:
    """Character n-grams inside word boundaries, as scikit-learn's ``char_wb`` analyzer."""
    out: list[str] = []
    for word in _SPACES.sub(" ", text).split():
        padded = f" {word} "
        size = len(padded)
        for n in range(low, high + 1):
            if size <= n:
                out.append(padded)
                break
            out.extend(padded[i : i + n] for i in range(size - n + 1))
    return out


def padded_word_ngrams(word: str, low: int, high: int) -> list[str]:
    """:func:`char_wb_ngrams` of a single whitespace-free ``word``, in the same order."""
    padded = f" {word} "
    size = len(padded)
    grams = [
        padded[i : i + n] for n in range(low, min(high, size - 1) + 1) for i in range(size - n + 1)
    ]
    if size <= high:
        grams.append(padded)
    return grams


def frequent_words(texts: Sequence[str], limit: int, min_df: int = 2) -> tuple[str, ...]:
    """Up to ``limit`` whitespace-separated words of ``texts`` with the highest document
    frequency (at least ``min_df``), most frequent first: a char_wb block's ``warm_words``."""
    df = Counter(w for t in texts for w in set(t.split()))
    ranked = sorted((w for w, c in df.items() if c >= min_df), key=lambda w: (-df[w], w))
    return tuple(ranked[:limit])


@dataclass(frozen=True)
class TfidfBlock:
    """One fitted vectoriser: ``analyzer`` is ``word`` or ``char_wb``."""

    analyzer: str
    ngram_range: tuple[int, int]
    vocabulary: dict[str, int]
    idf: FloatArray
    sublinear_tf: bool = True
    warm_words: tuple[str, ...] = ()
    _word_cache: dict[str, IntArray] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        if self.analyzer not in ("word", "char_wb"):
            raise ValueError(f"analyzer must be 'word' or 'char_wb', not {self.analyzer!r}")
        if len(self.idf) != len(self.vocabulary):
            raise ValueError("idf and vocabulary differ in length")
        if self.warm_words and self.analyzer != "char_wb":
            raise ValueError("warm_words only apply to a char_wb block")
        for word in self.warm_words[:WORD_CACHE_LIMIT]:
            self._word_columns(word)

    @property
    def size(self) -> int:
        """Number of columns."""
        return len(self.vocabulary)

    def terms(self, text: str) -> list[str]:
        """The n-grams of already-focused ``text``."""
        low, high = self.ngram_range
        if self.analyzer == "word":
            return word_ngrams(text, low, high)
        return char_wb_ngrams(text, low, high)

    def transform(self, text: str) -> tuple[IntArray, FloatArray]:
        """Sparse L2-normalised TF-IDF row of focused ``text``: column indices and values."""
        if self.analyzer == "char_wb":
            cols, tf = self._char_counts(text)
        else:
            found = [c for c in map(self.vocabulary.get, self.terms(text)) if c is not None]
            cols, counts = np.unique(np.asarray(found, dtype=np.int64), return_counts=True)
            tf = counts.astype(np.float64)
        if cols.size == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        if self.sublinear_tf:
            tf = np.log(tf) + 1.0
        vals = tf * self.idf[cols]
        norm = math.sqrt(float(vals @ vals))
        return cols, vals / norm if norm > 0 else vals

    def forget_words(self) -> None:
        """Empty the word cache (the warm words too): every word is cut again when next seen."""
        self._word_cache.clear()

    def _word_columns(self, word: str) -> IntArray:
        """Vocabulary columns of the char_wb n-grams of one word (repeats kept), remembered.

        ``char_wb`` n-grams never cross a word, so each distinct word is cut and looked up once;
        a frequent word then costs one dictionary lookup. The cache starts with the block's
        ``warm_words`` (frequent words of the training prompts) and starts afresh when it holds
        :data:`WORD_CACHE_LIMIT` words.
        """
        cols = self._word_cache.get(word)
        if cols is None:
            low, high = self.ngram_range
            get = self.vocabulary.get
            found = [c for c in map(get, padded_word_ngrams(word, low, high)) if c is not None]
            cols = np.asarray(found, dtype=np.int64)
            if len(self._word_cache) >= WORD_CACHE_LIMIT:
                self._word_cache.clear()
            self._word_cache[word] = cols
        return cols

    def _char_counts(self, text: str) -> tuple[IntArray, FloatArray]:
        """Columns and raw counts of the char_wb n-grams of ``text``."""
        words = Counter(text.split())  # == sklearn's whitespace squeeze followed by split()
        if not words:
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        parts = [self._word_columns(w) for w in words]
        lengths = np.fromiter(map(len, parts), dtype=np.int64, count=len(parts))
        repeats = np.fromiter(words.values(), dtype=np.float64, count=len(parts))
        weights = np.repeat(repeats, lengths)
        counts: FloatArray = np.asarray(
            np.bincount(np.concatenate(parts), weights=weights, minlength=self.size),
            dtype=np.float64,
        )
        cols = np.flatnonzero(counts)
        return cols.astype(np.int64), counts[cols]


@dataclass(frozen=True)
class SparseRow:
    """A feature row: values at column indices of a :class:`FeatureSpace`."""

    cols: IntArray
    vals: FloatArray

    def dot(self, weights: FloatArray) -> FloatArray:
        """``row @ weights`` for a ``(features, k)`` or ``(features,)`` weight array."""
        return np.asarray(self.vals @ weights[self.cols], dtype=np.float64)


@dataclass(frozen=True)
class FeatureSpace:
    """TF-IDF blocks followed by standardised prompt cues: the router's feature vector."""

    blocks: tuple[TfidfBlock, ...]
    cue_mean: FloatArray
    cue_scale: FloatArray
    offsets: tuple[int, ...] = field(init=False)
    _cue_cols: IntArray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        starts: list[int] = []
        total = 0
        for block in self.blocks:
            starts.append(total)
            total += block.size
        starts.append(total)
        object.__setattr__(self, "offsets", tuple(starts))
        cue_cols = np.arange(len(self.cue_mean), dtype=np.int64) + total
        object.__setattr__(self, "_cue_cols", cue_cols)

    @property
    def size(self) -> int:
        """Total number of columns (n-grams of every block, then the cues)."""
        return self.offsets[-1] + len(self.cue_mean)

    def cues(self, prompt: str) -> FloatArray:
        """The prompt's standardised cues."""
        raw = np.asarray(prompt_cues(prompt), dtype=np.float64)
        return (raw - self.cue_mean) / self.cue_scale

    def transform(self, prompt: str) -> SparseRow:
        """The prompt's feature row."""
        text, raw = focus_and_cues(prompt)
        cols: list[IntArray] = []
        vals: list[FloatArray] = []
        for block, start in zip(self.blocks, self.offsets, strict=False):
            c, v = block.transform(text)
            cols.append(c + start)
            vals.append(v)
        cols.append(self._cue_cols)
        vals.append((np.asarray(raw, dtype=np.float64) - self.cue_mean) / self.cue_scale)
        return SparseRow(np.concatenate(cols), np.concatenate(vals))

    def transform_dense(self, prompts: Sequence[str]) -> FloatArray:
        """Dense ``(len(prompts), size)`` matrix; for tests and small batches only."""
        out = np.zeros((len(prompts), self.size))
        for i, p in enumerate(prompts):
            row = self.transform(p)
            out[i, row.cols] = row.vals
        return out
