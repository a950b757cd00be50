#!/usr/bin/env python3
"""Out-of-distribution check of a nuclei model: calibration on its own training and validation
images, and a check on real images of other kinds.

``calibrate``  predicts every training image (BBBC039 training + configs/splits/dsb2018_train.txt,
               each at its annotated median diameter), pools the encoder's deepest features per
               image, and fits their statistics (mean, top principal components, residual
               variance: :func:`morphoscope.tasks.semantic.task.ood_statistics`); then scores the
               validation images (BBBC039 validation + dsb2018_val.txt; distance to the nearest
               group mean: BBBC039 and the three DSB modalities) through the ordinary
               prediction path (automatic scale) and sets the warning threshold to the largest
               validation score, so no validation image is warned about. Writes ``--out`` (JSON:
               the statistics, the threshold, the score distributions).
``check``      with the statistics in the model (``scripts/ship_model.py --ood``) or given by
               ``--ood``, predicts images of other kinds from ../shared/data and prints the share
               that is warned about, per set: electron microscopy (platelet-em-z0), CT
               (pancreas-ct-nih5), blood smears (bccd-platelets), DIC (dic-platelets-unlabelled),
               HPA protein channel (hpa_sample), and nuclei of 3D confocal stacks (bbbc050-qcanet,
               middle planes: nuclei, but of a kind not trained on).

    .venv/bin/python bench/ood_generalist.py calibrate runs/nuclei_gen_a/tuned.pt --out runs/nuclei_gen_a/ood.json
    .venv/bin/python bench/ood_generalist.py check runs/nuclei_gen_a/tuned.pt --ood runs/nuclei_gen_a/ood.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from eval_generalist import DATA, SPLITS, _median_diameter, bbbc039_items, dsb_items, machine  # noqa: E402


def train_items(limit=None):
    from morphoscope.formats.dataset import load_instance_dataset
    from morphoscope.formats.splits import read_group_table, read_split_list
    from morphoscope.io.images import read_image, read_label_image

    folder = DATA / "bbbc039" / "training"
    paths = sorted((folder / "images").glob("*.tif"))[:limit]
    for p in paths:
        yield {"name": p.stem, "group": "bbbc039", "image": read_image(p),
               "labels": read_label_image(folder / "labels" / f"{p.stem}.png").astype(np.int32)}
    ids = read_split_list(SPLITS / "dsb2018_train.txt")[:limit]
    modality = read_group_table(SPLITS / "dsb2018_modality.csv", "modality")
    ds = load_instance_dataset(DATA / "dsb2018" / "stage1_train")
    by = {s.name: s for s in ds.samples}
    for i in ids:
        img = by[i].load_image()
        lab, _ = by[i].load_label_image(img.shape)
        yield {"name": i, "group": modality[i], "image": img, "labels": lab.astype(np.int32)}


def features(bundle, items, *, given_diameter: bool, ood=None):
    """(name, group, pooled features, OOD score or None) per image."""
    from morphoscope.engine.predictor import PlaneInput, Predictor

    if ood is not None:
        bundle.extra["ood"] = ood
    predictor = Predictor(bundle, features=True)
    inf = predictor.inference
    out = []
    items = list(items)
    inputs = (PlaneInput(it["name"], it["image"],
                         diameter=(_median_diameter(it["labels"]) if given_diameter else None)) for it in items)
    for it, (_, res) in zip(items, predictor.run(inputs)):
        if isinstance(res, BaseException):
            raise res
        out.append((it["name"], it["group"], inf.last_features, inf.last_ood_score, res.warnings))
    return out


def cmd_calibrate(args):
    import torch

    from morphoscope.tasks import load_model
    from morphoscope.tasks.semantic.task import ood_score, ood_statistics

    torch.set_num_threads(args.threads)
    bundle = load_model(args.model, device="cpu")
    bundle.extra.pop("ood", None)
    t0 = time.time()
    tr = features(bundle, train_items(args.limit), given_diameter=True)
    stats = ood_statistics(np.stack([f for _, _, f, _, _ in tr]), [g for _, g, _, _, _ in tr],
                           components=args.components)
    print(f"{len(tr)} training images: {time.time() - t0:.0f} s", flush=True)
    train_scores = [ood_score(f, stats) for _, _, f, _, _ in tr]
    val = features(bundle, list(bbbc039_items(args.limit)) + list(dsb_items(args.limit)), given_diameter=False)
    val_scores = {n: (g, ood_score(f, stats)) for n, g, f, _, _ in val}
    threshold = float(max(s for _, s in val_scores.values()))
    by_group = {}
    for g, s in val_scores.values():
        by_group.setdefault(g, []).append(s)
    report = {"machine": machine(), "model": str(args.model), "components": args.components,
              "train_images": len(tr), "val_images": len(val),
              "train_score_quantiles": np.quantile(train_scores, [0.5, 0.9, 0.99, 1.0]).tolist(),
              "val_score_quantiles": {g: np.quantile(v, [0.5, 0.9, 1.0]).tolist() for g, v in by_group.items()},
              "threshold": threshold, "threshold_rule": "largest score of the validation images",
              "stats": {**stats, "threshold": threshold}}
    Path(args.out).write_text(json.dumps(report) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "stats"}, indent=1))


def other_sets(limit):
    """Real images of kinds the model was not trained on (../shared/data)."""
    from morphoscope.io.images import read_image

    def files(pattern):
        return sorted(DATA.glob(pattern))[:limit]

    sets = {
        "electron microscopy (platelet-em-z0)": files("platelet-em-z0/images/*.png"),
        "CT (pancreas-ct-nih5)": files("pancreas-ct-nih5/orig_jpeg/images/*.jpg"),
        "blood smear (bccd-platelets)": files("bccd-platelets/BCCD/JPEGImages/*.jpg"),
        "DIC platelets (dic-platelets-unlabelled)": files("dic-platelets-unlabelled/images/*.tif"),
        "HPA protein channel (hpa_sample)": files("hpa_sample/images/*_green.png"),
    }
    out = {k: [(p.name, read_image(p)) for p in v] for k, v in sets.items()}
    stacks = []
    for p in files("bbbc050-qcanet/images/*.tif"):
        s = read_image(p)
        stacks.append((p.name + "[mid]", s[s.shape[0] // 2]))
    out["confocal embryo nuclei, 3D middle plane (bbbc050-qcanet)"] = stacks
    return out


def cmd_check(args):
    import torch

    from morphoscope.tasks import load_model

    torch.set_num_threads(args.threads)
    bundle = load_model(args.model, device="cpu")
    ood = json.loads(Path(args.ood).read_text())["stats"] if args.ood else bundle.extra.get("ood")
    if not ood:
        sys.exit("no OOD statistics: give --ood or a model that has them")
    report = {"machine": machine(), "model": str(args.model), "threshold": ood["threshold"], "sets": {}}
    for name, images in other_sets(args.limit).items():
        items = [{"name": n, "group": name, "image": im, "labels": np.zeros(im.shape[:2], np.int32)}
                 for n, im in images]
        rows = features(bundle, items, given_diameter=False, ood=ood)
        scores = [s for *_, s, _ in rows]
        warned = sum(1 for *_, w in rows if any("unlike" in x for x in w))
        report["sets"][name] = {"images": len(rows), "warned": warned,
                                "score_median": float(np.median(scores)), "score_min": float(np.min(scores))}
        print(f"{name:<58} {warned:>3}/{len(rows):<3} warned  score median {np.median(scores):.2f} "
              f"min {np.min(scores):.2f} (threshold {ood['threshold']:.2f})", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("calibrate")
    c.add_argument("model")
    c.add_argument("--out", required=True)
    c.add_argument("--components", type=int, default=32)
    c.add_argument("--limit", type=int, default=None, help="images per source (smoke runs)")
    c.add_argument("--threads", type=int, default=1)
    k = sub.add_parser("check")
    k.add_argument("model")
    k.add_argument("--ood")
    k.add_argument("--out")
    k.add_argument("--limit", type=int, default=12, help="images per set")
    k.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    {"calibrate": cmd_calibrate, "check": cmd_check}[args.cmd](args)


if __name__ == "__main__":
    main()
