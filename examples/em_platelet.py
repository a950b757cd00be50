"""Four-class Mask R-CNN of platelet organelles and cells on serial block-face EM (docs/em.md).

    .venv/bin/python examples/em_platelet.py prepare     # tiles of slice 50 -> train/val/test COCO
    .venv/bin/python examples/em_platelet.py train       # morphoscope train configs/em_platelet_maskrcnn_r18.yaml
    .venv/bin/python examples/em_platelet.py predict     # test tiles + slice 24 (labels, per-class planes,
                                                         #   0/255 class masks, overlay, COCO RLE), measure
    .venv/bin/python examples/em_platelet.py evaluate    # per-class COCO AP (test tiles), pixel IoU (slice 24)

Data: ../shared/data/platelet-em-z0 (Guay et al. 2021, NIH NIBIB LCIMB): slice 50 with 16 cells
and 106 organelles as COCO RLE (organelles lie inside cells: the objects overlap), slices 50 and
24 with 7-class semantic labels; ~10 nm pixels. Everything is written under runs/em_platelet/.

* **Classes**: cell, mitochondrion, alpha_granule, canalicular_vessel. The one dense granule of
  slice 50 is **left out** (as the original four-class workflow did): it is no object of any class,
  and its pixels stay part of its cell. In the semantic scoring of slice 24 its pixels (body and
  core, 585 px) are ignored.
* **Tiles**: slice 50 is cut into a 3 x 3 grid (266/267 px). Tile t11 (centre) is the validation
  tile (picks ``model_best.pt``), t02 and t20 (two corners) are the test tiles, the other six train.
  Objects cut by a tile edge keep their part inside the tile when it has >= 16 pixels.
* **Semantic scoring of slice 24**: each pixel takes the class of the smallest predicted object
  covering it (an organelle inside its cell shows the organelle; the rest of the cell is cell),
  the way the semantic labels were drawn (cell = cytoplasm, organelles excluded).
* One annotated slice proves that the pipeline runs end to end on overlapping classes, not how
  accurate such a model is: the test tiles hold a few dozen objects of one cell section.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

PROJECT = Path(__file__).resolve().parents[1]
DATA = PROJECT.parent / "shared" / "data" / "platelet-em-z0"
ROOT = PROJECT / "runs" / "em_platelet"
CONFIG = PROJECT / "configs" / "em_platelet_maskrcnn_r18.yaml"

CLASSES = ["cell", "mitochondrion", "alpha_granule", "canalicular_vessel"]
#: category id in coco_50-z000.json -> class 1..4 here (5, 6: dense granule body/core: left out)
COCO_TO_CLASS = {1: 1, 2: 2, 3: 3, 4: 4}
#: semantic value (0 bg, 1 cell, 2 mito, 3 alpha, 4 canalicular, 5 dense body, 6 dense core) -> class
#: here, -1 = ignored
SEMANTIC_TO_CLASS = np.array([0, 1, 2, 3, 4, -1, -1])
GRID = 3
SPLIT = {"val": ["t11"], "test": ["t02", "t20"]}
MIN_PIECE = 16


def split_of(tile: str) -> str:
    return next((k for k, v in SPLIT.items() if tile in v), "train")


def four_class_objects(data: Path = DATA):
    """Slice 50's image, and its objects of the four classes: ``masks (N, H, W)``, ``classes (N,)``."""
    from morphoscope.formats import load_instance_dataset

    ds = load_instance_dataset(data / "coco_50-z000.json")
    sample = ds[0]
    image = sample.load_image()
    masks, cats = sample.load_instances(image.shape)
    cat_ids = np.asarray(ds.category_ids)[cats - 1]
    keep = np.isin(cat_ids, list(COCO_TO_CLASS))
    classes = np.array([COCO_TO_CLASS[int(c)] for c in cat_ids[keep]], np.int64)
    return image, masks[keep], classes


