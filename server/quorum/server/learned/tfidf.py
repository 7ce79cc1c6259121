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
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from quorum.server.learned.text import focus_text, prompt_cues

_WORD = re.compile(r"(?u)\b\w\w+\b")
_SPACES = re.compile(r"\s\s+")

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


@dataclass(frozen=True)
class TfidfBlock:
    """One fitted vectoriser: ``analyzer`` is ``word`` or ``char_wb``."""

    analyzer: str
    ngram_range: tuple[int, int]
    vocabulary: dict[str, int]
    idf: FloatArray
    sublinear_tf: bool = True

    def __post_init__(self) -> None:
        if self.analyzer not in ("word", "char_wb"):
            raise ValueError(f"analyzer must be 'word' or 'char_wb', not {self.analyzer!r}")
        if len(self.idf) != len(self.vocabulary):
            raise ValueError("idf and vocabulary differ in length")

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
        counts: dict[int, int] = {}
        vocab = self.vocabulary
        for term in self.terms(text):
            col = vocab.get(term)
            if col is not None:
                counts[col] = counts.get(col, 0) + 1
        if not counts:
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        cols = np.fromiter(counts.keys(), dtype=np.int64, count=len(counts))
        tf = np.fromiter(counts.values(), dtype=np.float64, count=len(counts))
        if self.sublinear_tf:
            tf = np.log(tf) + 1.0
        vals = tf * self.idf[cols]
        norm = math.sqrt(float(vals @ vals))
        return cols, vals / norm if norm > 0 else vals


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

    def __post_init__(self) -> None:
        starts: list[int] = []
        total = 0
        for block in self.blocks:
            starts.append(total)
            total += block.size
        starts.append(total)
        object.__setattr__(self, "offsets", tuple(starts))

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
        text = focus_text(prompt)
        cols: list[IntArray] = []
        vals: list[FloatArray] = []
        for block, start in zip(self.blocks, self.offsets, strict=False):
            c, v = block.transform(text)
            cols.append(c + start)
            vals.append(v)
        cue_cols = np.arange(len(self.cue_mean), dtype=np.int64) + self.offsets[-1]
        cols.append(cue_cols)
        vals.append(self.cues(prompt))
        return SparseRow(np.concatenate(cols), np.concatenate(vals))

    def transform_dense(self, prompts: Sequence[str]) -> FloatArray:
        """Dense ``(len(prompts), size)`` matrix; for tests and small batches only."""
        out = np.zeros((len(prompts), self.size))
        for i, p in enumerate(prompts):
            row = self.transform(p)
            out[i, row.cols] = row.vals
        return out
