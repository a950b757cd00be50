#!/usr/bin/env python3
"""Validation of a nuclei model across microscopes and scales, through the one prediction engine.

Sets (all validation: BBBC039's official validation folder and configs/splits/dsb2018_val.txt):

``bbbc039``       the 50 BBBC039 validation images (520x696, grey fluorescence)
``dsb2018``       the 132 DSB2018 val-split images, scored pooled, per image (DSB score) and per
                  modality (fluorescence, histology, brightfield: configs/splits/dsb2018_modality.csv)
``bbbc039_x0.5``  BBBC039 validation shrunk to half size (anti-aliased; labels by nearest neighbour)
``bbbc039_x2``    ... enlarged to twice the size
``bbbc039_inv``   ... with inverted intensities (max - value)

Scale modes (``--modes``): ``auto`` (the model's size estimate, the default of ``predict``),
``given`` (``--diameter``: the median of the set's per-image median GT diameters, one number per
set, as a user would pass it) and ``off`` (input scale). ``timing`` measures CPU seconds per
520x696 BBBC039 image (network + post-processing; reading excluded) after a warm-up.

    .venv/bin/python bench/eval_generalist.py eval runs/nuclei_gen_a --sets all --modes auto,given
    .venv/bin/python bench/eval_generalist.py timing nuclei --threads 2 --n 10
    .venv/bin/python bench/eval_generalist.py tune runs/nuclei_gen_a --out runs/nuclei_gen_a/tuned.pt
    .venv/bin/python bench/eval_generalist.py eval runs/nuclei_gen_a/tuned.pt --calibrate-size runs/nuclei_gen_a/tuned_cal.pt

``tune`` runs the network once per validation image (at the image's GT diameter, so that
post-processing is chosen apart from the size estimate) and searches the probability threshold,
the watershed seed thresholds, the seed rule and the minimum size (coordinate search) for the
best :func:`tune_score` (group F1@0.5 plus an AP@0.9 term), compares test-time augmentation at
those settings, then writes a copy of the checkpoint with those defaults. Everything printed
names the machine.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

PROJECT = Path(__file__).resolve().parents[1]
DATA = PROJECT.parent / "shared" / "data"
SPLITS = PROJECT / "configs" / "splits"
SETS = ("bbbc039", "dsb2018", "bbbc039_x0.5", "bbbc039_x2", "bbbc039_inv")


def machine() -> str:
    import torch

    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, "
            f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)")


# --------------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------------


def _median_diameter(labels):
    import numpy as np

    a = np.bincount(labels.ravel())[1:]
    a = a[a > 0]
    return float(np.median(2 * np.sqrt(a / np.pi))) if len(a) else None


def bbbc039_items(limit=None):
    from morphoscope.io.images import read_image, read_label_image

    folder = DATA / "bbbc039" / "validation"
    paths = sorted((folder / "images").glob("*.tif"))
    if limit:
        paths = [paths[int(i * len(paths) / limit)] for i in range(min(limit, len(paths)))]
    for p in paths:
        yield {"name": p.stem, "group": "bbbc039", "image": read_image(p),
               "labels": read_label_image(folder / "labels" / f"{p.stem}.png").astype(np.int32)}


def dsb_items(limit=None):
    from morphoscope.formats.dataset import load_instance_dataset
    from morphoscope.formats.splits import read_group_table, read_split_list

    ids = read_split_list(SPLITS / "dsb2018_val.txt")
    modality = read_group_table(SPLITS / "dsb2018_modality.csv", "modality")
    ids = sorted(ids, key=lambda i: (modality[i], i))
    if limit:  # evenly spaced within each modality
        groups: dict = {}
        for i in ids:
            groups.setdefault(modality[i], []).append(i)
        ids = [g[int(k * len(g) / limit)] for g in groups.values() for k in range(min(limit, len(g)))]
    ds = load_instance_dataset(DATA / "dsb2018" / "stage1_train")
    by = ds.by_name() if hasattr(ds, "by_name") else {s.name: s for s in ds.samples}
    for i in ids:
        s = by[i]
        img = s.load_image()
        lab, _ = s.load_label_image(img.shape)
        yield {"name": i, "group": modality[i], "image": img, "labels": lab.astype(np.int32)}


def variant(item, kind):
    from skimage.transform import rescale

    img, lab = item["image"], item["labels"]
    if kind == "inv":
        top = np.iinfo(img.dtype).max if np.issubdtype(img.dtype, np.integer) else float(img.max())
        out = (top - img.astype(np.int64)).astype(img.dtype) if np.issubdtype(img.dtype, np.integer) else top - img
        return {**item, "image": out}
    f = float(kind[1:])
    scaled = rescale(img.astype(np.float32), f, order=1, preserve_range=True, anti_aliasing=f < 1,
                     channel_axis=2 if img.ndim == 3 else None)
    scaled = np.clip(np.round(scaled), 0, np.iinfo(img.dtype).max).astype(img.dtype) \
        if np.issubdtype(img.dtype, np.integer) else scaled
    shape = scaled.shape[:2]
    # labels by nearest neighbour at pixel centres (what Objects.rescaled does)
    iy = np.clip(np.floor((np.arange(shape[0]) + 0.5) / f).astype(int), 0, lab.shape[0] - 1)
    ix = np.clip(np.floor((np.arange(shape[1]) + 0.5) / f).astype(int), 0, lab.shape[1] - 1)
    return {**item, "image": scaled, "labels": lab[np.ix_(iy, ix)]}


def set_items(name, limit=None):
    if name == "bbbc039":
        return list(bbbc039_items(limit))
    if name == "dsb2018":
        return list(dsb_items(limit))
    base, kind = name.split("_", 1)
    return [variant(it, kind) for it in bbbc039_items(limit)]


# --------------------------------------------------------------------------------------------
# scoring
# --------------------------------------------------------------------------------------------


def score(matchings, names, groups) -> dict:
    from morphoscope.metrics.matching import matching_stats
    from morphoscope.metrics.per_image import image_rows, per_image_summary

    pooled = matching_stats(matchings)
    rows = image_rows(matchings, names)
    summ = per_image_summary(rows)
    out = {"images": len(names), "f1@0.5": pooled["0.5"]["f1"], "ap@0.5": pooled["0.5"]["ap"],
           "ap@0.9": pooled["0.9"]["ap"], "precision@0.5": pooled["0.5"]["precision"],
           "recall@0.5": pooled["0.5"]["recall"],
           "per_image_f1@0.5": summ["per_image_mean"]["0.5"]["f1"],
           "per_image_ap@0.9": summ["per_image_mean"]["0.9"]["ap"], "dsb_score": summ["dsb_score"]}
    if len(set(groups)) > 1:
        out["groups"] = {}
        for g in sorted(set(groups)):
            idx = [i for i, x in enumerate(groups) if x == g]
            ms = [matchings[i] for i in idx]
            p = matching_stats(ms)
            s = per_image_summary([rows[i] for i in idx])
            out["groups"][g] = {"images": len(idx), "f1@0.5": p["0.5"]["f1"], "ap@0.9": p["0.9"]["ap"],
                                "per_image_f1@0.5": s["per_image_mean"]["0.5"]["f1"],
                                "dsb_score": s["dsb_score"]}
    return out


def evaluate_set(bundle, items, *, mode, diameter=None, options=None) -> tuple[dict, list]:
    from morphoscope.engine.predictor import PlaneInput, Predictor
    from morphoscope.metrics.matching import match

    kw = dict(options or {})
    if mode == "given":
        kw["diameter"] = diameter
    elif mode == "off":
        kw["diameter"] = "off"
    elif mode == "auto":
        kw["diameter"] = "auto" if bundle.extra.get("diameter") else None
    predictor = Predictor(bundle, **kw)
    matchings, names, groups, details = [], [], [], []
    cpu0 = time.process_time()
    for it, (_, res) in zip(items, predictor.run(PlaneInput(it["name"], it["image"]) for it in items)):
        if isinstance(res, BaseException):
            raise res
        lab, _ = res.objects.to_labels()
        matchings.append(match(it["labels"], lab))
        names.append(it["name"])
        groups.append(it["group"])
        details.append({"image": it["name"], "group": it["group"], "scale": res.settings.get("scale"),
                        "diameter": res.settings.get("diameter"), "gt_diameter": _median_diameter(it["labels"]),
                        "warnings": res.warnings})
    out = score(matchings, names, groups)
    out["cpu_seconds_per_image"] = (time.process_time() - cpu0) / max(1, len(items))
    return out, details


def cmd_eval(args) -> None:
    import torch

    from morphoscope.tasks import load_model

    torch.set_num_threads(args.threads)
    bundle = load_model(args.model, device="cpu")
    sets = SETS if args.sets == "all" else args.sets.split(",")
    modes = args.modes.split(",")
    options = {k: v for k, v in (("tta", args.tta), ("threshold", args.threshold)) if v is not None}
    report = {"model": str(args.model), "machine": machine(), "options": options, "results": {}}
    all_ratios: list[float] = []  # size estimate / GT median diameter, validation images
    for name in sets:
        items = set_items(name, args.max_images)
        diam = float(np.median([_median_diameter(it["labels"]) for it in items if it["labels"].any()]))
        for mode in modes:
            if mode == "given" and not bundle.extra.get("diameter"):
                continue
            res, details = evaluate_set(bundle, items, mode=mode, diameter=diam, options=options)
            res["given_diameter"] = diam if mode == "given" else None
            ratio = [d["diameter"] / d["gt_diameter"] for d in details if d["diameter"] and d["gt_diameter"]]
            if mode == "auto" and ratio:
                all_ratios += ratio if name in ("bbbc039", "dsb2018") else []
                res["estimate_over_gt_median"] = float(np.median(ratio))
                res["estimate_within_15pct"] = float(np.mean([abs(r - 1) <= 0.15 for r in ratio]))
            res["images_with_warnings"] = sum(1 for d in details if d["warnings"])
            report["results"][f"{name}/{mode}"] = res
            print(line(f"{name}/{mode}", res), flush=True)
            for g, r in res.get("groups", {}).items():
                print(line(f"  {g}", r), flush=True)
            if args.details:
                report["results"][f"{name}/{mode}"]["details"] = details
    if args.calibrate_size:
        write_size_calibration(args.model, args.calibrate_size, all_ratios, bundle.extra)
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
        print(f"wrote {args.out}")


def write_size_calibration(model, out, ratios, extra) -> None:
    """A copy of the checkpoint whose size estimates are divided by the median estimate / GT
    diameter ratio of the validation images just scored (``extra.diameter_calibration``)."""
    import io

    import torch

    from morphoscope.io.atomic import atomic_write
    from morphoscope.models.checkpoint import read_checkpoint, resolve_model_path

    if not ratios:
        sys.exit("no size estimates to calibrate with: run --modes auto")
    bias = float(np.median(ratios))
    _, path = resolve_model_path(model)
    ckpt = read_checkpoint(path)
    old = float(extra.get("diameter_calibration", 1.0))
    ckpt.setdefault("extra", {})["diameter_calibration"] = old / bias
    buf = io.BytesIO()
    torch.save(ckpt, buf)
    with atomic_write(out) as fh:
        fh.write(buf.getvalue())
    print(f"size estimate / GT median over {len(ratios)} validation images: {bias:.3f}; "
          f"diameter_calibration {old:.4f} -> {old / bias:.4f}; wrote {out}")


def line(name, r) -> str:
    dsb = r.get("dsb_score")
    ap9 = r.get("ap@0.9")
    return (f"{name:<22} n={r['images']:>3}  F1@0.5 {r['f1@0.5']:.3f}  AP@0.9 {ap9:.3f}  "
            f"per-image F1 {r['per_image_f1@0.5']:.3f}  DSB {dsb:.3f}"
            + (f"  CPU s/img {r['cpu_seconds_per_image']:.2f}" if "cpu_seconds_per_image" in r else "")
            + (f"  est/GT {r['estimate_over_gt_median']:.3f}" if "estimate_over_gt_median" in r else ""))


# --------------------------------------------------------------------------------------------
# post-processing search
# --------------------------------------------------------------------------------------------


def tune_score(res: dict) -> float:
    """What the search maximises: the mean over the five validation groups (BBBC039, and the
    DSB2018 fluorescence, histology and brightfield images, all DSB images together) of F1@0.5,
    plus half the BBBC039 AP@0.9 (so that among equally good detectors the tighter masks win)."""
    parts = [res["bbbc039"]["f1@0.5"]] + [g["f1@0.5"] for g in res["dsb2018"]["groups"].values()] \
        + [res["dsb2018"]["f1@0.5"]]
    return float(np.mean(parts)) + 0.5 * res["bbbc039"]["ap@0.9"]


def _network_cache(bundle, tta: int, max_images):
    """Each validation image through the network once, at its annotated median diameter: the
    maps on the rescaled grid, and the image's labels on its own grid."""
    from skimage.transform import rescale

    from morphoscope.engine.predictor import Predictor

    D = bundle.extra["diameter"]
    pred = Predictor(bundle, diameter="off", keep_maps=True, tta=tta, block_size=4096)
    cache = []
    for name in ("bbbc039", "dsb2018"):
        for it in set_items(name, max_images):
            s = D / (_median_diameter(it["labels"]) or D)
            img = it["image"]
            if abs(s - 1) > 1e-6:
                img = rescale(img.astype(np.float32), s, order=1, preserve_range=True, anti_aliasing=s < 1,
                              channel_axis=2 if img.ndim == 3 else None)
            res = pred.predict(img, name=it["name"])
            probs, aux = pred.inference.split_maps(res.maps)
            cache.append((name, it["group"], it["labels"], probs.astype(np.float16), aux.astype(np.float16)))
    return cache


