"""The router artifact: ``manifest.json`` (readable) beside ``weights.npz`` (arrays).

The manifest carries ``format_version``, the training data's file names and SHA-256, the
training config, and per source: the kind of head, its models (cheapest first), calibrated
thresholds or lambda (``thresholds``/``lambdas``: one for each standard target; ``lambdas`` is
optional, older artifacts lack it), and the shapes of its arrays; a head calibrated otherwise
than on full rows (trained from the decision log's feedback) says how under ``calibration``.
The manifest is strict JSON: a pair head's threshold (or its cascade's) that no prompt can reach,
+inf in memory (the cheap model alone meets the target: never route to the strong model), is
written as ``null`` and read back as +inf; any other figure that is undefined (NaN) is ``null``.
``weights.npz`` holds vocabularies (as string arrays), idf, coefficients, scalers and the char
blocks' warm words (frequent training words whose n-grams are looked up once, at load) under keys
``h<index>.<name>``. Coefficient matrices are stored as float16 and the rest as float32; training
rounded the estimators to the same values before export, so scores still equal the scikit-learn
pipeline's. Loading needs only numpy and checks the version first.
"""

from __future__ import annotations

import json
import math
import zipfile
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from quorum.server.learned.heads import (
    PAIR,
    CascadeVerifier,
    CategoryPrior,
    CostModel,
    SourceHead,
)
from quorum.server.learned.router import LearnedRouter
from quorum.server.learned.tfidf import FeatureSpace, TfidfBlock

FORMAT_VERSION = 1
# Written instead when the manifest holds a null threshold (one no prompt reaches), which
# builds reading only version 1 would misread: they refuse it by its version instead.
FORMAT_VERSION_NULL_THRESHOLDS = 2
READABLE_VERSIONS = (FORMAT_VERSION, FORMAT_VERSION_NULL_THRESHOLDS)
MANIFEST = "manifest.json"
WEIGHTS = "weights.npz"

FloatArray = npt.NDArray[np.float64]


class ArtifactError(ValueError):
    """The artifact is missing, of another format version, or inconsistent."""


def _f32(a: npt.ArrayLike) -> npt.NDArray[np.float32]:
    return np.asarray(a, dtype=np.float32)


def _json_ready(value: Any) -> Any:
    """``value`` with every non-finite number (NaN, ±inf) replaced by None, for strict JSON."""
    if isinstance(value, float | np.floating):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, Mapping):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_ready(v) for v in value]
    return value


def _threshold(value: Any) -> float:
    """A stored pair or cascade threshold: ``null`` is +inf (never route to the strong model)."""
    return math.inf if value is None else float(value)


def _head_arrays(prefix: str, head: SourceHead) -> dict[str, npt.NDArray[Any]]:
    arrays: dict[str, npt.NDArray[Any]] = {}
    for i, block in enumerate(head.space.blocks):
        terms = sorted(block.vocabulary, key=block.vocabulary.__getitem__)
        arrays[f"{prefix}.vocab{i}"] = np.array(terms, dtype=np.str_)
        arrays[f"{prefix}.idf{i}"] = _f32(block.idf)
        if block.warm_words:
            arrays[f"{prefix}.warm{i}"] = np.array(block.warm_words, dtype=np.str_)
    arrays[f"{prefix}.cue_mean"] = _f32(head.space.cue_mean)
    arrays[f"{prefix}.cue_scale"] = _f32(head.space.cue_scale)
    arrays[f"{prefix}.coef"] = np.asarray(head.coef, dtype=np.float16)
    arrays[f"{prefix}.intercept"] = _f32(head.intercept)
    arrays[f"{prefix}.cost_base"] = np.asarray(head.cost.base, dtype=np.float64)
    arrays[f"{prefix}.cost_per_token"] = np.asarray(head.cost.per_token, dtype=np.float64)
    if head.category is not None:
        w = head.category.weights
        rows, cols = np.nonzero(w)
        arrays[f"{prefix}.cat_rows"] = rows.astype(np.int32)
        arrays[f"{prefix}.cat_cols"] = cols.astype(np.int16)
        arrays[f"{prefix}.cat_vals"] = _f32(w[rows, cols])
        arrays[f"{prefix}.cat_intercept"] = _f32(head.category.intercept)
        arrays[f"{prefix}.cat_prior"] = _f32(head.category.prior)
    if head.cascade is not None:
        arrays[f"{prefix}.ver_coef"] = _f32(head.cascade.coef)
        arrays[f"{prefix}.ver_mean"] = _f32(head.cascade.mean)
        arrays[f"{prefix}.ver_scale"] = _f32(head.cascade.scale)
    return arrays


