"""TorchScript and ONNX exports reproduce PyTorch on a real BBBC039 image (within 1e-4), at other
image sizes too, and carry the model card."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.slow

TOL = 1e-4


def _prepared(bundle, image):
    from morphoscope.engine.predictor import PlaneInput

    inf = bundle.task.inference(bundle)
    return inf.prepare(image, inf.statistics(PlaneInput("x", image).sample()))[None].astype(np.float32)


def _torch(spec, x):
    from morphoscope.export.common import run_torch

    return run_torch(spec.module, np.ascontiguousarray(x), spec.outputs)


def _close(ref, got, *, rows=False):
    """max |got - ref| relative to max(1, |ref|) for every output; with ``rows`` the counts must agree."""
    worst = 0.0
    for k, r in ref.items():
        g = np.asarray(got[k])
        assert g.shape == r.shape, (k, g.shape, r.shape)
        if r.size:
            worst = max(worst, float((np.abs(g.astype(np.float64) - r) / np.maximum(1, np.abs(r))).max()))
    return worst


# ---- semantic FPN ---------------------------------------------------------------------------


@pytest.mark.parametrize("output,size_head,tta", [("boundary", False, 1), ("boundary+distance", True, 8)])
def test_semantic_export_module_is_the_engines_network(output, size_head, tta, sample_image):
    """The export module computes what the prediction engine computes (same padding, softmax,
    sigmoid, test-time flips and rotations, size head), so comparing exports with it compares
    them with morphoscope's predictions."""
    from export_testdata import tiny_semantic_bundle

    _, img = sample_image
    img = img[:200, :333]  # not square, not a multiple of 32: rotations and padding matter
    b = tiny_semantic_bundle(output=output, size_head=size_head, tta=tta)
    spec = b.task.export_module(b)
    x = _prepared(b, img)
    maps = _torch(spec, x)["maps"][0]
    extras: list = []
    probs, aux = b.task.inference(b).network([x[0]], extras=extras)[0]
    aux = aux.reshape(-1, *img.shape)
    assert spec.channels == ["background", "nucleus", *output.split("+")] + (["size"] if size_head else [])
    assert maps.shape == (len(spec.channels), *img.shape)
    assert np.array_equal(maps[:2], probs) and np.array_equal(maps[2:2 + len(aux)], aux)
    if size_head:
        assert np.allclose(maps[-1], extras[0]["size"], atol=1e-6)


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_semantic_export_matches_pytorch(fmt, semantic_bundle, sample_image, tmp_path):
    from morphoscope.export import export_model, onnx as onnx_export, torchscript

    path, img = sample_image
    b = semantic_bundle
    out = tmp_path / f"fpn.{'pt' if fmt == 'torchscript' else 'onnx'}"
    res = export_model(b, fmt, out)
    assert out.is_file() and res.image == path.name
    assert res.max_abs_diff["maps"] <= TOL, res.max_abs_diff
    spec = b.task.export_module(b)
    # other sizes (not multiples of 32) and a batch of two: height, width and batch are free
    x = _prepared(b, img)
    for xs in (x[..., :300, :410], np.concatenate([x[..., 100:197, 50:381]] * 2)):
        ref = _torch(spec, xs)
        if fmt == "torchscript":
            with torch.inference_mode():
                got = {"maps": torchscript.load(out)(torch.from_numpy(np.ascontiguousarray(xs))).numpy()}
            card = torchscript.read_card(out)
        else:
            got = onnx_export.run(out, np.ascontiguousarray(xs), spec.outputs)
            card = onnx_export.read_card(out)
        assert _close(ref, got) <= TOL
    assert card["task"] == "semantic" and card["classes"] == ["nucleus"] and "99.8" in card["inputs_outputs"]
    assert card["trained_on"] == b.card["trained_on"] and str(b.cfg.data.train) not in str(card)


# ---- Mask R-CNN (the shipped nuclei model) --------------------------------------------------


@pytest.fixture(scope="module")
def nuclei_onnx(nuclei_bundle, tmp_path_factory):
    from morphoscope.export import export_model

    out = tmp_path_factory.mktemp("onnx") / "nuclei.onnx"
    return export_model(nuclei_bundle, "onnx", out)


def test_maskrcnn_onnx_matches_pytorch(nuclei_onnx, nuclei_bundle, sample_image):
    """The whole detector (transform, RPN, NMS, box and mask heads) runs in ONNX Runtime and
    gives PyTorch's detections: the same number, boxes within 1e-4 px relative to max(1, |x|),
    scores and 28x28 mask probabilities within 1e-4."""
    res = nuclei_onnx
    assert res.counts == {} or all(a == b for a, b in res.counts.values()), res.counts
    assert res.max_abs_diff["labels"] == 0
    assert res.max_abs_diff["scores"] <= TOL and res.max_abs_diff["masks"] <= TOL, res.max_abs_diff
    assert res.scaled_diff["boxes"] <= TOL, res.max_abs_diff
    _, img = sample_image
    spec = nuclei_bundle.task.export_module(nuclei_bundle)
    ref = _torch(spec, _prepared(nuclei_bundle, img))
    assert len(ref["scores"]) > 50  # real nuclei were found: the comparison covers real detections


