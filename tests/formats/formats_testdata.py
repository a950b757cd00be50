"""The committed annotation-tool exports (tests/data/) and their independent reference: the
BBBC039 ground-truth label images they were made from (tests/data/bbbc039-pair, see the READMEs)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

DATA = Path(__file__).resolve().parents[1] / "data"
PAIR = DATA / "bbbc039-pair"
LS = DATA / "labelstudio"
CVAT = DATA / "cvat"
IMAGES = PAIR / "images"
NAMES = sorted(p.stem for p in IMAGES.glob("*.png"))
N_OBJECTS = 67  # 24 + 43 nuclei


def reference(labels_dir: Path = PAIR / "labels") -> dict[str, tuple[np.ndarray, dict[int, str]]]:
    """``{image name: (label image, {label: class name})}`` read with PIL and json alone."""
    meta = json.loads((PAIR / "labels" / "classes.json").read_text())
    out = {}
    for name in NAMES:
        lab = np.array(Image.open(labels_dir / f"{name}.png"))
        out[name] = (lab, {int(k): meta["names"][v - 1] for k, v in meta["objects"][name].items()})
    return out


def per_object_iou(ds, ref=None) -> list[tuple[str, float, str, str]]:
    """Pair every imported object with the reference object it overlaps most and return
    ``(image, IoU, imported class, reference class)`` for each; asserts that the pairing is one to
    one and covers every reference object, and that names match the user's images."""
    ref = ref or reference()
    assert sorted(s.name for s in ds.samples) == NAMES
    rows = []
    for s in ds.samples:
        lab, classes = ref[s.name]
        masks, cls = s.load_instances()
        paired = []
        for m, c in zip(masks, cls):
            ids, counts = np.unique(lab[m], return_counts=True)
            counts[ids == 0] = 0
            j = int(ids[counts.argmax()])
            union = (m | (lab == j)).sum()
            rows.append((s.name, float((m & (lab == j)).sum() / union), ds.class_names[c - 1], classes.get(j)))
            paired.append(j)
        assert sorted(paired) == sorted(classes), f"{s.name}: objects are not paired one to one"
    return rows