def prepare(root: Path = ROOT, data: Path = DATA) -> dict:
    """Write ``data/{train,val,test}.json`` (COCO, RLE) with the tiles in ``data/images/``."""
    from morphoscope.formats.coco import masks_to_coco_annotations
    from morphoscope.io.atomic import atomic_write
    from morphoscope.io.images import write_png

    image, masks, classes = four_class_objects(data)
    h, w = image.shape[:2]
    ys, xs = np.linspace(0, h, GRID + 1).astype(int), np.linspace(0, w, GRID + 1).astype(int)
    sets = {k: {"images": [], "annotations": [],
                "categories": [{"id": i, "name": n} for i, n in enumerate(CLASSES, start=1)]}
            for k in ("train", "val", "test")}
    counts = {}
    for r in range(GRID):
        for c in range(GRID):
            tile = f"t{r}{c}"
            sl = (slice(ys[r], ys[r + 1]), slice(xs[c], xs[c + 1]))
            name = f"50-z000_{tile}.png"
            write_png(root / "data" / "images" / name, image[sl], overwrite=True)
            crops = masks[(slice(None),) + sl]
            keep = crops.reshape(len(crops), -1).sum(1) >= MIN_PIECE
            part = sets[split_of(tile)]
            image_id = len(part["images"]) + 1
            part["images"].append({"id": image_id, "file_name": name, "height": int(crops.shape[1]),
                                   "width": int(crops.shape[2])})
            part["annotations"] += masks_to_coco_annotations(crops[keep], classes[keep], image_id=image_id,
                                                             start_id=len(part["annotations"]) + 1)
            counts[tile] = {"split": split_of(tile), **{n: int((classes[keep] == k).sum())
                                                        for k, n in enumerate(CLASSES, start=1)}}
    for k, d in sets.items():
        with atomic_write(root / "data" / f"{k}.json", overwrite=True, mode="w") as fh:
            json.dump(d, fh)
    (root / "data" / "tiles.json").write_text(json.dumps(counts, indent=1) + "\n")
    for tile, n in counts.items():
        print(tile, n)
    return counts


def train(root: Path = ROOT) -> None:
    run = root / "run"
    cmd = [sys.executable, "-m", "morphoscope", "train", str(CONFIG), "--out", str(run)]
    if (run / "checkpoint_last.pt").is_file():
        cmd.append("--resume")
    subprocess.run(cmd, check=True)


def predict(root: Path = ROOT, data: Path = DATA) -> None:
    """The test tiles and slice 24; then every object of slice 24 measured whole on its class's
    plane (``morphoscope measure`` of the prediction folder; ~10 nm pixels)."""
    runs = (("pred_test", [str(root / "data" / "images" / f"50-z000_{t}.png") for t in SPLIT["test"]]),
            ("pred_24", [str(data / "images" / "24-z000.png")]))
    for out, inputs in runs:
        start, cpu = time.time(), _children_cpu()
        subprocess.run([sys.executable, "-m", "morphoscope", "predict", *inputs, "--model", str(root / "run"),
                        "--out", str(root / out), "--overwrite"], check=True)
        print(f"{out}: {time.time() - start:.0f} s wall, {_children_cpu() - cpu:.0f} s CPU", flush=True)
    subprocess.run([sys.executable, "-m", "morphoscope", "measure", str(root / "pred_24"), "--image",
                    str(data / "images" / "24-z000.png"), "--pixel-size", "0.01", "--out",
                    str(root / "measurements_24.csv"), "--overwrite"], check=True)


def _children_cpu() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def semantic_scores_24(pred_dir: Path, data: Path = DATA) -> dict:
    """Pixel IoU per class, mean IoU and pixel accuracy of slice 24's prediction against its
    semantic labels mapped to the four classes (dense granule pixels ignored)."""
    from morphoscope.io.images import read_image
    from morphoscope.metrics.evaluate import class_map_from_planes, read_class_planes
    from morphoscope.metrics.semantic import semantic_scores

    truth = SEMANTIC_TO_CLASS[read_image(data / "labels" / "24-z000-semantic.png")]
    planes = read_class_planes(pred_dir, "24-z000", len(CLASSES))
    pred = class_map_from_planes(planes)
    out = semantic_scores([(truth, pred)], len(CLASSES) + 1, CLASSES)
    out["ignored_pixels"] = int((truth < 0).sum())
    return out


def nested_found(root: Path = ROOT) -> dict:
    """Organelles of the test tiles found at IoU 0.5, and how many of them lie wholly inside a GT
    cell and have their prediction wholly inside a predicted cell (nested on both sides)."""
    from morphoscope.formats import load_instance_dataset
    from morphoscope.metrics.evaluate import read_class_planes
    from morphoscope.metrics.matching import match_class_planes

    found = nested = 0
    for s in load_instance_dataset(root / "data" / "test.json").samples:
        gt, _ = s.load_class_planes(len(CLASSES))
        pred = read_class_planes(root / "pred_test", s.name, len(CLASSES))
        m = match_class_planes(gt, pred)["0.5"]
        for g, q, c in zip(m.gt_ids, m.pred_ids, m.classes):
            if c == 1:
                continue
            gm, pm = gt[c - 1] == g, pred[c - 1] == q
            found += 1
            nested += bool((gm & (gt[0] > 0)).sum() == gm.sum() and (pm & (pred[0] > 0)).sum() == pm.sum())
    return {"organelles_found@0.5": found, "inside_cells_on_both_sides": nested}


