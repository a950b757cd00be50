"""The pancreas CT workflow (docs/ct.md, examples/ct_pancreas.py) on the real pancreas-ct-nih5
slices: the documented intensity window holds, the leave-one-patient-out folds never test on a
training patient, the two arms differ only in their initial weights, and the pixel
false-negative rate of the bootstrap is FN / (TP + FN)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import yaml

PROJECT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def ct():
    spec = importlib.util.spec_from_file_location("ct_pancreas", PROJECT / "examples" / "ct_pancreas.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def data(shared_data):
    root = shared_data / "pancreas-ct-nih5"
    if not (root / "masks").is_dir():
        pytest.skip(f"pancreas-ct-nih5 not present under {shared_data}")
    return root


def test_the_jpegs_carry_the_documented_window(ct, data):
    """8-bit value = CT number clipped to [0, 255] HU: fat and air (< 0 HU) are 0, bone and
    contrast saturate, soft tissue lies in between; min..max normalisation is then that window."""
    names = ct.slices(data)
    assert len(names) == 5
    for name in names:
        grey, mask = ct.read_slice(name, data)
        assert grey.dtype == np.uint8 and grey.shape == (512, 512)
        assert grey.min() == 0 and grey.max() == 255  # normalize low 0 / high 100 -> 0..255 fixed
        assert (grey == 0).mean() > 0.5  # air and fat, all clipped to 0
        assert 0 < (grey == 255).mean() < 0.03  # bone and contrast, clipped
        assert 60 <= np.median(grey[mask]) <= 110, name  # pancreas: soft tissue, ~40-150 HU
    assert ct.window_hu(np.array([-1000, -100, 0, 45, 255, 1200])).tolist() == [0, 0, 0, 45, 255, 255]
    assert ct.window_hu(np.array([-160, 40, 240]), low=-160, high=240).tolist() == [0, 128, 255]


def test_folds_leave_one_patient_out_and_arms_differ_only_in_weights(ct, data, tmp_path):
    ct.prepare(tmp_path, data)
    names = ct.slices(data)
    folds = sorted(tmp_path.glob("fold*"))
    assert len(folds) == 5
    tested = []
    for fold in folds:
        train = {p.stem for p in (fold / "train" / "labels").glob("*.png")}
        test = {p.stem for p in (fold / "test" / "labels").glob("*.png")}
        assert len(test) == 1 and len(train) == 4 and not train & test
        assert {n.split("-")[0] for n in train}.isdisjoint(n.split("-")[0] for n in test)  # other patients
        tested += test
        cfgs = {arm: yaml.safe_load((fold / f"{arm}.yaml").read_text()) for arm in ("scratch", "pretrained")}
        for cfg in cfgs.values():
            cfg.pop("name")
        weights = cfgs["pretrained"]["model"].pop("weights")
        assert cfgs["scratch"]["model"].pop("weights") is None
        assert cfgs["scratch"] == cfgs["pretrained"]
        assert Path(weights).is_file()
    assert sorted(tested) == names  # every slice tested exactly once
    # the labels are the masks' connected components (PANCREAS_0028 has two)
    from morphoscope.io.images import read_label_image

    counts = {p.stem: int(read_label_image(p).max()) for p in (tmp_path / "data" / "all" / "labels").glob("*.png")}
    assert counts == {n: (2 if n == "PANCREAS_0028-1120" else 1) for n in names}
    # the backbone file is the shipped nuclei model's ResNet-18, loadable as the FPN's encoder
    from safetensors.torch import load_file

    state = load_file(str(weights))
    assert "layer4.1.bn2.running_var" in state and not any(k.startswith("backbone.") for k in state)
    from morphoscope.tasks import load_config
    from morphoscope.tasks.semantic.model import build_model

    net = build_model(load_config(folds[0] / "pretrained.yaml").model, 1)
    assert torch_equal(net.encoder.layer1[0].conv1.weight, state["layer1.0.conv1.weight"])
    assert torch_equal(net.encoder.conv1.weight[:, 0], state["conv1.weight"].sum(1))


def torch_equal(a, b) -> bool:
    import torch

    return bool(torch.allclose(a.float(), b.float(), atol=1e-6))


def test_pixel_false_negative_rate_statistic(ct):
    from morphoscope.compare.segmentation import KEYS

    rows = np.zeros((2, 3 * len(KEYS) + 4))
    # slice 1: 30 pancreas pixels missed of 100; slice 2: 10 of 50 (confusion [[bg,bg->p],[p->bg,p]])
    rows[0, 3 * len(KEYS):] = [1000, 5, 30, 70]
    rows[1, 3 * len(KEYS):] = [1000, 0, 10, 40]
    fnr = ct.pixel_fnr_statistic().fn
    assert fnr(rows[:1]).tolist() == [pytest.approx(0.3)]
    assert fnr(rows.sum(0, keepdims=True)).tolist() == [pytest.approx(40 / 150)]