def _score_settings(bundle, cache, c: dict) -> dict:
    from morphoscope.engine.objects import Objects
    from morphoscope.metrics.matching import match
    from morphoscope.tasks.semantic.postprocess import instances_from_probs

    ms = {"bbbc039": [], "dsb2018": []}
    groups = {"bbbc039": [], "dsb2018": []}
    for name, group, labels, probs, aux in cache:
        lab, _, _ = instances_from_probs(probs.astype(np.float32), aux.astype(np.float32),
                                         kind=bundle.cfg.model.output, method="watershed", **c)
        objs = Objects.from_labels(lab).rescaled(labels.shape)
        ms[name].append(match(labels, objs.to_labels()[0]))
        groups[name].append(group)
    res = {n: score(ms[n], [str(i) for i in range(len(ms[n]))], groups[n]) for n in ms}
    return {**c, "score": tune_score(res), "bbbc039_f1": res["bbbc039"]["f1@0.5"],
            "bbbc039_ap0.9": res["bbbc039"]["ap@0.9"], "dsb_f1": res["dsb2018"]["f1@0.5"],
            "dsb_score": res["dsb2018"]["dsb_score"],
            **{f"f1/{g}": r["f1@0.5"] for g, r in res["dsb2018"]["groups"].items()}}


def cmd_tune(args) -> None:
    """Coordinate search (each setting in turn over its values, the others fixed; two rounds)
    from the checkpoint's settings, on the maps of TTA 1; then the best settings with each
    ``--tta`` value, and the TTA whose score is best (ties: the cheaper)."""
    import torch

    from morphoscope.tasks import load_model

    torch.set_num_threads(args.threads)
    bundle = load_model(args.model, device="cpu")
    post = bundle.cfg.postprocess
    current = {"threshold": post.threshold, "seed_threshold": post.seed_threshold,
               "distance_threshold": post.distance_threshold, "seeds": post.seeds, "min_size": post.min_size}
    grid = {"threshold": [0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65], "seeds": ["both", "boundary", "distance"],
            "seed_threshold": [0.15, 0.2, 0.3, 0.4, 0.5, 0.6], "distance_threshold": [0.1, 0.2, 0.3, 0.4, 0.5],
            "min_size": [4, 8, 12, 20, 30]}
    if args.fast:
        grid = {"threshold": [0.5, 0.55, 0.6, 0.65, 0.7], "seeds": ["both", "boundary", "distance"],
                "seed_threshold": [0.2, 0.3, 0.5, 0.6], "distance_threshold": [0.1, 0.2, 0.4],
                "min_size": [5, 20, 30]}
    ttas = [int(v) for v in args.tta.split(",")]
    t0 = time.time()
    caches = {1: _network_cache(bundle, 1, args.max_images)}
    print(f"network on {len(caches[1])} images: {time.time() - t0:.0f} s", flush=True)
    done: dict = {}

    def run(c, tta=1):
        key = (tta, tuple(sorted(c.items())))
        if key not in done:
            done[key] = {**_score_settings(bundle, caches[tta], c), "tta": tta}
            print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in done[key].items()}),
                  flush=True)
        return done[key]

    best = run(current)
    for _ in range(args.rounds):
        for key, values in grid.items():
            for v in values:
                r = run({**current, key: v})
                if r["score"] > best["score"] + 1e-6:
                    best = r
            current = {k: best[k] for k in current}
    final = best
    for tta in ttas:
        if tta == 1:
            continue
        t0 = time.time()
        caches[tta] = _network_cache(bundle, tta, args.max_images)
        print(f"network with TTA {tta}: {time.time() - t0:.0f} s", flush=True)
        r = run(current, tta)
        if r["score"] > final["score"] + 1e-6:
            final = r
    print("best", json.dumps(final))
    if args.out:
        write_tuned(args.model, args.out, {k: final[k] for k in current}, tta=final["tta"], search=list(done.values()))
        Path(str(args.out) + ".search.json").write_text(json.dumps({"machine": machine(), "best": final,
                                                                    "results": list(done.values())}, indent=1))
        print(f"wrote {args.out}")


