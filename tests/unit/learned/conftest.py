"""Fixtures: synthetic data on disk and a router trained on it once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from quorum.server.learned.data import load_prices, load_rows
from quorum.server.learned.router import LearnedRouter
from quorum.server.learned.training import FittedHead, TrainConfig, train_router

from .synthetic import multi_rows, pair_rows, write_jsonl, write_prices

SMALL = TrainConfig(
    folds=2,
    word_features=400,
    char_features=400,
    multi_word_features=200,
    multi_char_features=200,
    category_top_k=50,
    category_min_rows=5,
)


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with pair.jsonl, multi.jsonl and prices.json."""
    folder = tmp_path_factory.mktemp("routing")
    write_jsonl(folder / "pair.jsonl", pair_rows(160))
    write_jsonl(folder / "multi.jsonl", multi_rows(120))
    write_prices(folder / "prices.json")
    return folder


@pytest.fixture(scope="session")
def trained(data_dir: Path) -> tuple[LearnedRouter, dict[str, FittedHead]]:
    """The router trained on the synthetic data with a small config."""
    rows = load_rows([data_dir / "pair.jsonl", data_dir / "multi.jsonl"])
    return train_router(rows, load_prices(data_dir / "prices.json"), SMALL)
