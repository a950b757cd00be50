"""Test data of the morphology tests: drawn shapes with known measurements, paths of the real
BBBC039 data, and a helper that writes a prediction folder (docs/outputs.md). A uniquely named
module (not conftest) so that test files can import it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
BBBC_TRAIN = DATA / "bbbc039" / "training"
NO_DATA = "../shared/data (BBBC039) not present beside the project: real-data test skipped"


def bbbc_or_skip() -> Path:
    if not (BBBC_TRAIN / "labels").is_dir():
        pytest.skip(NO_DATA)
    return BBBC_TRAIN


def disc(radius: float, *, pad: int = 3) -> np.ndarray:
    """Pixels whose centre lies within ``radius`` of the centre of an odd square image."""
    size = 2 * int(np.ceil(radius)) + 1 + 2 * pad
    c = size // 2
    yy, xx = np.mgrid[:size, :size]
    return ((yy - c) ** 2 + (xx - c) ** 2 <= radius**2).astype(np.uint8)


def ellipse(a: float, b: float, theta_deg: float, *, pad: int = 3) -> np.ndarray:
    """Ellipse with semi-axes ``a`` >= ``b`` whose major axis makes ``theta_deg`` with the row
    axis (regionprops' orientation convention: counter-clockwise from vertical, as displayed)."""
    size = 2 * int(np.ceil(a)) + 1 + 2 * pad
    c = size // 2
    yy, xx = np.mgrid[:size, :size].astype(float) - c
    t = np.radians(theta_deg)
    # unit vector of the major axis in (row, col): rotate (1, 0) counter-clockwise on screen
    ur, uc = np.cos(t), np.sin(t)
    along = yy * ur + xx * uc
    across = -yy * uc + xx * ur
    return ((along / a) ** 2 + (across / b) ** 2 <= 1).astype(np.uint8)


def run_cli(args, capsys) -> tuple[int, str, str]:
    """Run ``morphoscope ARGS`` in-process as the console script does; returns (code, out, err)."""
    from morphoscope.cli import main

    old = sys.argv
    sys.argv = ["morphoscope", *map(str, args)]
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.argv = old
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def write_pred_dir(folder: Path, items, *, categories=((1, "nucleus"),), info=None) -> Path:
    """A 'morphoscope predict' output folder: ``items`` is a list of
    ``(name, labels, {label: score}, {label: category_id})``."""
    import tifffile

    from morphoscope.formats.coco import masks_to_coco_annotations

    folder.mkdir(parents=True, exist_ok=True)
    images, anns = [], []
    for image_id, (name, labels, scores, cats) in enumerate(items, start=1):
        tifffile.imwrite(folder / f"{name}_labels.tif", labels.astype(np.uint16),
                         compression="zlib")
        h, w = labels.shape
        images.append({"id": image_id, "file_name": f"{name}.tif", "width": w, "height": h})
        ids = [int(v) for v in np.unique(labels) if v]
        res = masks_to_coco_annotations((labels == v for v in ids), [cats[v] for v in ids],
                                        image_id=image_id, scores=[scores[v] for v in ids])
        for a, v in zip(res, ids):
            anns.append({"id": len(anns) + 1, **a, "label": v})
    data = {"info": info or {"model": "test-model", "score_threshold": 0.05},
            "images": images,
            "categories": [{"id": i, "name": n} for i, n in categories], "annotations": anns}
    (folder / "predictions.json").write_text(json.dumps(data))
    return folder
