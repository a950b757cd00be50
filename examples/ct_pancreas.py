"""Pancreas on CT slices: ImageNet-free "pretrained" versus from-scratch FPN, leave-one-patient-out,
judged by the false-negative rate (docs/ct.md).

    .venv/bin/python examples/ct_pancreas.py prepare            # folds, configs, pretrained backbone
    .venv/bin/python examples/ct_pancreas.py train [--fold N] [--arm pretrained|scratch]
    .venv/bin/python examples/ct_pancreas.py evaluate           # compare per fold + pooled bootstrap

Data: ../shared/data/pancreas-ct-nih5 (5 axial slices of 5 NIH Pancreas-CT patients, 8-bit JPEG,
expert pancreas masks; CC BY 3.0). Everything is written under runs/ct_pancreas/ (``--root``).

* **Intensity window.** The JPEGs are already windowed: their 8-bit value is the CT number clipped
  to [0, 255] HU (fat -> 0, muscle ~ 59, liver ~ 126, contrast-filled aorta ~ 225, bone -> 255;
  :func:`tissue_check`). The models normalise with ``normalize: {low: 0, high: 100}`` (the
  image's min..max, i.e. 0..255 for every slice that holds air and bone), so the input is that
  fixed window. DICOM users: convert to HU (``pixel * RescaleSlope + RescaleIntercept``) and apply
  :func:`window_hu` with ``low=0, high=255`` before predicting with these models.
* **Folds.** Fold ``i`` trains on the other 4 patients' slices and tests on patient ``i``'s slice.
  There is no validation slice (the brief: train on 4, test on 1), so nothing is selected: each
  run's last weights are used (``model_best.pt`` is the last epoch when there is no validation).
* **Pretrained** means: the ResNet-18 encoder starts from the backbone of morphoscope's shipped
  nuclei Mask R-CNN (``nuclei_maskrcnn_r18``, model name ``nuclei-maskrcnn``; trained from
  scratch on BBBC039 fluorescence nuclei in this project;
  no ImageNet or COCO weights exist on this machine and nothing is downloaded). Its first
  convolution's three RGB filters are summed into the one grey input channel.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

PROJECT = Path(__file__).resolve().parents[1]
DATA = PROJECT.parent / "shared" / "data" / "pancreas-ct-nih5"
ROOT = PROJECT / "runs" / "ct_pancreas"
CONFIGS = {"scratch": PROJECT / "configs" / "ct_pancreas_fpn_r18_scratch.yaml",
           "pretrained": PROJECT / "configs" / "ct_pancreas_fpn_r18_pretrained.yaml"}
ARMS = ("scratch", "pretrained")  # compare order: differences are pretrained - scratch
#: the shipped Mask R-CNN (model name 'nuclei-maskrcnn') whose ResNet-18 backbone is "pretrained"
SHIPPED_MASKRCNN = "nuclei_maskrcnn_r18.safetensors"


def window_hu(hu: np.ndarray, low: float = 0.0, high: float = 255.0) -> np.ndarray:
    """CT numbers (HU) -> uint8 with the window these data carry: ``low`` -> 0, ``high`` -> 255,
    clipped outside. The default [0, 255] HU reproduces the pancreas-ct-nih5 JPEGs."""
    x = (np.asarray(hu, np.float64) - low) / (high - low) * 255.0
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


def slices(data: Path = DATA) -> list[str]:
    return sorted(p.stem for p in (data / "masks").glob("*.png"))


def read_slice(name: str, data: Path = DATA) -> tuple[np.ndarray, np.ndarray]:
    """The grey 8-bit slice (first of its three equal JPEG channels) and its 0/1 pancreas mask."""
    from morphoscope.io.images import read_image

    img = read_image(data / "orig_jpeg" / "images" / f"{name}.jpg")
    grey = img[..., 0] if img.ndim == 3 else img
    mask = read_image(data / "masks" / f"{name}.png")
    return np.ascontiguousarray(grey), (mask > 0)


def tissue_check(data: Path = DATA) -> dict:
    """The evidence for the window: 8-bit values of air, fat and the pancreas per slice, and the
    share of saturated (255) pixels (bone, contrast)."""
    out = {}
    for name in slices(data):
        grey, mask = read_slice(name, data)
        out[name] = {"zero_share": float((grey == 0).mean()), "saturated_share": float((grey == 255).mean()),
                     "pancreas_median": float(np.median(grey[mask])),
                     "pancreas_p5_p95": [float(v) for v in np.percentile(grey[mask], [5, 95])]}
    return out


#: 9 x 9 px regions of PANCREAS_0046-1078 (row, column), picked by eye on its overlay, whose mean
#: 8-bit values name the window (docs/ct.md)
REGIONS = {"subcutaneous fat": (360, 120), "air outside the body": (450, 250), "back muscle": (115, 180),
           "liver": (280, 140), "aorta (contrast)": (210, 242), "vertebral body": (165, 235)}


def region_values(data: Path = DATA, name: str = "PANCREAS_0046-1078") -> dict:
    grey, _ = read_slice(name, data)
    return {k: round(float(grey[r - 4:r + 5, c - 4:c + 5].mean()), 1) for k, (r, c) in REGIONS.items()}


def backbone_file(root: Path) -> Path:
    """The ResNet-18 backbone of the shipped nuclei Mask R-CNN (``nuclei_maskrcnn_r18``, model
    name ``nuclei-maskrcnn``) as a plain torchvision ResNet state dict (``conv1``, ``bn1``,
    ``layer1..4``), the file ``model.weights`` points to."""
    from safetensors.torch import load_file, save_file

    from morphoscope.models.checkpoint import WEIGHTS_DIR

    out = root / "weights" / "nuclei_r18_backbone.safetensors"
    if not out.is_file():
        source = WEIGHTS_DIR / SHIPPED_MASKRCNN
        state = load_file(str(source))
        body = {k.removeprefix("backbone.body."): v.float() if v.is_floating_point() else v
                for k, v in state.items() if k.startswith("backbone.body.")}
        if not body:
            raise SystemExit(f"{source} holds no Mask R-CNN backbone (backbone.body.*)")
        out.parent.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in body.items()}, str(out))
    return out


def prepare(root: Path = ROOT, data: Path = DATA) -> None:
    """Grey PNG slices + connected-component labels, one folder pair per fold, and each fold's two
    configs (the templates in configs/ with this fold's data)."""
    import yaml
    from scipy import ndimage as ndi

    from morphoscope.io.images import write_png

    names = slices(data)
    everything = root / "data" / "all"
    for name in names:
        grey, mask = read_slice(name, data)
        labels, _ = ndi.label(mask)
        write_png(everything / "images" / f"{name}.png", grey, overwrite=True)
        write_png(everything / "labels" / f"{name}.png", labels.astype(np.uint16), overwrite=True)
    weights = backbone_file(root)
    for i, test in enumerate(names):
        fold = root / f"fold{i}"
        for part, members in (("train", [n for n in names if n != test]), ("test", [test])):
            for sub in ("images", "labels"):
                d = fold / part / sub
                shutil.rmtree(d, ignore_errors=True)
                d.mkdir(parents=True)
                for n in members:
                    shutil.copyfile(everything / sub / f"{n}.png", d / f"{n}.png")
        for arm, template in CONFIGS.items():
            cfg = yaml.safe_load(template.read_text())
            cfg["name"] = f"ct_pancreas_fold{i}_{arm}"
            cfg["data"]["train"] = str(fold / "train")
            cfg["data"].pop("val", None)
            if cfg["model"].get("weights"):
                cfg["model"]["weights"] = str(weights)
            (fold / f"{arm}.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    (root / "window.json").write_text(json.dumps(tissue_check(data), indent=1) + "\n")
    print(f"{len(names)} folds under {root}; pretrained backbone: {weights}")


def train(root: Path = ROOT, folds=None, arms=ARMS, *, reverse: bool = False) -> None:
    """Train each fold's arms one after the other (resumes a killed run; skips finished ones and
    runs another worker holds: two workers, one with ``reverse``, share the folds)."""
    import os

    n = len(list(root.glob("fold*/scratch.yaml")))
    todo = [(i, arm) for i in (folds if folds is not None else range(n)) for arm in arms]
    for i, arm in (reversed(todo) if reverse else todo):
        run = root / f"fold{i}" / arm
        if (run / "model_best.pt").is_file():
            print(f"fold {i} {arm}: done")
            continue
        lock = root / f"fold{i}" / f".{arm}.lock"
        try:
            os.close(os.open(lock, os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            print(f"fold {i} {arm}: another worker has it ({lock})")
            continue
        try:
            cmd = [sys.executable, "-m", "morphoscope", "train", str(root / f"fold{i}" / f"{arm}.yaml"),
                   "--out", str(run)]
            if (run / "checkpoint_last.pt").is_file():
                cmd.append("--resume")
            start, cpu = time.time(), _children_cpu()
            subprocess.run(cmd, check=True)
            print(f"fold {i} {arm}: {time.time() - start:.0f} s wall, {_children_cpu() - cpu:.0f} s CPU", flush=True)
        finally:
            lock.unlink(missing_ok=True)


def _children_cpu() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def pixel_fnr(pred_dir: Path, gt_dir: Path) -> dict:
    """Per slice: pancreas pixels missed (FN), found (TP), and FNR = FN / (TP + FN)."""
    from morphoscope.io.images import read_label_image

    out = {}
    for lp in sorted((gt_dir / "labels").glob("*.png")):
        gt = read_label_image(lp) > 0
        pred = read_label_image(pred_dir / f"{lp.stem}_labels.tif") > 0
        tp, fn = int((gt & pred).sum()), int((gt & ~pred).sum())
        out[lp.stem] = {"tp": tp, "fn": fn, "fp": int((~gt & pred).sum()), "fnr": fn / max(tp + fn, 1)}
    return out


def pixel_fnr_statistic():
    """The pixel false-negative rate of the one foreground class, FN / (TP + FN) of the pixel
    confusion matrix ``C`` summed over the drawn slices (``C[1, 0]`` missed, ``C[1, 1]`` found), on
    the per-image rows of :func:`morphoscope.compare.segmentation.per_image_counts`."""
    from morphoscope.compare.bootstrap import Statistic, ratio
    from morphoscope.compare.segmentation import KEYS

    c = 3 * len(KEYS)  # the confusion matrix (background, pancreas) x (background, pancreas) follows
    return Statistic(lambda s: ratio(s[:, c + 2], s[:, c + 2] + s[:, c + 3]), higher_is_better=False)


def evaluate(root: Path = ROOT, n_boot: int = 2000) -> dict:
    """``morphoscope compare`` of the two arms on each fold's test slice, then the paired
    bootstrap over the 5 test slices pooled across folds (each slice scored by its own fold's
    models), with compare's statistics plus the pixel false-negative rate."""
    from morphoscope.compare import compare
    from morphoscope.compare.bootstrap import paired_bootstrap
    from morphoscope.compare.segmentation import per_image_counts, statistics
    from morphoscope.formats.dataset import load_instance_dataset

    folds = sorted(root.glob("fold*/scratch.yaml"))
    rows = {arm: [] for arm in ARMS}
    per_slice = []
    for cfg in folds:
        fold = cfg.parent
        out = fold / "compare"
        t0 = time.process_time()
        compare([fold / arm for arm in ARMS], fold / "test", out=out, names=list(ARMS), overwrite=True,
                plots=False, n_boot=200)
        dataset = load_instance_dataset(fold / "test")
        for arm in ARMS:
            pred = out / "predictions" / arm
            rows[arm].append(per_image_counts(pred, dataset))
            for name, px in pixel_fnr(pred, fold / "test").items():
                tm = json.loads((out / "comparison.json").read_text())["models"][arm]["per_image"]
                tp, fp, fn = tm["tp_fp_fn@0.5"][0]
                per_slice.append({"fold": fold.name, "slice": name, "arm": arm, "pixel_tp": px["tp"],
                                  "pixel_fn": px["fn"], "pixel_fp": px["fp"], "pixel_fnr": px["fnr"],
                                  "objects_gt": tp + fn, "objects_tp@0.5": tp, "objects_fp@0.5": fp,
                                  "object_fnr@0.5": fn / max(tp + fn, 1)})
        print(f"{fold.name}: compared ({time.process_time() - t0:.0f} s CPU in this process)")
    stats = statistics(1)
    stats["pixel_fnr"] = pixel_fnr_statistic()
    boot = paired_bootstrap({arm: np.concatenate(rows[arm]) for arm in ARMS}, stats, n_boot=n_boot)
    result = {"slices": len(folds), "bootstrap": boot, "per_slice": per_slice}
    (root / "report.json").write_text(json.dumps(result, indent=1) + "\n")
    (root / "report.md").write_text(report_markdown(result))
    print(report_markdown(result))
    return result


def report_markdown(result: dict) -> str:
    boot = result["bootstrap"]

    def cell(v):
        return f"{v['value']:.3f} [{v['low']:.3f}, {v['high']:.3f}]" if v["low"] is not None else f"{v['value']:.3f}"

    keys = [("pixel_fnr", "pixel false-negative rate"), ("fnr@0.5", "object false-negative rate @ IoU 0.5"),
            ("recall@0.5", "object recall @ 0.5"), ("precision@0.5", "object precision @ 0.5"),
            ("f1@0.5", "object F1 @ 0.5"), ("pixel_dice", "pixel Dice"), ("pixel_iou", "pixel IoU")]
    lines = [f"# Pancreas, leave-one-patient-out over {result['slices']} CT slices", "",
             f"Pooled over the {result['slices']} test slices (each scored by the fold that did not train on it); "
             f"brackets: {round(100 * boot['ci'])}% paired bootstrap interval over the {boot['images']} slices "
             f"({boot['n_boot']} replicates). **5 slices of 5 patients: the intervals are rough and a "
             "difference here is no evidence for other data.**", "",
             "| metric | scratch | pretrained (nuclei backbone) |", "|---|---|---|"]
    for key, label in keys:
        lines.append(f"| {label} | {cell(boot['models']['scratch'][key])} | {cell(boot['models']['pretrained'][key])} |")
    lines += ["", "| metric | pretrained − scratch | interval | beyond slice-to-slice variation |", "|---|---|---|---|"]
    for d in boot["differences"]:
        if d["metric"] in dict(keys):
            lines.append(f"| {dict(keys)[d['metric']]} | {d['diff']:+.3f} | [{d['low']:.3f}, {d['high']:.3f}] | "
                         f"{'yes' if d['significant'] else 'no'} |")
    lines += ["", "Per slice:", "", "| slice | arm | pancreas px | missed px | pixel FNR | objects | found @0.5 | "
              "object FNR | false objects |", "|---|---|---|---|---|---|---|---|---|"]
    for r in result["per_slice"]:
        lines.append(f"| {r['slice']} | {r['arm']} | {r['pixel_tp'] + r['pixel_fn']} | {r['pixel_fn']} | "
                     f"{r['pixel_fnr']:.3f} | {r['objects_gt']} | {r['objects_tp@0.5']} | {r['object_fnr@0.5']:.3f} | "
                     f"{r['objects_fp@0.5']} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("step", choices=("prepare", "train", "evaluate", "window"))
    ap.add_argument("--root", type=Path, default=ROOT)
    ap.add_argument("--fold", type=int, action="append")
    ap.add_argument("--arm", choices=ARMS, action="append")
    ap.add_argument("--reverse", action="store_true", help="train: take the runs last to first (a second worker)")
    a = ap.parse_args(argv)
    if a.step == "prepare":
        prepare(a.root)
    elif a.step == "train":
        train(a.root, a.fold, a.arm or ARMS, reverse=a.reverse)
    elif a.step == "evaluate":
        evaluate(a.root)
    else:
        print(json.dumps({"slices": tissue_check(), "regions of PANCREAS_0046-1078": region_values()}, indent=1))


if __name__ == "__main__":
    main()