def write_tuned(model, out, values: dict, *, tta: int, search=None) -> None:
    """A copy of the checkpoint with post-processing defaults ``values`` (and TTA)."""
    import io

    import torch

    from morphoscope.io.atomic import atomic_write
    from morphoscope.models.checkpoint import read_checkpoint, resolve_model_path
    from morphoscope.tasks import parse_config

    _, path = resolve_model_path(model)
    ckpt = read_checkpoint(path)
    ckpt["config"]["postprocess"].update(values)
    parse_config(ckpt["config"])
    extra = ckpt.setdefault("extra", {})
    extra["postprocess"] = dict(ckpt["config"]["postprocess"])
    extra["threshold"] = values["threshold"]
    extra["tta"] = int(tta)
    if search is not None:
        extra["postprocess_search"] = {"chosen_on": "BBBC039 validation + DSB2018 val split", "settings": len(search)}
    for k in ("optimizer", "scheduler", "scaler", "history"):
        ckpt.pop(k, None)
    buf = io.BytesIO()
    torch.save(ckpt, buf)
    with atomic_write(out) as fh:
        fh.write(buf.getvalue())


# --------------------------------------------------------------------------------------------
# timing
# --------------------------------------------------------------------------------------------


def cmd_timing(args) -> None:
    import torch

    from morphoscope.engine.predictor import PlaneInput, Predictor
    from morphoscope.tasks import load_model

    torch.set_num_threads(args.threads)
    bundle = load_model(args.model, device="cpu")
    items = list(bbbc039_items(args.n))
    kw = {"tta": args.tta} if args.tta else {}
    predictor = Predictor(bundle, **kw)
    for it in items[:2]:  # warm-up
        predictor.predict(it["image"])
    rows = []
    for it in items:
        cpu, wall = time.process_time(), time.perf_counter()
        res = predictor.predict(it["image"])
        rows.append((time.process_time() - cpu, time.perf_counter() - wall, res.settings.get("scale")))
    cpu = [r[0] for r in rows]
    wall = [r[1] for r in rows]
    out = {"model": str(args.model), "machine": machine(), "images": len(rows), "size": "520x696",
           "cpu_seconds_per_image": float(np.mean(cpu)), "wall_seconds_per_image": float(np.mean(wall)),
           "threads": args.threads, "load_avg": os.getloadavg()}
    print(json.dumps(out, indent=1))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("eval")
    e.add_argument("model")
    e.add_argument("--sets", default="bbbc039,dsb2018")
    e.add_argument("--modes", default="auto")
    e.add_argument("--max-images", type=int, default=None, help="per set (per modality on DSB2018)")
    e.add_argument("--threads", type=int, default=1)
    e.add_argument("--tta", type=int, default=None)
    e.add_argument("--threshold", type=float, default=None)
    e.add_argument("--details", action="store_true")
    e.add_argument("--out")
    e.add_argument("--calibrate-size", metavar="CKPT", help="also write a copy of the model whose size estimate is "
                   "corrected by the median estimate/GT ratio on the bbbc039 and dsb2018 sets scored (auto mode)")
    t = sub.add_parser("tune")
    t.add_argument("model")
    t.add_argument("--out")
    t.add_argument("--max-images", type=int, default=None)
    t.add_argument("--threads", type=int, default=1)
    t.add_argument("--tta", default="1,4", help="TTA values to compare at the chosen settings")
    t.add_argument("--rounds", type=int, default=2)
    t.add_argument("--fast", action="store_true", help="a smaller grid")
    m = sub.add_parser("timing")
    m.add_argument("model")
    m.add_argument("--n", type=int, default=10)
    m.add_argument("--threads", type=int, default=2)
    m.add_argument("--tta", type=int, default=None)
    args = ap.parse_args(argv)
    {"eval": cmd_eval, "tune": cmd_tune, "timing": cmd_timing}[args.cmd](args)
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6:.2f} GB")
    return 0


import numpy as np  # noqa: E402  (after the argparse-only imports above, for a fast --help)

if __name__ == "__main__":
    sys.exit(main())
