"""Fixtures of the metrics tests (helpers are in metrics_testdata.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from metrics_testdata import BBBC_VAL, PREFIXES, perturb, write_pred_dir
from morphoscope.io.images import read_label_image


def _find(prefix: str) -> str:
    hits = sorted(p.stem for p in (BBBC_VAL / "labels").glob(f"{prefix}*.png"))
    assert len(hits) == 1, prefix
    return hits[0]


@pytest.fixture(scope="session")
def bbbc_names() -> list[str]:
    if not BBBC_VAL.is_dir():
        pytest.skip("../shared/data not present (fresh clone): BBBC039 validation set needed")
    return [_find(p) for p in PREFIXES]


@pytest.fixture(scope="session")
def gt_labels(bbbc_names) -> list[np.ndarray]:
    return [read_label_image(BBBC_VAL / "labels" / f"{n}.png") for n in bbbc_names]


@pytest.fixture(scope="session")
def predictions(gt_labels) -> list[tuple[np.ndarray, dict[int, float]]]:
    rng = np.random.default_rng(39)
    return [perturb(g, rng) for g in gt_labels]


@pytest.fixture(scope="session")
def gt_dir(bbbc_names, tmp_path_factory) -> Path:
    """A BBBC039-layout copy of the three validation images."""
    root = tmp_path_factory.mktemp("gt")
    for sub, suffix in (("images", ".tif"), ("labels", ".png")):
        (root / sub).mkdir()
        for n in bbbc_names:
            shutil.copy(BBBC_VAL / sub / f"{n}{suffix}", root / sub / f"{n}{suffix}")
    return root


@pytest.fixture(scope="session")
def pred_dir(bbbc_names, predictions, tmp_path_factory) -> Path:
    return write_pred_dir(tmp_path_factory.mktemp("pred") / "out", bbbc_names, predictions)
