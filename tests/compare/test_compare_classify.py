"""``compare`` of two (tiny, real) classifiers on class folders of real nuclei crops, and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile

from compare_testdata import BBBC, need_bbbc

pytestmark = pytest.mark.filterwarnings("ignore:only \\d+ image")


def _folders(root, per_class=5, size=48):
    """Two classes: crops of two different real BBBC039 images."""
    from morphoscope.io.images import read_image

    files = sorted((BBBC / "validation" / "images").glob("*.tif"))[3:5]
    for k, f in enumerate(files):
        img = read_image(f)
        (root / f"image{k}").mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            tifffile.imwrite(root / f"image{k}" / f"crop{i}.tif", img[50 * i:50 * i + size, 70 * i:70 * i + size])
    return root


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    need_bbbc()
    from morphoscope.training.run import train

    tmp = tmp_path_factory.mktemp("cls")
    data = _folders(tmp / "train")
    gt = _folders(tmp / "gt", per_class=4, size=64)
    runs = []
    for seed, head in ((0, "single_label"), (1, "single_label")):
        cfg = {"task": "classify", "name": f"c{seed}",
               "data": {"train": str(data), "image_size": 32, "val_fraction": 0.4, "intensity": "percentile"},
               "model": {"head": head},
               "train": {"epochs": 1, "iters_per_epoch": 1 + seed, "batch_size": 4, "device": "cpu", "threads": 1,
                         "seed": seed}}
        runs.append(train(cfg, out=tmp / f"c{seed}", progress=False))
    return tmp, runs, gt


def test_table_equals_each_models_own_evaluation(setup, tmp_path):
    from morphoscope.tasks.classify.metrics import evaluate_classifications
    from morphoscope.compare import compare
    from morphoscope.prediction.predict import predict

    tmp, runs, gt = setup
    result = compare(runs, gt, out=tmp_path / "out", n_boot=300, plots=False)
    assert result["task"] == "classification" and result["images"] == 8
    files = sorted(gt.glob("*/*.tif"))
    for name, run in zip(result["models"], runs):
        pred = predict(files, tmp_path / name, model=run, progress=False)
        own = evaluate_classifications(pred, gt)
        table = result["models"][name]["table"]
        for key in ("micro_f1", "macro_f1", "macro_f1_present", "exact_match", "hamming_loss", "mean_roc_auc"):
            assert table[key] == pytest.approx(own[key]), key
        assert result["models"][name]["per_class"]["f1"] == pytest.approx(
            {n: c["f1"] for n, c in own["per_class"].items()})
        boot = result["bootstrap"]["models"][name]
        for key in ("micro_f1", "macro_f1", "exact_match", "hamming_loss"):
            assert boot[key]["value"] == pytest.approx(table[key]), key
    # single-label: micro F1 is the accuracy
    assert table["micro_f1"] == pytest.approx(table["exact_match"])


def test_cli(setup, tmp_path):
    from typer.testing import CliRunner

    from morphoscope.cli import app

    tmp, runs, gt = setup
    out = tmp_path / "cmp"
    res = CliRunner().invoke(app, ["compare", *map(str, runs), "--gt", str(gt), "--out", str(out),
                                   "--bootstrap", "200", "--names", "first,second"])
    assert res.exit_code == 0, res.output
    assert "| micro F1 |" in res.output and "second − first" in res.output
    for f in ("comparison.md", "comparison.csv", "comparison.json", "differences.csv", "per_class_f1.png"):
        assert (out / f).is_file(), f
    saved = json.loads((out / "comparison.json").read_text())
    assert list(saved["models"]) == ["first", "second"]
    assert (out / "predictions" / "first" / "classifications.csv").is_file()
    res = CliRunner().invoke(app, ["compare", *map(str, runs), "--gt", str(gt), "--out", str(out)])
    assert res.exit_code != 0  # exists; needs --overwrite


def test_mixed_tasks_and_class_mismatch(setup, tmp_path):
    import torch

    from morphoscope.compare import compare
    from morphoscope.errors import InputError
    from morphoscope.engine.bundle import ModelBundle
    from morphoscope.tasks import load_model

    tmp, runs, gt = setup
    from morphoscope.tasks import get_task

    other = ModelBundle(name="x", task=get_task("instance"), model=torch.nn.Identity(), class_names=["nucleus"],
                        cfg=None, normalize={})
    with pytest.raises(InputError, match="different kinds"):
        compare([runs[0], other], gt, n_boot=100)
    wrong = load_model(runs[1])
    wrong.class_names = ["a", "b"]
    with pytest.raises(InputError, match="different classes"):
        compare([runs[0], wrong], gt, n_boot=100)
    (tmp_path / "extra").mkdir()
    tifffile.imwrite(tmp_path / "extra" / "x.tif", np.zeros((8, 8), np.uint16))
    with pytest.raises(InputError, match="not one of the declared classes"):
        compare(runs, tmp_path, n_boot=100)
