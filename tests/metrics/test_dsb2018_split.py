"""The committed DSB2018 train/validation split (configs/splits/, made by
scripts/make_dsb2018_split.py): disjoint, complete, stratified by modality, BBBC039 copies on
BBBC039's side, and exactly what the script derives from the data."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

PROJECT = Path(__file__).resolve().parents[2]
SPLITS = PROJECT / "configs" / "splits"
SCRIPT = PROJECT / "scripts" / "make_dsb2018_split.py"


def _ids(name: str) -> list[str]:
    return (SPLITS / name).read_text().split()


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return pd.read_csv(SPLITS / "dsb2018_modality.csv", keep_default_na=False)


def test_lists_are_disjoint_and_complete(table):
    train, val = _ids("dsb2018_train.txt"), _ids("dsb2018_val.txt")
    assert len(set(train)) == len(train) and len(set(val)) == len(val)
    assert not set(train) & set(val)
    assert sorted(train + val) == sorted(table["ImageId"]) and len(table) == 664
    assert table["n_nuclei"].sum() == 28_986  # as shared/data/README.md counts them
    assert table["n_nuclei"].min() >= 1
    assert len(val) / len(table) == pytest.approx(0.2, abs=0.01)


def test_each_modality_in_proportion(table):
    val = set(_ids("dsb2018_val.txt"))
    counts = table.assign(val=table["ImageId"].isin(val)).groupby("modality")["val"].agg(
        ["size", "sum"])
    assert counts["size"].to_dict() == {"fluorescence": 541, "brightfield": 16, "histology": 107}
    for modality, (n, n_val) in counts.iterrows():
        assert n_val == round(0.2 * n), modality  # 108, 3, 21: each within half an image
    # histology is the colour class: all 256x320 H&E-style crops
    assert set(zip(*table[table.modality == "histology"][["height", "width"]].values.T)) == {
        (256, 320)}


def test_bbbc039_copies_follow_bbbc039_split(table):
    val = set(_ids("dsb2018_val.txt"))
    copies = table[table["bbbc039_image"] != ""]
    assert len(copies) == 34
    for _, row in copies.iterrows():
        side = row["bbbc039_image"].split("/")[0]
        assert (row["ImageId"] in val) == (side == "validation"), row["ImageId"]
        assert (row["modality"], row["height"], row["width"]) == ("fluorescence", 520, 696)


def test_script_reproduces_the_committed_files(shared_data, tmp_path):
    """Re-running on the data gives byte-identical files (and they are the committed ones)."""
    args = [sys.executable, str(SCRIPT), "--data", str(shared_data / "dsb2018" / "stage1_train"),
            "--bbbc039", str(shared_data / "bbbc039")]
    run = subprocess.run(args + ["--check"], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "fluorescence:  541 images, train  433, validation  108" in run.stdout
    run = subprocess.run(args + ["--out", str(tmp_path), "--seed", "7"], capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    # another seed: another validation list with the same strata
    other = (tmp_path / "dsb2018_val.txt").read_text().split()
    assert other != _ids("dsb2018_val.txt") and len(other) == len(_ids("dsb2018_val.txt"))
    assert (tmp_path / "dsb2018_modality.csv").read_text() == (
        SPLITS / "dsb2018_modality.csv").read_text()
    run = subprocess.run(args + ["--out", str(tmp_path), "--seed", "7", "--check"],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
