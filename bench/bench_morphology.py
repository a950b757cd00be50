"""Benchmark: the seven core shape measurements of morphoscope against a plain
``skimage.measure.regionprops_table`` loop over the same label images, in the same run.

Measurements: area, perimeter, circularity, eccentricity, aspect ratio, solidity, anisotropy
(the regionprops loop computes area, perimeter, eccentricity, solidity and the two axis lengths;
circularity, aspect ratio and anisotropy are then derived from its columns, vectorised, with the
same formulas as morphoscope). Data sets:

* the BBBC039 training labels (100 images, 12,001 nuclei; ../shared/data beside the project),
* a synthetic label image with >= 100,000 objects (morphoscope.morphology.synthetic: ellipses,
  holes, non-convex unions, 1- and 2-pixel objects, objects touching each other and the border).

Label images are read before timing; both paths measure the same in-memory arrays, one image at
a time, alternating between the paths so that both see the same machine load. The numbers of
both paths are compared (largest relative difference per measurement). Run from the project root:

    .venv/bin/python bench/bench_morphology.py            # everything (a few minutes)
    .venv/bin/python bench/bench_morphology.py --quick    # small synthetic image, 20 BBBC images
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_BBBC = ROOT.parent / "shared" / "data" / "bbbc039" / "training" / "labels"
CORE = ("area", "perimeter", "circularity", "eccentricity", "aspect_ratio", "solidity",
        "anisotropy")
RP_PROPS = ("label", "area", "perimeter", "eccentricity", "solidity", "axis_major_length",
            "axis_minor_length")


def reference(labels: np.ndarray) -> dict[str, np.ndarray]:
    """The plain loop: regionprops_table, then the three derived columns."""
    from skimage.measure import regionprops_table

    from morphoscope.morphology.measure import anisotropy, aspect_ratio, circularity

    t = regionprops_table(labels, properties=RP_PROPS)
    return {
        "label": t["label"], "area": t["area"], "perimeter": t["perimeter"],
        "circularity": circularity(t["area"], t["perimeter"]),
        "eccentricity": t["eccentricity"],
        "aspect_ratio": aspect_ratio(t["axis_major_length"], t["axis_minor_length"]),
        "solidity": t["solidity"],
        "anisotropy": anisotropy(t["axis_major_length"], t["axis_minor_length"]),
    }


def fast(labels: np.ndarray) -> dict[str, np.ndarray]:
    from morphoscope.morphology.measure import shape_measurements

    return shape_measurements(labels, properties=CORE)


def _fast_worker(labels):
    r = fast(labels)
    return {k: r[k] for k in ("label", *CORE)}


def timed(fn, arg):
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn(arg)
    return out, time.perf_counter() - w0, time.process_time() - c0


def compare(a: dict, b: dict, diffs: dict) -> None:
    """Largest relative difference per measurement, and bit-identical counts.

    Straight lines of pixels are counted apart: their minor axis is exactly 0 in morphoscope
    (aspect ratio inf) but 1e-8..1e-7 px in regionprops (rounding in its eigenvalue solver,
    aspect ratio ~1e8); for them aspect ratio, eccentricity and anisotropy are compared through
    minor/major with an absolute tolerance of 1e-7.
    """
    assert np.array_equal(np.asarray(a["label"]), np.asarray(b["label"])), "labels differ"
    line = np.isinf(np.asarray(a["aspect_ratio"], float))
    diffs.setdefault("_lines", {"n": 0, "agree": 0})
    diffs["_lines"]["n"] += int(line.sum())
    for k in CORE:
        x, y = np.asarray(a[k], float), np.asarray(b[k], float)
        same_nan = np.isnan(x) == np.isnan(y)
        assert same_nan.all(), f"{k}: NaN in one path only"
        ok = ~np.isnan(x) & ~line
        eq = x[ok] == y[ok]
        with np.errstate(invalid="ignore", divide="ignore"):
            rel = np.where(eq, 0.0, np.abs(x[ok] - y[ok]) / np.abs(y[ok]))
        d = diffs.setdefault(k, {"max_rel": 0.0, "exact": 0, "n": 0})
        d["max_rel"] = max(d["max_rel"], float(rel.max(initial=0.0)))
        d["exact"] += int(eq.sum()) + int((np.isnan(x) & ~line).sum())
        d["n"] += int((~line).sum())
    if line.any():
        with np.errstate(divide="ignore"):
            inv_x = 1 / np.asarray(a["aspect_ratio"], float)[line]
            inv_y = 1 / np.asarray(b["aspect_ratio"], float)[line]
        agree = np.abs(inv_x - inv_y) <= 1e-7
        for k in ("eccentricity", "anisotropy", "area", "perimeter", "solidity", "circularity"):
            x, y = np.asarray(a[k], float)[line], np.asarray(b[k], float)[line]
            agree &= np.isclose(x, y, rtol=1e-9, atol=1e-7, equal_nan=True)
        diffs["_lines"]["agree"] += int(agree.sum())


def run_set(name: str, images: list[np.ndarray], *, jobs: int, repeats: int) -> dict:
    n_obj = 0
    t_ref = c_ref = 0.0
    t_fast = c_fast = 0.0
    diffs: dict = {}
    for i, labels in enumerate(images):
        if len(images) > 1 and i % 10 == 0:
            print(f"  image {i + 1}/{len(images)}", flush=True)
        best = None
        for _ in range(repeats):  # the fast path is short: take the best of a few runs
            f, w, c = timed(fast, labels)
            best = (w, c) if best is None or w < best[0] else best
        r, w_ref, c_ = timed(reference, labels)
        t_fast += best[0]
        c_fast += best[1]
        t_ref += w_ref
        c_ref += c_
        compare(f, r, diffs)
        n_obj += len(f["label"])
    res = {"name": name, "images": len(images), "objects": n_obj,
           "regionprops": {"wall_s": t_ref, "cpu_s": c_ref},
           "fast_1proc": {"wall_s": t_fast, "cpu_s": c_fast}, "diffs": diffs}
    if jobs > 1 and len(images) > 1:
        import multiprocessing as mp

        ctx = mp.get_context("fork")
        with ctx.Pool(jobs) as pool:
            pool.map(_fast_worker, images[:jobs])  # warm the workers
            w0 = time.perf_counter()
            pool.map(_fast_worker, images, chunksize=max(1, len(images) // (4 * jobs)))
            res[f"fast_{jobs}proc"] = {"wall_s": time.perf_counter() - w0, "cpu_s": None}
    return res


def machine() -> dict:
    import scipy
    import skimage

    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": cpu, "cores_available": cores, "python": platform.python_version(),
            "numpy": np.__version__, "scipy": scipy.__version__,
            "scikit-image": skimage.__version__, "platform": platform.platform(),
            "load_average_start": os.getloadavg()}


def print_results(results: list[dict], info: dict) -> None:
    print(f"\nmachine: {info['cpu']}, {info['cores_available']} cores available, "
          f"Python {info['python']}, numpy {info['numpy']}, scikit-image {info['scikit-image']}")
    print(f"load average at start {tuple(round(x, 2) for x in info['load_average_start'])}, "
          f"at end {tuple(round(x, 2) for x in info['load_average_end'])} (other processes "
          "share these cores)")
    print("\nseven core measurements: " + ", ".join(CORE))
    print("obj/s wall: objects per second of elapsed time; obj/CPU-s: per second of this "
          "process's CPU time (the fair comparison when other processes load the machine)")
    head = f"{'data set':<34}{'objects':>9}  {'path':<30}{'wall s':>9}{'CPU s':>9}" \
           f"{'obj/s wall':>12}{'speed-up':>9}{'obj/CPU-s':>11}{'speed-up':>9}"
    print(head)
    print("-" * len(head))
    for r in results:
        base = r["objects"] / r["regionprops"]["wall_s"]
        base_cpu = r["objects"] / r["regionprops"]["cpu_s"]
        rows = [("regionprops_table loop", r["regionprops"])]
        rows.append(("morphoscope, 1 process", r["fast_1proc"]))
        for k in r:
            if k.startswith("fast_") and k != "fast_1proc":
                rows.append((f"morphoscope, {k[5:-4]} processes", r[k]))
        for i, (label, t) in enumerate(rows):
            rate = r["objects"] / t["wall_s"]
            cpu = cpu_rate = cpu_ratio = ""
            if t["cpu_s"]:
                cpu = f"{t['cpu_s']:.2f}"
                cpu_rate = f"{r['objects'] / t['cpu_s']:,.0f}"
                cpu_ratio = f"{r['objects'] / t['cpu_s'] / base_cpu:.1f}x"
            name = f"{r['name']}" if i == 0 else ""
            objs = f"{r['objects']:,}" if i == 0 else ""
            print(f"{name:<34}{objs:>9}  {label:<30}{t['wall_s']:>9.2f}{cpu:>9}"
                  f"{rate:>12,.0f}{rate / base:>8.1f}x{cpu_rate:>11}{cpu_ratio:>9}")
        per = {k: d for k, d in r["diffs"].items() if not k.startswith("_")}
        worst = max(d["max_rel"] for d in per.values())
        exact = sum(d["exact"] for d in per.values())
        total = sum(d["n"] for d in per.values())
        lines = r["diffs"]["_lines"]
        print(f"{'':<34}{'':>9}  numbers: largest relative difference {worst:.1e}; "
              f"{exact:,} of {total:,} values bit-identical")
        for k, d in per.items():
            print(f"{'':<45}{k:<14} max rel diff {d['max_rel']:.1e}, identical "
                  f"{d['exact']:,}/{d['n']:,}")
        if lines["n"]:
            print(f"{'':<45}straight lines of pixels: {lines['n']} objects, minor axis 0 here "
                  f"(regionprops: ~1e-8 px); agree within 1e-7 through minor/major: "
                  f"{lines['agree']}/{lines['n']}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bbbc", type=Path, default=DEFAULT_BBBC, help="BBBC039 labels folder")
    ap.add_argument("--size", type=int, default=5120,
                    help="side of the synthetic image (5120 with --cell 16: 102,113 objects)")
    ap.add_argument("--cell", type=int, default=16, help="tile size per synthetic object")
    ap.add_argument("--jobs", type=int, default=2, help="processes for the parallel run")
    ap.add_argument("--repeats", type=int, default=3, help="fast-path repeats (best taken)")
    ap.add_argument("--quick", action="store_true", help="20 BBBC images, 1024² synthetic")
    ap.add_argument("--large", type=int, default=0, metavar="SIZE",
                    help="also time the fast path alone on a SIZE x SIZE synthetic image "
                         "(16000: 1,000,000 objects, ~5 GB of memory while drawing it)")
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--skip-bbbc", action="store_true")
    ap.add_argument("--skip-synthetic", action="store_true")
    args = ap.parse_args(argv)

    sys.path.insert(0, str(ROOT / "src"))
    from morphoscope.io.images import read_label_image
    from morphoscope.morphology.synthetic import random_shapes_labels

    info = machine()
    results = []
    if not args.skip_bbbc:
        if not args.bbbc.is_dir():
            print(f"BBBC039 labels not found at {args.bbbc}; skipping (--bbbc DIR)")
        else:
            paths = sorted(args.bbbc.glob("*.png"))[: 20 if args.quick else None]
            images = [read_label_image(p) for p in paths]
            print(f"BBBC039: {len(images)} label images ...", flush=True)
            results.append(run_set(f"BBBC039 training ({len(images)} images)", images,
                                   jobs=args.jobs, repeats=args.repeats))
    if not args.skip_synthetic:
        size = 1024 if args.quick else args.size
        labels = random_shapes_labels((size, size), cell=args.cell, seed=0)
        print(f"synthetic: {size}x{size}, {int(labels.max()):,} objects ...", flush=True)
        results.append(run_set(f"synthetic {size}x{size} (1 image)", [labels], jobs=1,
                               repeats=args.repeats))
    large = None
    if args.large:
        labels = random_shapes_labels((args.large, args.large), cell=args.cell, seed=1)
        n = int(labels.max())
        print(f"large synthetic: {args.large}x{args.large}, {n:,} objects, fast path only ...",
              flush=True)
        _, w, c = timed(fast, labels)
        large = {"name": f"synthetic {args.large}x{args.large}", "objects": n, "wall_s": w,
                 "cpu_s": c}
        del labels
    info["load_average_end"] = os.getloadavg()
    print_results(results, info)
    if large:
        print(f"\n{large['name']}: {large['objects']:,} objects, morphoscope 1 process: "
              f"{large['wall_s']:.1f} s wall, {large['cpu_s']:.1f} s CPU "
              f"({large['objects'] / large['wall_s']:,.0f} objects/s wall, "
              f"{large['objects'] / large['cpu_s']:,.0f} per CPU-s)")
        results.append(large)
    if args.json:
        args.json.write_text(json.dumps({"machine": info, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