def evaluate(root: Path = ROOT, data: Path = DATA) -> dict:
    from morphoscope.metrics.evaluate import evaluate as evaluate_folder
    from morphoscope.metrics.evaluate import format_table
    from morphoscope.morphology import read_table

    t0 = time.process_time()
    ev = evaluate_folder(root / "pred_test", root / "data" / "test.json")
    print(format_table(ev))
    sem = semantic_scores_24(root / "pred_24", data)
    table = read_table(root / "measurements_24.csv")
    areas = table.groupby("class")["area_um2"].agg(["count", "median"]).round(4).to_dict("index")
    nested = nested_found(root)
    result = {"test_tiles": SPLIT["test"], "coco": ev["coco"], "matching@0.5": ev["matching"]["0.5"],
              "nested": nested,
              "objects": ev["objects"], "matched_on": ev.get("matched_on"), "slice24": sem,
              "slice24_measurements": areas, "cpu_seconds": time.process_time() - t0}
    (root / "report.json").write_text(json.dumps(result, indent=1, default=float) + "\n")
    md = report_markdown(result)
    (root / "report.md").write_text(md)
    print(md)
    return result


def report_markdown(r: dict) -> str:
    def f(v):
        return "–" if v is None else f"{v:.3f}"

    segm, box = r["coco"]["segm"], r["coco"].get("bbox") or {}
    pc = r["matching@0.5"].get("per_class", {})
    lines = ["# Platelet EM, four-class Mask R-CNN", "",
             f"Held-out test tiles of slice 50 ({', '.join(r['test_tiles'])}): {r['objects']['gt']} GT objects, "
             f"{r['objects']['pred']} predicted at score >= 0.5 (matched on {r.get('matched_on')}).", "",
             "| class | GT objects | predicted | COCO mask AP | COCO box AP | TP / FP / FN @ IoU 0.5 | F1 @ 0.5 |",
             "|---|---|---|---|---|---|---|"]
    for c in CLASSES:
        s = pc.get(c, {})
        lines.append(f"| {c} | {s.get('tp', 0) + s.get('fn', 0)} | {s.get('tp', 0) + s.get('fp', 0)} | "
                     f"{f(segm['per_class'].get(c))} | {f((box.get('per_class') or {}).get(c))} | "
                     f"{s.get('tp', 0)} / {s.get('fp', 0)} / {s.get('fn', 0)} | {f(s.get('f1'))} |")
    m = r["matching@0.5"]
    lines.append(f"| all (AP: mean over classes) | {r['objects']['gt']} | {r['objects']['pred']} | {f(segm['AP'])} | "
                 f"{f(box.get('AP'))} | {m['tp']} / {m['fp']} / {m['fn']} | {f(m['f1'])} |")
    lines.append(f"\nCOCO mask AP50 (all classes) {f(segm['AP50'])}, AP75 {f(segm['AP75'])}. "
                 f"{r['nested']['inside_cells_on_both_sides']} of the {r['nested']['organelles_found@0.5']} organelles "
                 "found lie wholly inside a GT cell and are predicted wholly inside a predicted cell.")
    s = r["slice24"]
    lines += ["", f"Slice 24 (never trained on), semantic labels mapped to the four classes "
                  f"({s['ignored_pixels']} dense-granule pixels ignored):", "",
              "| class | pixel IoU | objects predicted | median area (µm²) |", "|---|---|---|---|"]
    meas = r.get("slice24_measurements", {})
    for c in ["background"] + CLASSES:
        mc = meas.get(c, {})
        lines.append(f"| {c} | {f(s['per_class'][c]['iou'])} | {mc.get('count', '–') if c != 'background' else ''} | "
                     f"{mc.get('median', '–') if c != 'background' else ''} |")
    lines += [f"| mean IoU (5 classes, background included) | {f(s['miou'])} | | |",
              f"| pixel accuracy | {f(s['pixel_accuracy'])} | | |", "",
              "One annotated slice proves the pipeline, not accuracy: these numbers come from a few dozen "
              "objects of one section of one sample."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("step", choices=("prepare", "train", "predict", "evaluate"))
    ap.add_argument("--root", type=Path, default=ROOT)
    a = ap.parse_args(argv)
    {"prepare": prepare, "train": train, "predict": predict, "evaluate": evaluate}[a.step](a.root)


if __name__ == "__main__":
    main()