def _head_manifest(prefix: str, head: SourceHead) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "prefix": prefix,
        "kind": head.kind,
        "models": list(head.models),
        "quality_target": head.quality_target,
        "threshold": head.threshold,
        "thresholds": dict(head.thresholds or {}),
        "lambda": head.lam,
        "lambdas": dict(head.lambdas or {}),
        "blocks": [
            {"analyzer": b.analyzer, "ngram_range": list(b.ngram_range), "size": b.size}
            | {"sublinear_tf": b.sublinear_tf, "warm_words": len(b.warm_words)}
            for b in head.space.blocks
        ],
        "features": head.space.size,
        "category": None,
        "cascade": None,
    }
    if head.calibration is not None:  # only heads calibrated otherwise than on full rows
        entry["calibration"] = head.calibration
    if head.category is not None:
        entry["category"] = {
            "labels": list(head.category.labels),
            "temperature": head.category.temperature,
            "weight": head.category.weight,
        }
    if head.cascade is not None:
        entry["cascade"] = {
            "intercept": head.cascade.intercept,
            "threshold": head.cascade.threshold,
            "thresholds": dict(head.cascade.thresholds),
        }
    return entry


def save_router(router: LearnedRouter, folder: Path, extra: Mapping[str, Any]) -> None:
    """Write ``router`` to ``folder`` (created if needed); ``extra`` joins the manifest."""
    folder.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, npt.NDArray[Any]] = {}
    heads: dict[str, Any] = {}
    for i, (source, head) in enumerate(router.heads.items()):
        prefix = f"h{i}"
        arrays.update(_head_arrays(prefix, head))
        heads[source] = _head_manifest(prefix, head)
    unreachable = any(
        h.threshold == math.inf
        or (h.cascade is not None and h.cascade.threshold == math.inf)
        or any(t == math.inf for t in (h.thresholds or {}).values())
        or (h.cascade is not None and any(t == math.inf for t in h.cascade.thresholds.values()))
        for h in router.heads.values()
    )
    version = FORMAT_VERSION_NULL_THRESHOLDS if unreachable else FORMAT_VERSION
    manifest = {"format_version": version, **extra}
    manifest["default_source"] = router.default_source
    manifest["heads"] = heads
    text = json.dumps(_json_ready(manifest), indent=2, sort_keys=False, allow_nan=False)
    np.savez_compressed(folder / WEIGHTS, allow_pickle=False, **arrays)
    (folder / MANIFEST).write_text(text + "\n")


def read_manifest(folder: Path) -> dict[str, Any]:
    """The manifest of an artifact, after checking that its format version is supported."""
    path = folder / MANIFEST
    if not path.is_file():
        raise ArtifactError(f"{path}: no router manifest here (train one: quorum router train)")
    try:
        manifest = json.loads(path.read_bytes().decode("utf-8"))
    except OSError as exc:
        raise ArtifactError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    except UnicodeDecodeError as exc:
        raise ArtifactError(f"{path}: not UTF-8 text (a damaged manifest?)") from exc
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{path}:{exc.lineno}: not JSON ({exc.msg})") from exc
    version = manifest.get("format_version") if isinstance(manifest, dict) else None
    if version not in READABLE_VERSIONS:
        readable = " and ".join(str(v) for v in READABLE_VERSIONS)
        raise ArtifactError(
            f"{path}: format_version {version!r} is not supported (this build reads "
            f"{readable}); retrain with: quorum router train --out {folder}"
        )
    return dict(manifest)


