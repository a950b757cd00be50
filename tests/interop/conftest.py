"""Interop tests: what morphoscope writes for ImageJ/Fiji, QuPath, CellProfiler, OME-Zarr readers
and napari, read back with those tools' own reading libraries (docs/interop.md).

One real prediction (the shipped ``nuclei`` model on a bundled BBBC039 image, through the CLI with
``--export all``) and the BBBC039 ground truth of the same image written through the exporters
are shared by the tests.

napari: without a display, Qt runs on its offscreen platform (QT_QPA_PLATFORM=offscreen), which
has no OpenGL, so napari's canvas cannot be drawn: the plugin is then tested in napari's
``ViewerModel`` (napari's viewer without its window: the same plugin manager, reader and writer
dispatch and layers) with the widget as a real Qt widget, and the tests that open napari's window
(``window_viewer``: napari's ``make_napari_viewer``) skip with the reason. Under a display, e.g.
``xvfb-run -a python -m pytest tests/interop``, they run too."""

from __future__ import annotations

import os
import shutil

import pytest

if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # before any Qt application exists

from interop_testdata import (
    PIXEL_SIZE,
    SAMPLE,
    ground_truth_item,
)


@pytest.fixture(scope="session")
def predicted(tmp_path_factory, samples_dir):
    """``root/predictions`` of ``morphoscope predict root/images --export all --pixel-size ...``
    on one bundled sample (its input in ``root/images``, where the napari reader finds it)."""
    from typer.testing import CliRunner

    from morphoscope.cli import app

    root = tmp_path_factory.mktemp("interop")
    (root / "images").mkdir()
    shutil.copy(samples_dir / "images" / f"{SAMPLE}.tif", root / "images")
    out = root / "predictions"
    result = CliRunner().invoke(app, ["predict", str(root / "images"), "--out", str(out), "--model", "nuclei-maskrcnn",
                                      "--device", "cpu", "--export", "all", "--pixel-size", str(PIXEL_SIZE)])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return out


@pytest.fixture(scope="session")
def ground_truth(tmp_path_factory, samples_dir):
    """The BBBC039 ground truth of the sample written through every exporter:
    ``(folder, labels)``."""
    from morphoscope.formats.exports import write_exports

    out = tmp_path_factory.mktemp("ground-truth")
    ctx, labels = ground_truth_item(samples_dir, out)
    write_exports("all", [ctx], out)
    return out, labels


@pytest.fixture
def viewer_model():
    """napari's viewer without a window (no Qt, no OpenGL), with the installed plugins found as
    napari finds them when it starts (npe2's entry points: ours is ``napari.manifest``)."""
    pytest.importorskip("napari", reason="napari is not installed (pip install morphoscope[napari])")
    from napari.components import ViewerModel
    from npe2 import PluginManager

    PluginManager.instance().discover()
    return ViewerModel()


@pytest.fixture
def window_viewer(request):
    """napari's ``make_napari_viewer`` (a real window, off screen), where Qt can draw with
    OpenGL; skipped on Qt's offscreen platform."""
    pytest.importorskip("napari", reason="napari is not installed (pip install morphoscope[napari])")
    if os.environ.get("QT_QPA_PLATFORM") == "offscreen":
        pytest.skip("Qt's offscreen platform has no OpenGL for napari's canvas; run under a display "
                    "(xvfb-run -a python -m pytest tests/interop)")
    return request.getfixturevalue("make_napari_viewer")
