#!/usr/bin/env python3
"""Cellpose peer baseline: train the ``cellpose`` package (3.x, the U-Net family that trains on a
CPU) from scratch with its own ``train_seg`` recipe on the images morphoscope's generalist model
trains on, for a given CPU-time budget, predict the validation images and score them with
morphoscope's evaluate, as ``bench/peer_stardist.py`` does for StarDist (whose image lists,
changed BBBC039 sets and scoring it reuses).

    bash bench/cellpose_env.sh     # makes .cellpose-venv (cellpose 3.1.1.3, torch 2.14.1)
    .cellpose-venv/bin/python bench/peer_cellpose.py train --cpu-seconds 3000 --threads 2 --out runs/peer_cellpose_3000
    .cellpose-venv/bin/python bench/peer_cellpose.py predict --threads 2 --out runs/peer_cellpose_3000
    .venv/bin/python bench/peer_cellpose.py score --out runs/peer_cellpose_3000

``train``   BBBC039 training + the DSB2018 train split (configs/splits/dsb2018_train.txt), grey
            (colour images averaged over RGB: Cellpose's nuclei recipe is one channel,
            ``channels=[0, 0]``), ``CellposeModel(pretrained_model=False)`` (a new network,
            ``diam_mean`` 30: ``train_seg`` rescales each image by its nuclei's median diameter),
            ``train_seg`` with its defaults (AdamW, lr 0.005 with a 10-epoch warm-up, batch 8,
            224 px crops, flows computed at the start). Training stops at the end of the first
            batch after which the process has used ``--cpu-seconds`` of CPU time (user + system,
            all threads, ``time.process_time``, counted from the start of ``train_seg``, the flow
            computation included); the network as it is then is saved.
``predict`` every validation image (the sets of peer_stardist.py, including the changed BBBC039
            ones) with ``model.eval(diameter=D)``, D = the median of the set's per-image median GT
            diameters (one number per set, as a user gives Cellpose a diameter; the model has no
            size model of its own). Cellpose gives no per-object score: every object scores 1.
``score``   (main venv) morphoscope's evaluate per set: ``OUT/peer_cellpose.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peer_stardist import (  # noqa: E402
    DATA,
    EVAL_SETS,
    VARIANT_SETS,
    bbbc039_items,
    dsb2018_items,
    read_image,
    read_labels,
    validation_set,
)


class BudgetSpent(Exception):
    pass


def grey(image):
    import numpy as np

    image = np.asarray(image, np.float32)
    return image.mean(-1) if image.ndim == 3 else image


def _versions() -> dict:
    import numpy
    import torch
    from cellpose import version

    return {"cellpose": version, "torch": torch.__version__, "numpy": numpy.__version__,
            "python": sys.version.split()[0]}


def train(args) -> None:
    import numpy as np
    import torch
    from cellpose import models, train as cp_train

    torch.set_num_threads(args.threads)
    items = bbbc039_items(args.data, "training") + dsb2018_items(args.data, "train")
    t0 = time.process_time()
    X = [grey(read_image(it)) for it in items]
    Y = [read_labels(it).astype(np.int32) for it in items]
    load = time.process_time() - t0
    model = models.CellposeModel(gpu=False, pretrained_model=False, diam_mean=30.0)
    net = model.net
    budget, start = args.cpu_seconds, [None]
    batches = [0]
    forward = net.forward

    def counted(*a, **k):  # the budget is checked at every training batch's forward pass
        if net.training:
            if time.process_time() - start[0] > budget:
                raise BudgetSpent
            batches[0] += 1
        return forward(*a, **k)

    net.forward = counted
    out = args.out / "model"
    out.mkdir(parents=True, exist_ok=True)
    start[0] = time.process_time()
    wall = time.perf_counter()
    stopped = False
    try:
        cp_train.train_seg(net, train_data=X, train_labels=Y, channels=[0, 0], n_epochs=args.epochs,
                           save_path=str(args.out), model_name="cellpose_peer", save_every=10_000)
    except BudgetSpent:
        stopped = True
    cpu = time.process_time() - start[0]
    net.forward = forward
    net.save_model(str(out / "cellpose_peer"))
    info = {"train": "bbbc039+dsb2018", "cpu_seconds_budget": budget, "threads": args.threads,
            "images": len(items), "batches": batches[0], "stopped_by_budget": stopped,
            "epochs_planned": args.epochs, "cpu_seconds": {"load": load, "train": cpu},
            "wall_seconds": {"train": time.perf_counter() - wall}, "versions": _versions()}
    (args.out / "train.json").write_text(json.dumps(info, indent=2) + "\n")
    print(json.dumps(info, indent=2))


def _median_diameter(labels):
    import numpy as np

    a = np.bincount(labels.ravel())[1:]
    a = a[a > 0]
    return float(np.median(2 * np.sqrt(a / np.pi))) if len(a) else None


def predict(args) -> None:
    import numpy as np
    import tifffile
    import torch
    from cellpose import models

    torch.set_num_threads(args.threads)
    model = models.CellposeModel(gpu=False, pretrained_model=str(args.out / "model" / "cellpose_peer"))
    report = {"threads": args.threads, "thresholds": {}, "versions": _versions(), "sets": {}}
    if (args.out / "predict.json").is_file():
        report["sets"] = json.loads((args.out / "predict.json").read_text())["sets"]
    for name in args.sets:
        pred_dir = args.out / "pred" / name
        pred_dir.mkdir(parents=True, exist_ok=True)
        items, gt_dir, images = validation_set(args, name)
        gts = ({it["name"]: read_gt_png(gt_dir / "labels" / f"{it['name']}.png") for it in items} if images
               else {it["name"]: read_labels(it) for it in items})
        diameters = [d for d in (_median_diameter(g) for g in gts.values()) if d]
        diameter = float(np.median(diameters))
        scores, timing = {}, []
        for it in items:
            x = grey(images[it["name"]] if images else read_image(it))
            cpu, wall = time.process_time(), time.perf_counter()
            masks = model.eval(x, channels=[0, 0], diameter=diameter)[0]
            timing.append({"image": it["name"], "height": x.shape[0], "width": x.shape[1],
                           "cpu_seconds": time.process_time() - cpu, "wall_seconds": time.perf_counter() - wall})
            masks = np.asarray(masks)
            scores[it["name"]] = {int(k): 1.0 for k in np.unique(masks) if k}
            tifffile.imwrite(pred_dir / f"{it['name']}_labels.tif",
                             masks.astype(np.uint16 if masks.max() < 65536 else np.uint32), compression="zlib")
        (pred_dir / "scores.json").write_text(json.dumps(scores))
        report["sets"][name] = {"images": len(items), "gt": str(gt_dir), "pred": str(pred_dir),
                                "diameter": diameter,
                                "modality": {it["name"]: it["modality"] for it in items}, "timing": timing}
        cpu = [t["cpu_seconds"] for t in timing]
        print(f"{name}: predicted {len(items)} images at diameter {diameter:.1f} px, {sum(cpu):.1f} CPU s",
              flush=True)
        (args.out / "predict.json").write_text(json.dumps(report, indent=2) + "\n")  # after each set


def read_gt_png(path):
    import numpy as np
    from PIL import Image

    return np.asarray(Image.open(path)).astype(np.int32)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("step", choices=("train", "predict", "score"))
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cpu-seconds", type=float, default=3000.0)
    ap.add_argument("--epochs", type=int, default=100, help="train_seg's n_epochs (its schedule); the budget stops it")
    ap.add_argument("--sets", default=",".join(EVAL_SETS + VARIANT_SETS))
    ap.add_argument("--max-val-images", type=int, default=None)
    ap.add_argument("--variant-images", type=int, default=20)
    args = ap.parse_args(argv)
    args.sets = [s for s in args.sets.split(",") if s]
    args.out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    if args.step == "train":
        train(args)
    elif args.step == "predict":
        predict(args)
    else:
        from peer_stardist import score

        score(args, peer="cellpose")


if __name__ == "__main__":
    main()
