"""bioimage.io packages of models with per-pixel outputs: valid for bioimageio.spec, run by
bioimageio.core (every weight format, its own preprocessing) to PyTorch's output on a real image."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest

pytestmark = pytest.mark.slow
pytest.importorskip("bioimageio.spec", reason="the export extra (bioimageio.spec) is not installed")

TOL = 1e-4


@pytest.fixture(scope="module")
def package(semantic_bundle, tmp_path_factory):
    from morphoscope.export import export_model

    out = tmp_path_factory.mktemp("bioimageio") / "tiny_fpn.zip"
    return export_model(semantic_bundle, "bioimageio", out, authors=["A. Tester"])


def test_package_is_valid_bioimageio(package):
    from bioimageio.spec import InvalidDescr, load_model_description
    from bioimageio.spec.model import v0_5

    descr = load_model_description(package.path, perform_io_checks=True)
    assert not isinstance(descr, InvalidDescr), descr.validation_summary.format()
    assert isinstance(descr, v0_5.ModelDescr)
    assert descr.license == "CC-BY-4.0" and [a.name for a in descr.authors] == ["A. Tester"]
    assert {str(c.doi) for c in descr.cite} >= {"10.1002/cyto.a.23863", "10.1038/nmeth.2083"}  # BBBC039
    w = descr.weights
    assert w.pytorch_state_dict is not None and w.torchscript.parent == "pytorch_state_dict"
    assert w.onnx.parent == "pytorch_state_dict" and w.onnx.opset_version >= 11
    assert [p.id for p in descr.inputs[0].preprocessing if p.id != "ensure_dtype"] == ["scale_range", "clip"]
    assert descr.outputs[0].axes[1].channel_names == ["background", "nucleus", "boundary"]


def test_package_test_tensors_are_the_real_image_and_pytorchs_output(package, semantic_bundle, sample_image):
    from morphoscope.export.common import run_torch

    _, img = sample_image
    with zipfile.ZipFile(package.path) as z:
        names = set(z.namelist())
        assert {"README.md", "test_input.npy", "test_output.npy", "weights.onnx"} <= names
        x = np.load(z.open("test_input.npy"))
        y = np.load(z.open("test_output.npy"))
        readme = z.read("README.md").decode()
    assert x.shape == (1, 1, *img.shape) and np.array_equal(x[0, 0], img.astype(np.float32))
    b = semantic_bundle
    spec = b.task.export_module(b)
    inf = b.task.inference(b)
    ref = run_torch(spec.module, inf.prepare(img, inf.statistics(img))[None], spec.outputs)["maps"]
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-6)  # the same network on the same input
    assert "Caicedo" in readme and "f1@0.5" in readme and "CC-BY-4.0" in readme


def test_bioimageio_core_reproduces_pytorch(package):
    """bioimageio.core's test_model passes, and its predictions (its own percentile scaling and
    clip, then each weight format) equal morphoscope's PyTorch output within 1e-4."""
    pytest.importorskip("bioimageio.core", reason="bioimageio.core is not installed")
    assert "bioimageio.core test_model: passed" in package.notes
    for wf in ("pytorch_state_dict", "torchscript", "onnx"):
        assert package.max_abs_diff[f"maps ({wf})"] <= TOL, package.max_abs_diff


def test_detector_cannot_be_a_bioimageio_package(nuclei_bundle, tmp_path):
    from morphoscope.errors import ConfigError
    from morphoscope.export import export_model

    with pytest.raises(ConfigError, match="per-pixel outputs.*use --format onnx or torchscript"):
        export_model(nuclei_bundle, "bioimageio", tmp_path / "x.zip")
    assert not (tmp_path / "x.zip").exists()