def test_maskrcnn_onnx_other_size_and_objects(nuclei_onnx, nuclei_bundle, sample_image):
    """A crop of another size runs through the same ONNX file; pasting its masks with the engine's
    paste gives the engine's objects."""
    from morphoscope.export import onnx as onnx_export
    from morphoscope.tasks.instance.task import paste_masks_in_boxes

    _, img = sample_image
    crop = img[40:40 + 333, 100:100 + 421]
    b = nuclei_bundle
    spec = b.task.export_module(b)
    x = _prepared(b, crop)
    ref = _torch(spec, x)
    got = onnx_export.run(nuclei_onnx.path, x, spec.outputs)
    assert len(got["scores"]) == len(ref["scores"]) > 20
    assert _close(ref, got) <= TOL
    keep = ref["scores"] >= 0.5
    thr = b.cfg.model.mask_threshold
    crops_ref, org_ref = paste_masks_in_boxes(torch.from_numpy(ref["masks"][keep]), torch.from_numpy(ref["boxes"][keep]),
                                              crop.shape, thr)
    crops_got, org_got = paste_masks_in_boxes(torch.from_numpy(got["masks"][keep]), torch.from_numpy(got["boxes"][keep]),
                                              crop.shape, thr)
    assert np.array_equal(org_ref, org_got)
    same = sum(int((a == c).sum()) for a, c in zip(crops_ref, crops_got) if a.shape == c.shape)
    total = sum(a.size for a in crops_ref)
    assert all(a.shape == c.shape for a, c in zip(crops_ref, crops_got))
    assert same / total > 0.9999, (same, total)


def test_maskrcnn_torchscript_matches_pytorch(nuclei_bundle, tmp_path):
    """torch.jit.script compiles the whole detector (FixedScaleTransform included)."""
    from morphoscope.export import export_model, torchscript

    out = tmp_path / "nuclei.pt"
    res = export_model(nuclei_bundle, "torchscript", out)
    assert max(res.scaled_diff.values()) <= TOL, res.max_abs_diff
    assert not res.counts or all(a == b for a, b in res.counts.values())
    card = torchscript.read_card(out)
    assert card["name"] == "nuclei-maskrcnn" and card["metrics"]["f1@0.5"] > 0.9


def test_fixed_scale_transform_scripts_at_other_scales():
    """The issue's failure: FixedScaleTransform.resize lacked annotations and torch.jit.script
    failed; with a scale != 1 the resize path is compiled and equals eager."""
    from morphoscope.tasks.instance.model import FixedScaleTransform

    t = FixedScaleTransform(0.5, [0.5] * 3, [0.25] * 3).eval()
    s = torch.jit.script(t)
    img = torch.rand(3, 100, 140)
    a, _ = t([img])
    b, _ = s([img])
    assert a.tensors.shape == b.tensors.shape and a.image_sizes == b.image_sizes == [(50, 70)]
    assert torch.equal(a.tensors, b.tensors)


# ---- classifier ---------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_classifier_export_matches_pytorch(fmt, sample_image, tmp_path):
    """The HPA recipe's ResNet-18 (random weights) on a real image: class probabilities as
    ClassifyInference computes them, reproduced by the exported file."""
    from export_testdata import PROJECT

    from morphoscope.export import export_model
    from morphoscope.tasks import bundle_from_checkpoint, get_task, load_config

    cfg = load_config(PROJECT / "configs" / "hpa_resnet18.yaml")
    cfg = cfg.model_copy(update={"model": cfg.model.model_copy(update={"in_channels": 1})})
    torch.manual_seed(0)
    names = list(cfg.data.class_names)
    net = get_task("classify").build_model(cfg, names)
    b = bundle_from_checkpoint({"task": "classify", "config": cfg.model_dump(mode="json"), "class_names": names,
                                "model": net.state_dict(),
                                "normalize": {"intensity": "dtype", "mean": [0.1], "std": [0.2]}}, name="hpa")
    _, img = sample_image
    spec = b.task.export_module(b)
    x = _prepared(b, img)
    engine = b.task.inference(b).run([x[0]])[0].class_scores
    assert np.allclose(_torch(spec, x)["probabilities"][0], engine, atol=1e-6)
    res = export_model(b, fmt, tmp_path / f"hpa.{'pt' if fmt == 'torchscript' else 'onnx'}")
    assert res.max_abs_diff["probabilities"] <= TOL, res.max_abs_diff
