"""Prediction engine vs the plain way, measured in the same run.

Mosaics of BBBC039 validation images (2x2, 4x4, 10x10 tiles of 520x696: 1,040x1,392 up to
5,200x6,960 pixels, about 500 to 12,000 nuclei) go through ``morphoscope predict`` (blocks,
ownership merge, crop-wise RLE, all outputs written) and through the plain path (the whole image
through torchvision's Mask R-CNN and its full-canvas ``paste_masks_in_image``). For each:
objects found vs ground truth, F1 at IoU 0.5 against the mosaic's ground truth, wall time per
megapixel and peak RSS (each case runs in its own process). The same tiles predicted one by one
give the reference F1 the mosaic must match (within 0.01), counted twice: over every object, and
over the objects away from the tiles' edges (``interior``: the seams of a mosaic put the cut
nuclei of two images side by side, which a model sees as one). Then images per second on the CPU for
batches of 520x696 images, end to end (outputs written) and network-only, against the plain
path on the same images.

    python bench/bench_predict.py                       # 2x2, 4x4, 10x10 and throughput
    python bench/bench_predict.py --sizes 2 --images 8  # quick

Results: docs/models.md ("Prediction engine"), with the machine they were measured on.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "bbbc039" / "validation"
# the plain path is torchvision's Mask R-CNN, so both sides run the shipped Mask R-CNN weights
MODEL = "nuclei-maskrcnn"
PLAIN_MEMORY_LIMIT = 6 * 2**30  # the plain paste needs detections x H x W x 4 bytes at once


def tiles(data: Path, count: int):
    from morphoscope.io.images import read_image, read_label_image

    names = sorted(p.stem for p in (data / "images").glob("*.tif"))
    names = [n for n in names if read_label_image(data / "labels" / f"{n}.png").max() > 0]
    picked = [names[i % len(names)] for i in range(count)]
    return picked, [read_image(data / "images" / f"{n}.tif") for n in picked], \
        [read_label_image(data / "labels" / f"{n}.png").astype(np.int64) for n in picked]


def mosaic(images, labels, n):
    offset, rows_i, rows_l = 0, [], []
    for r in range(n):
        ri, rl = [], []
        for c in range(n):
            lab = labels[r * n + c].copy()
            lab[lab > 0] += offset
            offset = int(lab.max(initial=offset))
            ri.append(images[r * n + c])
            rl.append(lab)
        rows_i.append(np.concatenate(ri, axis=1))
        rows_l.append(np.concatenate(rl, axis=1))
    return np.concatenate(rows_i, axis=0), np.concatenate(rows_l, axis=0)


def f1_of(gt, pred) -> tuple[float, int]:
    from morphoscope.metrics.matching import match

    m = match(gt, pred, thresholds=(0.5,))["0.5"]
    return 2 * m.tp / max(1, 2 * m.tp + m.fp + m.fn), m.tp


TILE_SHAPE = (520, 696)  # BBBC039 images, the tiles of every mosaic


def interior(labels: np.ndarray) -> np.ndarray:
    """``labels`` without the objects that touch a tile's edge. A mosaic's seams put the cut
    nuclei of two different images side by side, which no model keeps apart as the annotation
    does (each image's half); away from the seams the mosaic and its tiles predicted one by one
    must agree."""
    h, w = TILE_SHAPE
    band = np.zeros(labels.shape, bool)
    band[::h, :] = True
    band[h - 1::h, :] = True
    band[:, ::w] = True
    band[:, w - 1::w] = True
    edge = np.unique(labels[band])
    return np.where(np.isin(labels, edge[edge > 0]), 0, labels)


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


# ---- cases, each run in its own process ------------------------------------------------------

def case_engine(work: Path) -> dict:
    import tifffile

    from morphoscope.prediction.predict import predict

    src = next((work / "in").glob("*.tif"))
    t0 = time.perf_counter()
    predict([src], work / "out", model=MODEL, device="cpu", progress=False)
    seconds = time.perf_counter() - t0
    pred = tifffile.imread(work / "out" / f"{src.stem}_labels.tif")
    gt = np.load(work / "gt.npy")
    f1, tp = f1_of(gt, pred)
    f1_in, _ = f1_of(interior(gt), interior(pred))
    return {"seconds": seconds, "objects": int(pred.max()), "f1": f1, "f1_interior": f1_in,
            "peak_rss_gb": peak_rss_gb()}


def case_tiles(work: Path) -> dict:
    import tifffile

    from morphoscope.metrics.matching import match
    from morphoscope.prediction.predict import predict

    t0 = time.perf_counter()
    predict([work / "tiles"], work / "out_tiles", model=MODEL, device="cpu", progress=False)
    seconds = time.perf_counter() - t0
    tp = fp = fn = 0
    inner = np.zeros(3, np.int64)  # tp, fp, fn away from the tile edges
    n_obj = 0
    for p in sorted((work / "tiles").glob("*.tif")):
        pred = tifffile.imread(work / "out_tiles" / f"{p.stem}_labels.tif")
        gt = np.load(work / "tiles" / f"{p.stem}.npy")
        m = match(gt, pred, thresholds=(0.5,))["0.5"]
        tp, fp, fn, n_obj = tp + m.tp, fp + m.fp, fn + m.fn, n_obj + int(pred.max())
        mi = match(interior(gt), interior(pred), thresholds=(0.5,))["0.5"]
        inner += (mi.tp, mi.fp, mi.fn)
    return {"seconds": seconds, "objects": n_obj, "f1": 2 * tp / max(1, 2 * tp + fp + fn),
            "f1_interior": 2 * inner[0] / max(1, 2 * inner[0] + inner[1] + inner[2]), "peak_rss_gb": peak_rss_gb()}


def plain_labels(bundle, image):
    """The plain way: the whole image through torchvision's Mask R-CNN, masks pasted on full-size
    canvases by torchvision, the label image painted in score order."""
    import torch

    from morphoscope.tasks.instance.task import model_input

    lo, hi = np.percentile(image.astype(np.float32), [1.0, 99.8])
    x = torch.from_numpy(model_input(image, float(lo), float(hi)))
    with torch.inference_mode():
        out = bundle.model([x])[0]  # transform.paste_masks is True: torchvision pastes full canvases
    masks = (out["masks"][:, 0] > 0.5).numpy()
    labels = np.zeros(image.shape[:2], np.int32)
    for k, (m, s) in enumerate(zip(masks, out["scores"].numpy()), start=1):
        if s >= 0.5:
            labels[m & (labels == 0)] = k
    return labels


def case_plain(work: Path) -> dict:
    import torch

    from morphoscope.io.images import read_image
    from morphoscope.tasks import load_model

    bundle = load_model(MODEL, device="cpu")
    src = next((work / "in").glob("*.tif"))
    image = read_image(src)
    cap = bundle.model.roi_heads.detections_per_img
    need = cap * image.shape[0] * image.shape[1] * 4
    if need > PLAIN_MEMORY_LIMIT:
        return {"skipped": f"the full-canvas paste of up to {cap} detections would need {need / 2**30:.0f} GB"}
    torch.set_grad_enabled(False)
    t0 = time.perf_counter()
    labels = plain_labels(bundle, image)
    seconds = time.perf_counter() - t0
    f1, _ = f1_of(np.load(work / "gt.npy"), labels)
    return {"seconds": seconds, "objects": int(len(np.unique(labels)) - 1), "f1": f1,
            "peak_rss_gb": peak_rss_gb(), "capped_at": cap}


def case_throughput(work: Path) -> dict:
    """Images per second for 520x696 images: end to end (morphoscope predict, every output
    written) at batch sizes 1 and 4, network+merge only, and the plain path."""
    from morphoscope.engine.predictor import PlaneInput, Predictor
    from morphoscope.io.images import read_image
    from morphoscope.prediction.predict import predict
    from morphoscope.tasks import load_model

    files = sorted((work / "tiles").glob("*.tif"))
    images = [read_image(p) for p in files]
    bundle = load_model(MODEL, device="cpu")
    out = {"images": len(files)}
    for bs in (1, 4):
        t0 = time.perf_counter()
        predict(files, work / f"tp{bs}", model=bundle, progress=False, batch_size=bs, overwrite=True)
        out[f"end_to_end_bs{bs}_img_per_s"] = len(files) / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        for _ in Predictor(bundle, batch_size=bs).run(PlaneInput(f"i{i}", im) for i, im in enumerate(images)):
            pass
        out[f"engine_only_bs{bs}_img_per_s"] = len(files) / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for im in images:
        plain_labels(bundle, im)
    out["plain_img_per_s"] = len(files) / (time.perf_counter() - t0)
    return out


CASES = {"engine": case_engine, "tiles": case_tiles, "plain": case_plain, "throughput": case_throughput}


def run_case(name: str, work: Path) -> dict:
    r = subprocess.run([sys.executable, __file__, "--case", name, "--work", str(work)], capture_output=True,
                       text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    if r.returncode != 0:
        return {"error": r.stderr.strip().splitlines()[-1] if r.stderr.strip() else f"exit {r.returncode}"}
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="*", default=[2, 4, 10])
    ap.add_argument("--images", type=int, default=16, help="520x696 images for the throughput case")
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    ap.add_argument("--case", choices=sorted(CASES), help=argparse.SUPPRESS)
    ap.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.case:
        print(json.dumps(CASES[args.case](args.work)))
        return
    if not (args.data / "images").is_dir():
        sys.exit(f"BBBC039 validation images not found at {args.data}")
    import tifffile
    import torch

    machine = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
               "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
               "torch": torch.__version__}
    results = {"machine": machine, "mosaics": {}}
    root = Path(tempfile.mkdtemp(prefix="bench_predict_"))
    try:
        for n in args.sizes:
            names, imgs, labs = tiles(args.data, n * n)
            image, gt = mosaic(imgs, labs, n)
            work = root / f"m{n}"
            (work / "in").mkdir(parents=True)
            (work / "tiles").mkdir()
            tifffile.imwrite(work / "in" / f"mosaic{n}x{n}.tif", image, compression="zlib")
            np.save(work / "gt.npy", gt)
            for i, (im, lab) in enumerate(zip(imgs, labs)):
                tifffile.imwrite(work / "tiles" / f"t{i:03d}.tif", im, compression="zlib")
                np.save(work / "tiles" / f"t{i:03d}.npy", lab)
            mp = image.shape[0] * image.shape[1] / 1e6
            row = {"shape": list(image.shape), "gt_objects": int(len(np.unique(gt)) - 1)}
            for case in ("engine", "tiles", "plain"):
                res = run_case(case, work)
                if "seconds" in res:
                    res["seconds_per_mpx"] = res["seconds"] / mp
                row[case] = res
                print(f"{n}x{n} {case}: {res}", flush=True)
            if "f1" in row["engine"] and "f1" in row["tiles"]:
                row["f1_mosaic_minus_tiles"] = row["engine"]["f1"] - row["tiles"]["f1"]
                row["f1_interior_mosaic_minus_tiles"] = row["engine"]["f1_interior"] - row["tiles"]["f1_interior"]
            results["mosaics"][f"{n}x{n}"] = row
        names, imgs, labs = tiles(args.data, args.images)
        work = root / "throughput"
        (work / "tiles").mkdir(parents=True)
        for i, im in enumerate(imgs):
            tifffile.imwrite(work / "tiles" / f"t{i:03d}.tif", im, compression="zlib")
        results["throughput_520x696"] = run_case("throughput", work)
        print(f"throughput: {results['throughput_520x696']}", flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print()
    print(f"machine: {machine}")
    print(f"{'mosaic':>7} {'pixels':>11} {'GT':>6} | {'engine: objs':>12} {'F1':>6} {'s/Mpx':>6} {'RSS GB':>6} "
          f"| {'tiles F1':>8} | {'interior F1: mosaic':>19} {'tiles':>6} | {'plain: objs':>11} {'F1':>6} {'s/Mpx':>6} "
          f"{'RSS GB':>6}")
    for key, row in results["mosaics"].items():
        e, t, p = row["engine"], row["tiles"], row["plain"]
        px = f"{row['shape'][0]}x{row['shape'][1]}"
        plain = (f"{p['objects']:>11} {p['f1']:>6.3f} {p['seconds_per_mpx']:>6.2f} {p['peak_rss_gb']:>6.2f}"
                 if "f1" in p else f"{'(' + p.get('skipped', p.get('error', '')) + ')':>34}")
        print(f"{key:>7} {px:>11} {row['gt_objects']:>6} | {e.get('objects', '-'):>12} {e.get('f1', float('nan')):>6.3f} "
              f"{e.get('seconds_per_mpx', float('nan')):>6.2f} {e.get('peak_rss_gb', float('nan')):>6.2f} | "
              f"{t.get('f1', float('nan')):>8.3f} | {e.get('f1_interior', float('nan')):>19.3f} "
              f"{t.get('f1_interior', float('nan')):>6.3f} | {plain}")
    tp = results["throughput_520x696"]
    if "plain_img_per_s" in tp:
        print(f"\n520x696 images per second on the CPU ({tp['images']} images): end to end "
              f"{tp['end_to_end_bs1_img_per_s']:.2f} (batch 1), {tp['end_to_end_bs4_img_per_s']:.2f} (batch 4); "
              f"network+merge {tp['engine_only_bs1_img_per_s']:.2f} / {tp['engine_only_bs4_img_per_s']:.2f}; "
              f"plain torchvision {tp['plain_img_per_s']:.2f} -> ratio {tp['engine_only_bs1_img_per_s'] / tp['plain_img_per_s']:.2f}x")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
