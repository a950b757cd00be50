"""3D nuclei, end to end, on the two real confocal stacks of BBBC050 (QCANet's copy): a 2D
semantic FPN trained on the planes of ``8_cell_stage`` gives one label per nucleus through Z on
``16_cell_stage`` (docs/volumes.md).

    # 1. data folders (images/ + labels/) with the voxel size written into the stacks' metadata
    .venv/bin/python examples/volume_bbbc050.py prepare runs/bbbc050/data
    # 2. settings on held-out planes of 8_cell_stage (rows 0-47 hold 2 of its 8 nuclei whole)
    .venv/bin/morphoscope train configs/bbbc050_fpn_r18_3d_split.yaml --out runs/bbbc050_split
    # 3. the model: the same settings on all of 8_cell_stage
    .venv/bin/morphoscope train configs/bbbc050_fpn_r18_3d.yaml --out runs/bbbc050_fpn
    # 4. predict 16_cell_stage in 3D, 3D F1 at IoU 0.5, volume error -> RUN/proof.json
    .venv/bin/python examples/volume_bbbc050.py proof runs/bbbc050_fpn runs/bbbc050/data

Two stacks are enough to prove the pipeline (3D objects, 3D matching, volumes in µm³), not to
claim an accuracy: nothing was chosen by looking at ``16_cell_stage``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "bbbc050-qcanet"
#: voxel size of BBBC050 (µm): not stored in the TIFFs (the dataset's README)
PIXEL_SIZE, Z_SPACING = 0.8, 1.75
#: rows 0-47 of 8_cell_stage hold 2 nuclei whole, rows 48-119 the other 6 (no nucleus crosses)
SPLIT_ROW = 48


def prepare(out: str | Path) -> Path:
    """``OUT/{all,train,val,test}/{images,labels}``: 8_cell_stage whole, its rows 48-119 and
    0-47, and 16_cell_stage, as ImageJ ZYX stacks carrying the voxel size."""
    import numpy as np

    from morphoscope.io.stacks import read_stack, write_stack

    out = Path(out)
    parts = {"all": ("8_cell_stage", slice(None)), "train": ("8_cell_stage", slice(SPLIT_ROW, None)),
             "val": ("8_cell_stage", slice(0, SPLIT_ROW)), "test": ("16_cell_stage", slice(None))}
    for part, (name, rows) in parts.items():
        for sub, src in (("images", DATA / "images"), ("labels", DATA / "labels_instance")):
            stack = read_stack(src / f"{name}.tif", axes="ZYX")
            data = np.ascontiguousarray(stack.data[:, rows])
            (out / part / sub).mkdir(parents=True, exist_ok=True)
            write_stack(out / part / sub / f"{name}.tif", data, "ZYX", pixel_size=PIXEL_SIZE, z_spacing=Z_SPACING)
    print(f"data folders written to {out}")
    return out


def bias() -> list[dict]:
    """The discretisation bias of the 3D measurements (docs/volumes.md): voxelised balls of radius
    5-40 pixels, cubic voxels and voxels 1.75 / 0.8 longer in Z."""
    import math

    from morphoscope.morphology.volume import ball, measure_volume

    rows = []
    for dz in (1.0, Z_SPACING / PIXEL_SIZE):
        for r in (5, 10, 20, 40):
            t = measure_volume(ball(float(r), (dz, 1.0, 1.0)).astype("uint8"), pixel_size=1.0, z_spacing=dz)
            rows.append({"z_ratio": round(dz, 4), "radius": r,
                         "volume / (4/3 pi r^3)": round(float(t["volume_um3"][0]) / (4 / 3 * math.pi * r ** 3), 4),
                         "area / (4 pi r^2)": round(float(t["surface_area_um2"][0]) / (4 * math.pi * r ** 2), 4),
                         "sphericity": round(float(t["sphericity"][0]), 4)})
            print(rows[-1])
    return rows


def volume_error(gt_labels, pred_labels, matching, voxel_um3: float) -> dict:
    """Per matched pair (IoU >= 0.5) the relative volume error (pred - GT) / GT, and its summary."""
    import numpy as np

    tm = matching["0.5"]
    gt_v = np.bincount(gt_labels.ravel())
    pr_v = np.bincount(pred_labels.ravel())
    rel = [(pr_v[p] - gt_v[g]) / gt_v[g] for g, p in zip(tm.gt_ids, tm.pred_ids)]
    rel = np.asarray(rel, np.float64)
    return {"pairs": len(rel),
            "mean_relative_error": float(rel.mean()) if len(rel) else None,
            "mean_absolute_relative_error": float(np.abs(rel).mean()) if len(rel) else None,
            "median_absolute_relative_error": float(np.median(np.abs(rel))) if len(rel) else None,
            "gt_volume_um3_mean": float(np.mean([gt_v[g] for g in tm.gt_ids]) * voxel_um3) if len(rel) else None,
            "pred_volume_um3_mean": float(np.mean([pr_v[p] for p in tm.pred_ids]) * voxel_um3) if len(rel) else None}


def stack_maps_of(model, image_path):
    """The loaded model and its per-plane maps of one stack, stacked ``(channels, Z, H, W)``."""
    import numpy as np

    from morphoscope.engine.predictor import Predictor
    from morphoscope.engine.writer import InputFile
    from morphoscope.prediction.predict import open_input
    from morphoscope.tasks import load_model

    bundle = load_model(model, device="cpu")
    predictor = Predictor(bundle, keep_maps=True, volume=False)
    item = InputFile(name="x", path=Path(image_path), extra={"files": [Path(image_path)]})
    _, planes = open_input(item, bundle=bundle, inference=predictor.inference)
    maps = []
    for _, res in predictor.run(planes):
        if isinstance(res, BaseException):
            raise res
        maps.append(res.maps)
    planes[0].source.close()
    return bundle, np.stack(maps, axis=1)


def select(run: str | Path, data: str | Path, threads: int = 1) -> dict:
    """Settings on the held-out planes (``DATA/val``: rows 0-47 of 8_cell_stage, 2 nuclei): for
    the run's best (2D validation F1) and last checkpoints, every foreground threshold and seed h of
    a small grid, the 3D F1 at IoU 0.5 and the volume error of the val stack; the best by F1, then
    by mean absolute volume error. Writes ``RUN/select_val.json``."""
    import torch

    torch.set_num_threads(threads)
    from morphoscope.io.stacks import read_stack
    from morphoscope.metrics.matching import match

    run, data = Path(run), Path(data)
    image = next((data / "val" / "images").glob("*.tif"))
    gt = read_stack(data / "val" / "labels" / image.name).data
    rows = []
    for ckpt in ("model_best.pt", "checkpoint_last.pt"):
        bundle, maps = stack_maps_of(run / ckpt, image)
        for seed_h in (1.0, 2.0, 4.0):
            inf = bundle.task.inference(bundle, seed_h=seed_h)
            for threshold in (0.5, 0.7, 0.85, 0.95):
                labels, _ = inf.volume_objects(maps, threshold, Z_SPACING / PIXEL_SIZE).to_labels()
                m = match(gt, labels, thresholds=(0.5,))
                err = volume_error(gt, labels, m.by_threshold, PIXEL_SIZE ** 2 * Z_SPACING)
                tm = m["0.5"]
                f1 = 2 * tm.tp / max(2 * tm.tp + tm.fp + tm.fn, 1)
                rows.append({"checkpoint": ckpt, "seed_h": seed_h, "threshold": threshold, "f1@0.5_3d": f1,
                             "tp": tm.tp, "fp": tm.fp, "fn": tm.fn,
                             "mean_abs_volume_error": err["mean_absolute_relative_error"],
                             "mean_volume_error": err["mean_relative_error"]})
                print(rows[-1], flush=True)
    best = max(rows, key=lambda r: (r["f1@0.5_3d"], -(r["mean_abs_volume_error"] or 9.0)))
    out = {"run": str(run), "val": str(image), "grid": rows, "best": best}
    (run / "select_val.json").write_text(json.dumps(out, indent=2) + "\n")
    print("best on the held-out planes:", json.dumps(best))
    return out


def proof(run: str | Path, data: str | Path, threads: int = 1, part: str = "test", model: str = "model_best.pt",
          threshold: float | None = None) -> dict:
    """Predict ``DATA/PART`` with the run's ``model`` in 3D (its foreground threshold, or
    ``threshold``), score it with ``evaluate`` (3D matching) and the volume error of the matched
    nuclei; writes ``RUN/proof_PART.json``."""
    import torch

    torch.set_num_threads(threads)
    from morphoscope.io.stacks import read_stack
    from morphoscope.metrics.evaluate import evaluate
    from morphoscope.metrics.matching import match
    from morphoscope.prediction.predict import predict

    run, data = Path(run), Path(data)
    pred_dir = run / f"pred_{part}"
    t0 = time.process_time()
    w0 = time.time()
    options = {} if threshold is None else {"threshold": threshold}
    predict(data / part / "images", pred_dir, model=run / model, device="cpu", overwrite=True, progress=False,
            measure=True, volume=True, **options)
    cpu_predict = time.process_time() - t0
    res = evaluate(pred_dir, data / part)
    rows = []
    for p in sorted((data / part / "labels").glob("*.tif")):
        gt = read_stack(p).data
        pred = read_stack(pred_dir / f"{p.stem}_labels.tif").data
        m = match(gt, pred, thresholds=(0.5,))
        rows.append({"image": p.stem, **volume_error(gt, pred, m.by_threshold, PIXEL_SIZE ** 2 * Z_SPACING)})
    m = res["matching"]["0.5"]
    out = {"run": str(run), "model": model, "threshold": json.loads((pred_dir / "predictions.json").read_text())[
               "info"]["settings"]["threshold"], "part": part, "stacks": res["images"], "gt_objects": res["objects"]["gt"],
           "pred_objects": res["objects"]["pred"], "f1@0.5_3d": m["f1"], "precision@0.5_3d": m["precision"],
           "recall@0.5_3d": m["recall"], "mean_matched_iou@0.5_3d": m["mean_matched_iou"],
           "f1@0.75_3d": res["matching"]["0.75"]["f1"], "volume": rows,
           "cpu_seconds_predict": round(cpu_predict, 1), "wall_seconds_predict": round(time.time() - w0, 1),
           "threads": threads}
    (run / f"proof_{part}.json").write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    cmd = sys.argv[1] if len(sys.argv) > 1 else ""
    if cmd == "prepare":
        prepare(sys.argv[2] if len(sys.argv) > 2 else "runs/bbbc050/data")
    elif cmd == "bias":
        bias()
    elif cmd == "select":
        select(sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else "runs/bbbc050/data")
    elif cmd == "proof":
        proof(sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else "runs/bbbc050/data",
              part=sys.argv[4] if len(sys.argv) > 4 else "test",
              threshold=float(sys.argv[5]) if len(sys.argv) > 5 else None)
    else:
        sys.exit(__doc__)
