"""Spread-platelet shape in µm on real DIC images (dic-platelets-unlabelled) — a working example,
not an accuracy claim.

    .venv/bin/python examples/dic_platelets_pseudo.py            # makes runs/dic_pseudo/{train,val}
    morphoscope train configs/dic_platelets_pseudo_maskrcnn_r18.yaml --out runs/dic_pseudo/model
    morphoscope predict ../shared/data/dic-platelets-unlabelled/images --model runs/dic_pseudo/model \\
        --out runs/dic_pseudo/pred --pixel-size 0.1843 --measure
    .venv/bin/python examples/dic_platelets_pseudo.py summary runs/dic_pseudo/pred/measurements.csv

THE MASKS THIS MODEL LEARNS FROM ARE ANOTHER MODEL'S PREDICTIONS, NOT GROUND TRUTH: the set ships
the output of the authors' own Mask R-CNN ensemble (Kempster, Butler et al.;
``predicted_masks_not_ground_truth/``). The model trained here imitates that model (pseudo-labels);
its agreement with them on images 10-12 is agreement, not accuracy. The shipped ``nuclei`` model
was tried first and does not outline these platelets (docs/detection.md).

The first call links images 1-9 (training) and 10-12 (validation) with their masks into the
images/ + labels/ layout under runs/dic_pseudo/ (git-ignored; nothing is copied or changed in
../shared). ``summary`` prints per-image platelet counts and shape medians in µm from the
measurements table (pixel size 0.1843 µm from the files' ImageJ resolution; given explicitly).
"""

from __future__ import annotations

import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
DATA = PROJECT.parent / "shared" / "data" / "dic-platelets-unlabelled"
OUT = PROJECT / "runs" / "dic_pseudo"
SPLIT = {"train": range(1, 10), "val": range(10, 13)}


def prepare() -> None:
    for part, ids in SPLIT.items():
        for sub in ("images", "labels"):
            (OUT / part / sub).mkdir(parents=True, exist_ok=True)
        for i in ids:
            for src, dst in ((DATA / "images" / f"{i}.tif", OUT / part / "images" / f"{i}.tif"),
                             (DATA / "predicted_masks_not_ground_truth" / f"{i}.png", OUT / part / "labels" / f"{i}.png")):
                if not dst.exists():
                    dst.symlink_to(src)
    print(f"pseudo-label folders (another model's masks, not ground truth) in {OUT}")


def summary(table_path: str) -> None:
    import pandas as pd

    t = pd.read_csv(table_path)
    inside = t[~t["touches_border"].astype(bool)]
    cols = ["area_um2", "perimeter_um", "equivalent_diameter_um", "circularity", "solidity", "eccentricity"]
    cols = [c for c in cols if c in inside.columns]
    per_image = inside.groupby("image").agg(count=("label", "size"), **{f"{c}_median": (c, "median") for c in cols})
    print(f"{len(t)} objects, {len(inside)} not touching the border, in {t['image'].nunique()} images")
    print(per_image.to_string(float_format=lambda v: f"{v:.3g}"))
    print("\nall images (objects not touching the border): median " +
          ", ".join(f"{c} {inside[c].median():.3g}" for c in cols))


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "summary":
        summary(sys.argv[2])
    else:
        prepare()