def _load_head(source: str, entry: Mapping[str, Any], z: Mapping[str, Any]) -> SourceHead:
    p = entry["prefix"]

    def arr(name: str) -> FloatArray:
        key = f"{p}.{name}"
        if key not in z:
            raise ArtifactError(f"weights.npz lacks {key} (source {source!r})")
        return np.asarray(z[key], dtype=np.float64)

    blocks = []
    for i, spec in enumerate(entry["blocks"]):
        terms = [str(t) for t in z[f"{p}.vocab{i}"]]
        warm = tuple(str(t) for t in z[f"{p}.warm{i}"]) if f"{p}.warm{i}" in z else ()
        blocks.append(
            TfidfBlock(
                analyzer=str(spec["analyzer"]),
                ngram_range=(int(spec["ngram_range"][0]), int(spec["ngram_range"][1])),
                vocabulary={t: j for j, t in enumerate(terms)},
                idf=arr(f"idf{i}"),
                sublinear_tf=bool(spec["sublinear_tf"]),
                warm_words=warm,
            )
        )
    space = FeatureSpace(tuple(blocks), arr("cue_mean"), arr("cue_scale"))
    if space.size != int(entry["features"]):
        raise ArtifactError(
            f"source {source!r}: {space.size} features, manifest says {entry['features']}"
        )
    category = None
    if entry.get("category"):
        spec = entry["category"]
        labels = tuple(str(x) for x in spec["labels"])
        weights = np.zeros((space.size, len(labels)))
        rows = np.asarray(z[f"{p}.cat_rows"], dtype=np.int64)
        cols = np.asarray(z[f"{p}.cat_cols"], dtype=np.int64)
        weights[rows, cols] = arr("cat_vals")
        category = CategoryPrior(
            labels=labels,
            weights=weights,
            intercept=arr("cat_intercept"),
            temperature=float(spec["temperature"]),
            prior=arr("cat_prior"),
            weight=float(spec["weight"]),
        )
    cascade = None
    if entry.get("cascade"):
        spec = entry["cascade"]
        cascade = CascadeVerifier(
            coef=arr("ver_coef"),
            intercept=float(spec["intercept"]),
            mean=arr("ver_mean"),
            scale=arr("ver_scale"),
            threshold=_threshold(spec["threshold"]),
            thresholds={str(k): _threshold(v) for k, v in spec["thresholds"].items()},
        )
    threshold = entry.get("threshold")
    if str(entry["kind"]) == PAIR:
        threshold = _threshold(threshold)
    lam = entry.get("lambda")
    return SourceHead(
        source=source,
        kind=str(entry["kind"]),
        models=tuple(str(m) for m in entry["models"]),
        space=space,
        coef=arr("coef"),
        intercept=arr("intercept"),
        category=category,
        cost=CostModel(arr("cost_base"), arr("cost_per_token")),
        quality_target=float(entry["quality_target"]),
        threshold=None if threshold is None else float(threshold),
        thresholds={str(k): _threshold(v) for k, v in (entry.get("thresholds") or {}).items()},
        lam=None if lam is None else float(lam),
        # absent from artifacts written before it (format_version 1 all the same)
        lambdas={str(k): float(v) for k, v in (entry.get("lambdas") or {}).items()},
        cascade=cascade,
        calibration=None if entry.get("calibration") is None else str(entry["calibration"]),
    )


def load_router(folder: Path) -> LearnedRouter:
    """Load the router stored in ``folder``; raises :class:`ArtifactError` with a fix-it hint."""
    manifest = read_manifest(folder)
    weights = folder / WEIGHTS
    if not weights.is_file():
        raise ArtifactError(f"{weights}: missing (the manifest has no weights beside it)")
    try:
        # the file is opened here: np.load leaves it open when it is not a readable zip
        with weights.open("rb") as fh, np.load(fh, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as exc:
        # a truncated or damaged file: not a zip, a bad member, a bad array header, ...
        raise ArtifactError(
            f"{folder}: not a usable router artifact: {WEIGHTS} is damaged "
            f"({type(exc).__name__}: {exc}); retrain with: quorum router train --out {folder}"
        ) from exc
    try:
        heads = {s: _load_head(s, e, arrays) for s, e in manifest["heads"].items()}
        return LearnedRouter(
            heads=heads, default_source=str(manifest["default_source"]), manifest=manifest
        )
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, ArtifactError):
            raise
        raise ArtifactError(f"{folder}: inconsistent artifact ({exc})") from exc
