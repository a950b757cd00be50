#!/usr/bin/env python3
"""Split DSB2018 stage1_train into train and validation, stratified by imaging modality.

    python scripts/make_dsb2018_split.py            # writes configs/splits/dsb2018_*.{txt,csv}
    python scripts/make_dsb2018_split.py --check    # exit 1 unless the committed files are
                                                    # exactly what this script writes

Modality, from the image alone (RGBA PNG; alpha is 255 everywhere and ignored):

* ``histology``: not grey (some pixel has R, G and B not all equal): H&E-style colour tissue
  sections, nuclei darker than the background;
* ``fluorescence``: grey (R == G == B at every pixel) with a dark background: median grey value
  below 128;
* ``brightfield``: grey with a bright background: median grey value 128 or above.

On the 664 images this gives 541 fluorescence, 16 brightfield and 107 histology. The medians
are far from the cut (fluorescence below 60, brightfield and histology above 130), and in every
grey image the rule agrees with the annotations (nuclei brighter than the rest exactly in the
images called fluorescence).

BBBC039 inside DSB2018: 34 of the 90 grey 520x696 DSB images are BBBC039 images (8-bit
copies: Pearson correlation of the pixel values above 0.999 with one BBBC039 image, below 0.2
with every other), 25 of BBBC039's training and 9 of its validation split. So that a model
trained on DSB2018 train (with or without BBBC039 training) never sees a BBBC039 validation
image, and one trained on BBBC039 training never sees a DSB2018 validation image, these follow
BBBC039's official split: a copy of a BBBC039 training image goes to train, a copy of a
validation image to validation. ``bbbc039_image`` in the CSV names the copied image
(``training/NAME`` or ``validation/NAME``; empty otherwise). BBBC039's test split is not here,
so copies of test images (if any) cannot be found this way.

Split: in each modality, ``round(val_fraction * n)`` images go to validation. They are shared
out over the image sizes of the modality (a proxy for the source experiment) in proportion, by
largest remainder; within each size the BBBC039 copies are placed as above and the rest are
taken in the order of SHA-256(``"{seed}:{ImageId}"``), so the split depends on the data and the
seed only (no random-number generator whose stream could change between library versions):
re-running gives identical files.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import math
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image

PROJECT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = PROJECT.parent / "shared" / "data" / "dsb2018" / "stage1_train"
DEFAULT_BBBC039 = PROJECT.parent / "shared" / "data" / "bbbc039"
DEFAULT_OUT = PROJECT / "configs" / "splits"
SAME_IMAGE_CORRELATION = 0.99  # Pearson r of pixel values above which two images are one
MODALITIES = ("fluorescence", "brightfield", "histology")
BRIGHT_MEDIAN = 128  # median grey value at or above which a grey image is brightfield
FILES = ("dsb2018_train.txt", "dsb2018_val.txt", "dsb2018_modality.csv")


def modality_of(image: np.ndarray) -> str:
    """``fluorescence``, ``brightfield`` or ``histology`` of an RGB(A) or grey uint8 image."""
    rgb = image[..., :3] if image.ndim == 3 else image[..., None].repeat(3, axis=-1)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    if not (np.array_equal(r, g) and np.array_equal(r, b)):
        return "histology"
    return "brightfield" if np.median(r) >= BRIGHT_MEDIAN else "fluorescence"


def _standardised(image: np.ndarray) -> np.ndarray:
    v = image.astype(np.float32).ravel()
    return (v - v.mean()) / max(float(v.std()), 1e-6)


def describe(data: Path, bbbc039: Path) -> list[dict]:
    """One row per image folder of ``data``: ImageId, modality, height, width, n_nuclei,
    bbbc039_image."""
    import tifffile

    rows, grey = [], {}
    for folder in sorted(p for p in data.iterdir() if p.is_dir()):
        image_id = folder.name
        image = np.asarray(Image.open(folder / "images" / f"{image_id}.png"))
        n_nuclei = sum(1 for _ in (folder / "masks").glob("*.png"))
        modality = modality_of(image)
        rows.append({"ImageId": image_id, "modality": modality, "height": image.shape[0],
                     "width": image.shape[1], "n_nuclei": n_nuclei, "bbbc039_image": ""})
        if modality != "histology":
            grey[image_id] = image[..., 0] if image.ndim == 3 else image
    if not rows:
        raise SystemExit(f"no image folders in {data}")
    # BBBC039 copies: same size, pixel values correlated above SAME_IMAGE_CORRELATION.
    by_id = {r["ImageId"]: r for r in rows}
    stacks: dict = {}  # image shape -> (ImageIds, standardised images)
    for split_name in ("training", "validation"):
        paths = sorted((bbbc039 / split_name / "images").glob("*.tif"))
        if not paths:
            raise SystemExit(f"no BBBC039 {split_name} images in {bbbc039} (needed to keep "
                             "BBBC039 copies on BBBC039's side of the split)")
        for path in paths:
            ref = tifffile.imread(path)
            if ref.shape not in stacks:
                same = [i for i, g in grey.items() if g.shape == ref.shape]
                stacks[ref.shape] = (same, np.stack([_standardised(grey[i]) for i in same])
                                     if same else None)
            same, stack = stacks[ref.shape]
            if not same:
                continue
            r = stack @ _standardised(ref) / ref.size
            for i in np.flatnonzero(r > SAME_IMAGE_CORRELATION):
                row = by_id[same[i]]
                if row["bbbc039_image"]:
                    raise SystemExit(f"{same[i]} matches two BBBC039 images")
                row["bbbc039_image"] = f"{split_name}/{path.stem}"
    return rows


def _order(image_id: str, seed: int) -> str:
    return hashlib.sha256(f"{seed}:{image_id}".encode()).hexdigest()


def _largest_remainder(sizes: dict, total: int) -> dict:
    """Share ``total`` over the groups in proportion to ``sizes`` (Hamilton's method; ties
    broken by group key)."""
    n = sum(sizes.values())
    quotas = {k: total * v / n for k, v in sizes.items()}
    out = {k: math.floor(q) for k, q in quotas.items()}
    left = total - sum(out.values())
    for k in sorted(quotas, key=lambda k: (-(quotas[k] - out[k]), k))[:left]:
        out[k] += 1
    return out


def split(rows: list[dict], *, seed: int, val_fraction: float) -> tuple[list[str], list[str]]:
    """(train ImageIds, validation ImageIds), each sorted."""
    val = []
    for modality in MODALITIES:
        mine = [r for r in rows if r["modality"] == modality]
        if not mine:
            continue
        by_size = defaultdict(list)
        for r in mine:
            by_size[(r["height"], r["width"])].append(r)
        share = _largest_remainder({k: len(v) for k, v in by_size.items()},
                                   round(val_fraction * len(mine)))
        for size, group in by_size.items():
            forced = [r["ImageId"] for r in group if r["bbbc039_image"].startswith("validation/")]
            free = sorted((r["ImageId"] for r in group if not r["bbbc039_image"]),
                          key=lambda i: _order(i, seed))
            val += forced + free[:max(share[size] - len(forced), 0)]
    val_set = set(val)
    return sorted(r["ImageId"] for r in rows if r["ImageId"] not in val_set), sorted(val_set)


def render(rows: list[dict], train: list[str], val: list[str]) -> dict[str, str]:
    """The three files' text, by file name."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["ImageId", "modality", "height", "width",
                                             "n_nuclei", "bbbc039_image"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return {FILES[0]: "".join(f"{i}\n" for i in train), FILES[1]: "".join(f"{i}\n" for i in val),
            FILES[2]: buf.getvalue()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA,
                        help="DSB2018 stage1_train folder (Kaggle layout)")
    parser.add_argument("--bbbc039", type=Path, default=DEFAULT_BBBC039,
                        help="BBBC039 folder with training/ and validation/ (official split)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for the 3 files")
    parser.add_argument("--seed", type=int, default=2018)
    parser.add_argument("--val-fraction", type=float, default=0.2)
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if the files in --out differ")
    args = parser.parse_args(argv)
    rows = describe(args.data, args.bbbc039)
    train, val = split(rows, seed=args.seed, val_fraction=args.val_fraction)
    texts = render(rows, train, val)
    counts = defaultdict(lambda: [0, 0])
    val_set = set(val)
    for r in rows:
        counts[r["modality"]][r["ImageId"] in val_set] += 1
    for modality in MODALITIES:
        tr, va = counts[modality]
        print(f"{modality:>13}: {tr + va:4d} images, train {tr:4d}, validation {va:4d}")
    print(f"{'all':>13}: {len(rows):4d} images, train {len(train):4d}, validation {len(val):4d}")
    copies = [r for r in rows if r["bbbc039_image"]]
    print(f"BBBC039 copies: {len(copies)} (" + ", ".join(
        f"{sum(r['bbbc039_image'].startswith(s) for r in copies)} of {s}"
        for s in ("training", "validation")) + "), placed on BBBC039's side")
    if args.check:
        stale = [n for n, t in texts.items()
                 if not (args.out / n).is_file() or (args.out / n).read_text() != t]
        if stale:
            print(f"differ from what this script writes: {', '.join(stale)}", file=sys.stderr)
            return 1
        print(f"{args.out}: up to date")
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    for name, text in texts.items():
        tmp = args.out / f".{name}.part"
        tmp.write_text(text)
        tmp.replace(args.out / name)
    print(f"wrote {', '.join(str(args.out / n) for n in texts)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
