"""Fixtures of the metrics tests (helpers are in metrics_testdata.py)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from metrics_testdata import BBBC_VAL, PREFIXES, SHIPPED_PREFIXES, perturb, write_pred_dir
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


@pytest.fixture(scope="session")
def shipped_model_predictions(shared_data, tmp_path_factory) -> tuple[Path, Path, list[str]]:
    """(prediction folder, GT folder, image names in GT order): the shipped nuclei model run by
    'morphoscope predict' (CPU) on five BBBC039 validation images, one of them without nuclei."""
    val = shared_data / "bbbc039" / "validation"
    names = sorted(q.stem for p in SHIPPED_PREFIXES for q in (val / "labels").glob(f"{p}*.png"))
    assert len(names) == len(SHIPPED_PREFIXES)
    root = tmp_path_factory.mktemp("shipped")
    for sub, suffix in (("images", ".tif"), ("labels", ".png")):
        (root / "gt" / sub).mkdir(parents=True)
        for n in names:
            shutil.copy(val / sub / f"{n}{suffix}", root / "gt" / sub / f"{n}{suffix}")
    run = subprocess.run(
        [sys.executable, "-m", "morphoscope", "predict", str(root / "gt" / "images"),
         "--out", str(root / "pred"), "--device", "cpu"],
        capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    return root / "pred", root / "gt", names
