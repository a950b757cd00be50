#!/usr/bin/env python3
"""StarDist peer baseline: train the ``stardist`` package with its official 2D example recipe on
the images morphoscope trains on, for a given CPU-time budget, predict the validation images,
and score the predictions with morphoscope's own evaluate (pooled and per image, DSB score, per
modality on DSB2018).

StarDist needs TensorFlow, which must not enter morphoscope's dependencies, so training and
prediction run in their own virtual environment (``bash bench/peer_env.sh`` makes
``.peer-venv``); scoring runs in morphoscope's ``.venv``. ``run`` does all three steps and calls
the main venv for the last one itself::

    bash bench/peer_env.sh
    .peer-venv/bin/python bench/peer_stardist.py run --train bbbc039 --cpu-seconds 36000 \\
        --out runs/peer_stardist_bbbc039
    # smoke test (minutes): few images, short epochs
    .peer-venv/bin/python bench/peer_stardist.py run --train bbbc039 --cpu-seconds 120 \\
        --steps-per-epoch 10 --max-train-images 12 --max-val-images 4 --out /tmp/peer_smoke

Steps (each can be run alone; ``OUT`` is ``--out``):

``train``   (peer venv) the recipe of stardist's examples/2D/2_training.ipynb: images normalised
            to their 1st..99.8th percentile per channel, label holes filled, 15 % of the training
            images held out (``RandomState(42)``) for the recipe's own validation loss and
            threshold optimisation, ``Config2D(n_rays=32, grid=(2, 2))`` with its defaults
            (256x256 patches, batch 4, Adam 3e-4, ReduceLROnPlateau), the notebook's augmenter
            (random flips and 90-degree rotations, intensity x U(0.6, 2) + U(-0.2, 0.2), Gaussian
            noise of s.d. U(0, 0.02)). Training stops at the end of the first batch after which
            the process has used ``--cpu-seconds`` of CPU time (user + system, all threads, as
            ``time.process_time`` counts it; from the start of ``model.train``); Keras then runs
            the epoch's validation and checkpoint, and the best weights (lowest validation loss)
            are kept. ``optimize_thresholds`` on the held-out images follows, its CPU time
            reported apart. Writes ``OUT/model/`` and ``OUT/train.json``.
``predict`` (peer venv) every image of the validation sets: ``bbbc039`` (BBBC039's official
            validation folder) and ``dsb2018`` (configs/splits/dsb2018_val.txt); writes
            ``OUT/pred/SET/NAME_labels.tif``, ``OUT/pred/SET/scores.json`` (label -> StarDist
            object probability), the GT folder ``OUT/gt/SET`` (links) and ``OUT/predict.json``
            with the CPU and wall seconds of each image.
``score``   (main venv) morphoscope ``evaluate`` of each set (``predictions.json`` is written
            from the labels and probabilities); writes ``OUT/pred/SET/evaluation.json``,
            ``OUT/pred/SET/per_image.csv`` and ``OUT/peer_stardist.json``, and prints a table.
``timing``  (peer venv) CPU and wall seconds of StarDist prediction per BBBC039 validation image
            (520x696) with ``--threads`` threads (TensorFlow intra- and inter-op, OpenMP).

Training sets (``--train``): ``bbbc039`` (BBBC039 training, 100 grey images: a 1-channel
model) or ``bbbc039+dsb2018`` (plus configs/splits/dsb2018_train.txt: a 3-channel model; grey
images are repeated over 3 channels after normalisation, colour ones keep theirs).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
DATA = PROJECT.parent / "shared" / "data"
SPLITS = PROJECT / "configs" / "splits"
MAIN_PYTHON = PROJECT / ".venv" / "bin" / "python"
EVAL_SETS = ("bbbc039", "dsb2018")
#: BBBC039 validation changed as a user's microscope changes it (bench/eval_generalist.py's
#: variants: x0.5 / x2 rescaled, inverted), on the first ``--variant-images`` images (evenly spaced)
VARIANT_SETS = ("bbbc039_x0.5", "bbbc039_x2", "bbbc039_inv")


# --------------------------------------------------------------------------------------------
# data (peer venv: numpy, tifffile, Pillow only)
# --------------------------------------------------------------------------------------------


def _spaced(items: list, n: int | None) -> list:
    """At most ``n`` items, evenly spaced over the list (all of them when n is None)."""
    if n is None or n >= len(items):
        return list(items)
    step = len(items) / n
    return [items[int(i * step)] for i in range(n)]


def _modalities(data: Path) -> dict[str, str]:
    with open(SPLITS / "dsb2018_modality.csv", newline="") as fh:
        return {r["ImageId"]: r["modality"] for r in csv.DictReader(fh)}


def _split_ids(name: str) -> list[str]:
    return (SPLITS / f"dsb2018_{name}.txt").read_text().split()


def bbbc039_items(data: Path, split: str) -> list[dict]:
    folder = data / "bbbc039" / split
    return [{"set": "bbbc039", "name": p.stem, "image": p,
             "label": folder / "labels" / f"{p.stem}.png", "modality": "fluorescence"}
            for p in sorted((folder / "images").glob("*.tif"))]


def dsb2018_items(data: Path, split: str) -> list[dict]:
    modality = _modalities(data)
    root = data / "dsb2018" / "stage1_train"
    ids = sorted(_split_ids(split), key=lambda i: (modality[i], i))
    return [{"set": "dsb2018", "name": i, "image": root / i / "images" / f"{i}.png",
             "masks": root / i / "masks", "folder": root / i, "modality": modality[i]}
            for i in ids]


def _spaced_by_modality(items: list[dict], n: int | None) -> list[dict]:
    """At most ``n`` items taken in turn from each modality (each evenly spaced), so that a
    small subset holds every modality; all items when n is None."""
    if n is None or n >= len(items):
        return list(items)
    groups: dict[str, list] = {}
    for it in items:
        groups.setdefault(it["modality"], []).append(it)
    spaced = [_spaced(g, n) for _, g in sorted(groups.items())]
    out = []
    for k in range(n):
        out += [g[k] for g in spaced if k < len(g)]
    return out[:n]


def read_image(item: dict):
    import numpy as np

    path = item["image"]
    if path.suffix == ".tif":
        import tifffile

        return tifffile.imread(path)
    from PIL import Image

    a = np.asarray(Image.open(path))
    if a.ndim == 3:
        a = a[..., :3]
        if (a[..., 0] == a[..., 1]).all() and (a[..., 0] == a[..., 2]).all():
            a = a[..., 0]  # grey stored as RGB(A)
    return a


def read_labels(item: dict):
    import numpy as np
    from PIL import Image

    if "label" in item:
        return np.asarray(Image.open(item["label"])).astype(np.int32)
    out = None
    for k, p in enumerate(sorted(item["masks"].glob("*.png")), start=1):
        m = np.asarray(Image.open(p)) > 0
        if out is None:
            out = np.zeros(m.shape, np.int32)
        out[m] = k
    return out


def prepare_input(image, n_channel: int):
    """The recipe's normalisation (percentiles 1 and 99.8, per channel), then the model's
    channel count: grey repeated over 3 channels, or colour averaged to grey."""
    import numpy as np
    from csbdeep.utils import normalize

    x = normalize(image, 1, 99.8, axis=(0, 1)).astype(np.float32)
    if n_channel == 1 and x.ndim == 3:
        x = x.mean(-1)
    elif n_channel == 3 and x.ndim == 2:
        x = np.repeat(x[..., None], 3, axis=-1)
    return x


# --------------------------------------------------------------------------------------------
# train / predict / timing (peer venv)
# --------------------------------------------------------------------------------------------


def _set_threads(threads: int | None) -> None:
    """Before TensorFlow and StarDist are imported: thread counts of TF and OpenMP."""
    if threads:
        for var in ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
            os.environ[var] = str(threads)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _tf_threads(threads: int | None) -> None:
    import tensorflow as tf

    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)


def _versions() -> dict:
    import csbdeep
    import numpy
    import stardist
    import tensorflow as tf

    return {"stardist": stardist.__version__, "csbdeep": csbdeep.__version__,
            "tensorflow": tf.__version__, "numpy": numpy.__version__,
            "python": sys.version.split()[0]}


def augmenter(x, y):
    """The augmenter of stardist's examples/2D/2_training.ipynb."""
    import numpy as np

    axes = tuple(range(y.ndim))
    perm = tuple(np.random.permutation(axes))
    x = x.transpose(perm + tuple(range(y.ndim, x.ndim)))
    y = y.transpose(perm)
    for ax in axes:
        if np.random.rand() > 0.5:
            x = np.flip(x, axis=ax)
            y = np.flip(y, axis=ax)
    x = x * np.random.uniform(0.6, 2) + np.random.uniform(-0.2, 0.2)
    sig = 0.02 * np.random.uniform(0, 1)
    return x + sig * np.random.normal(0, 1, x.shape), y


def train(args) -> dict:
    _set_threads(args.threads)
    import numpy as np
    import tensorflow as tf
    from stardist import fill_label_holes
    from stardist.models import Config2D, StarDist2D

    _tf_threads(args.threads)
    keras = tf.keras

    items = _spaced(bbbc039_items(args.data, "training"), args.max_train_images)
    if args.train == "bbbc039+dsb2018":
        items += _spaced_by_modality(dsb2018_items(args.data, "train"), args.max_train_images)
    n_channel = 1 if args.train == "bbbc039" else 3
    start = time.process_time()
    X = [prepare_input(read_image(it), n_channel) for it in items]
    Y = [fill_label_holes(read_labels(it)) for it in items]
    load_cpu = time.process_time() - start

    np.random.seed(args.seed)
    tf.random.set_seed(args.seed)
    rng = np.random.RandomState(42)  # the recipe's split
    ind = rng.permutation(len(X))
    n_val = max(1, int(round(0.15 * len(ind))))
    ind_train, ind_val = ind[:-n_val], ind[-n_val:]
    X_trn, Y_trn = [X[i] for i in ind_train], [Y[i] for i in ind_train]
    X_val, Y_val = [X[i] for i in ind_val], [Y[i] for i in ind_val]

    conf = Config2D(n_rays=32, grid=(2, 2), use_gpu=False, n_channel_in=n_channel)
    model_dir = args.out / "model"
    model_dir.mkdir(parents=True, exist_ok=True)
    model = StarDist2D(conf, name="stardist", basedir=str(model_dir))
    model.prepare_for_training()

    budget = float(args.cpu_seconds)
    state = {"batches": 0, "stopped": False}

    class CpuBudget(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            state["batches"] += 1
            if time.process_time() - train_start >= budget:
                state["stopped"] = True
                self.model.stop_training = True

    model.callbacks.append(CpuBudget())
    train_start, wall = time.process_time(), time.perf_counter()
    history = model.train(X_trn, Y_trn, validation_data=(X_val, Y_val), augmenter=augmenter,
                          epochs=args.max_epochs, steps_per_epoch=args.steps_per_epoch)
    train_cpu, train_wall = time.process_time() - train_start, time.perf_counter() - wall
    start, wall = time.process_time(), time.perf_counter()
    thresholds = model.optimize_thresholds(X_val, Y_val)
    opt_cpu, opt_wall = time.process_time() - start, time.perf_counter() - wall
    val_loss = history.history.get("val_loss", [])
    out = {
        "train": args.train, "cpu_seconds_budget": budget, "seed": args.seed,
        "steps_per_epoch": args.steps_per_epoch, "max_epochs": args.max_epochs,
        "threads": args.threads, "n_channel": n_channel,
        "images": {"train": len(X_trn), "recipe_validation": len(X_val)},
        "image_names": {"train": [items[i]["name"] for i in ind_train],
                        "recipe_validation": [items[i]["name"] for i in ind_val]},
        "batches": state["batches"], "epochs": len(val_loss),
        "stopped_by_budget": state["stopped"],
        "cpu_seconds": {"load": load_cpu, "train": train_cpu, "optimize_thresholds": opt_cpu},
        "wall_seconds": {"train": train_wall, "optimize_thresholds": opt_wall},
        "val_loss": [float(v) for v in val_loss], "thresholds": dict(thresholds),
        "config": {k: (list(v) if isinstance(v, tuple) else v)
                   for k, v in vars(conf).items() if isinstance(v, (int, float, str, tuple))},
        "versions": _versions(),
    }
    (args.out / "train.json").write_text(json.dumps(out, indent=2) + "\n")
    print(f"trained {len(val_loss)} epochs, {state['batches']} batches, "
          f"{train_cpu:.0f} CPU s (budget {budget:.0f}); threshold optimisation {opt_cpu:.0f} "
          f"CPU s; thresholds {dict(thresholds)}")
    return out


def _load_model(model_dir: Path):
    from stardist.models import StarDist2D

    return StarDist2D(None, name="stardist", basedir=str(model_dir))


def _gt_folder(items: list[dict], folder: Path) -> Path:
    """A GT folder of exactly these images (links), in a layout morphoscope reads."""
    if folder.exists():
        import shutil

        shutil.rmtree(folder)
    for it in items:
        if it["set"] == "bbbc039":
            for sub, src in (("images", it["image"]), ("labels", it["label"])):
                (folder / sub).mkdir(parents=True, exist_ok=True)
                (folder / sub / src.name).symlink_to(src)
        else:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / it["name"]).symlink_to(it["folder"], target_is_directory=True)
    return folder


def _variant_folder(items: list[dict], kind: str, folder: Path) -> tuple[Path, dict]:
    """A GT folder of the BBBC039 ``items`` changed by ``kind`` (``x0.5``, ``x2``, ``inv``) exactly
    as bench/eval_generalist.py changes them for morphoscope's model; returns it and the changed
    images by name."""
    import shutil

    import numpy as np
    import tifffile
    from PIL import Image

    sys.path.insert(0, str(PROJECT / "bench"))
    from eval_generalist import variant

    shutil.rmtree(folder, ignore_errors=True)
    (folder / "images").mkdir(parents=True)
    (folder / "labels").mkdir()
    images = {}
    for it in items:
        changed = variant({"image": read_image(it), "labels": read_labels(it)}, kind)
        images[it["name"]] = changed["image"]
        tifffile.imwrite(folder / "images" / f"{it['name']}.tif", changed["image"])
        Image.fromarray(changed["labels"].astype(np.uint16)).save(folder / "labels" / f"{it['name']}.png")
    return folder, images


def validation_set(args, name: str) -> tuple[list[dict], Path, dict | None]:
    """The items of validation set ``name``, its GT folder (made under ``OUT/gt``) and, for the
    changed BBBC039 sets, their changed images by name (None: read each item's own file)."""
    if name in VARIANT_SETS:
        items = _spaced(bbbc039_items(args.data, "validation"), args.variant_images)
        gt_dir, images = _variant_folder(items, name.split("_", 1)[1], args.out / "gt" / name)
        return items, gt_dir, images
    items = bbbc039_items(args.data, "validation") if name == "bbbc039" else dsb2018_items(args.data, "val")
    items = _spaced_by_modality(items, args.max_val_images)
    return items, _gt_folder(items, args.out / "gt" / name), None


def predict(args) -> dict:
    _set_threads(args.threads)
    import numpy as np
    import tifffile

    _tf_threads(args.threads)
    model = _load_model(args.out / "model")
    n_channel = model.config.n_channel_in
    report = {"threads": args.threads, "thresholds": dict(model.thresholds._asdict()),
              "versions": _versions(), "sets": {}}
    if (args.out / "predict.json").is_file():  # sets predicted before stay (predict one set at a time)
        report["sets"] = json.loads((args.out / "predict.json").read_text())["sets"]
    for name in args.sets:
        pred_dir = args.out / "pred" / name
        pred_dir.mkdir(parents=True, exist_ok=True)
        items, gt_dir, images = validation_set(args, name)
        scores, timing = {}, []
        for it in items:
            x = prepare_input(images[it["name"]] if images else read_image(it), n_channel)
            cpu, wall = time.process_time(), time.perf_counter()
            labels, details = model.predict_instances(x, n_tiles=model._guess_n_tiles(x),
                                                      show_tile_progress=False)
            timing.append({"image": it["name"], "height": x.shape[0], "width": x.shape[1],
                           "cpu_seconds": time.process_time() - cpu,
                           "wall_seconds": time.perf_counter() - wall})
            prob = np.asarray(details["prob"], float)
            present = np.unique(labels)
            present = present[present > 0]
            if len(present) and present.max() > len(prob):
                raise RuntimeError(f"{it['name']}: label {present.max()} but {len(prob)} objects")
            # label k is StarDist's object k-1 (stardist.geometry.polygons_to_label)
            scores[it["name"]] = {int(k): float(prob[k - 1]) for k in present}
            dtype = np.uint16 if labels.max() < 65536 else np.uint32
            tifffile.imwrite(pred_dir / f"{it['name']}_labels.tif", labels.astype(dtype),
                             compression="zlib")
        (pred_dir / "scores.json").write_text(json.dumps(scores))
        report["sets"][name] = {
            "images": len(items), "gt": str(gt_dir), "pred": str(pred_dir),
            "modality": {it["name"]: it["modality"] for it in items}, "timing": timing}
        cpu = [t["cpu_seconds"] for t in timing]
        print(f"{name}: predicted {len(items)} images, {sum(cpu):.1f} CPU s")
    (args.out / "predict.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def timing(args) -> dict:
    """CPU and wall seconds per BBBC039 validation image (520x696); the first image (graph
    building) is reported apart."""
    _set_threads(args.threads)
    _tf_threads(args.threads)
    model = _load_model(args.out / "model")
    items = bbbc039_items(args.data, "validation")[: args.images + 1]
    rows = []
    for it in items:
        x = prepare_input(read_image(it), model.config.n_channel_in)
        cpu, wall = time.process_time(), time.perf_counter()
        model.predict_instances(x, n_tiles=model._guess_n_tiles(x), show_tile_progress=False)
        rows.append((time.process_time() - cpu, time.perf_counter() - wall))
    steady = rows[1:]
    out = {"threads": args.threads, "images": len(steady), "shape": [520, 696],
           "first_image": {"cpu_seconds": rows[0][0], "wall_seconds": rows[0][1]},
           "cpu_seconds_per_image": sum(r[0] for r in steady) / len(steady),
           "wall_seconds_per_image": sum(r[1] for r in steady) / len(steady),
           "versions": _versions()}
    print(json.dumps(out, indent=2))
    path = args.out / f"timing_threads{args.threads}.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    return out


# --------------------------------------------------------------------------------------------
# score (main venv: morphoscope)
# --------------------------------------------------------------------------------------------


def _write_predictions_json(pred_dir: Path, names: list[str], info: dict) -> None:
    """``predictions.json`` (docs/outputs.md) of the label images and probabilities."""
    import numpy as np
    import tifffile
    from pycocotools import mask as mask_utils

    scores = json.loads((pred_dir / "scores.json").read_text())
    images, anns = [], []
    for image_id, name in enumerate(names, start=1):
        labels = tifffile.imread(pred_dir / f"{name}_labels.tif")
        h, w = labels.shape
        images.append({"id": image_id, "file_name": f"{name}.png", "height": h, "width": w})
        for k in (int(v) for v in np.unique(labels) if v):
            rle = mask_utils.encode(np.asfortranarray((labels == k).astype(np.uint8)))
            bbox = mask_utils.toBbox(rle).tolist()
            area = float(mask_utils.area(rle))
            rle["counts"] = rle["counts"].decode("ascii")
            anns.append({"id": len(anns) + 1, "image_id": image_id, "category_id": 1,
                         "segmentation": rle, "bbox": bbox, "area": area,
                         "score": scores[name][str(k)], "label": k})
    data = {"info": info, "images": images,
            "categories": [{"id": 1, "name": "nucleus"}], "annotations": anns}
    (pred_dir / "predictions.json").write_text(json.dumps(data))


def _headline(result: dict) -> dict:
    pooled, mean = result["matching"], result["per_image_mean"]
    return {"images": result["images"], "gt_objects": result["objects"]["gt"],
            "pred_objects": result["objects"]["pred"],
            "pooled": {"f1@0.5": pooled["0.5"]["f1"], "ap@0.5": pooled["0.5"]["ap"],
                       "ap@0.9": pooled["0.9"]["ap"]},
            "per_image": {"f1@0.5": mean["0.5"]["f1"], "ap@0.5": mean["0.5"]["ap"],
                          "ap@0.9": mean["0.9"]["ap"]},
            "dsb_score": result["dsb_score"],
            "coco_mask_ap": result["coco"]["segm"]["AP"],
            "images_without_objects": result["images_without_objects"]}


def score(args, peer: str = "stardist") -> dict:
    import warnings

    sys.path.insert(0, str(PROJECT / "src"))
    from morphoscope.metrics.evaluate import evaluate, write_per_image_csv
    from morphoscope.metrics.per_image import per_image_summary

    report = json.loads((args.out / "predict.json").read_text())
    train_info = {}
    if (args.out / "train.json").is_file():
        train_info = json.loads((args.out / "train.json").read_text())
    summary = {"peer": peer, "train": train_info.get("train"),
               "train_cpu_seconds": train_info.get("cpu_seconds"),
               "thresholds": report["thresholds"], "versions": report["versions"], "sets": {}}
    for name, entry in report["sets"].items():
        pred_dir, gt_dir = Path(entry["pred"]), Path(entry["gt"])
        _write_predictions_json(pred_dir, list(entry["modality"]),
                                {"model": f"{peer} (peer baseline)", **report["versions"]})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = evaluate(pred_dir, gt_dir)
        (pred_dir / "evaluation.json").write_text(json.dumps(result, indent=2) + "\n")
        write_per_image_csv(result, pred_dir / "per_image.csv", overwrite=True)
        out = _headline(result)
        cpu = [t["cpu_seconds"] for t in entry["timing"]]
        out["predict_cpu_seconds_per_image"] = sum(cpu) / len(cpu) if cpu else None
        if name == "dsb2018":
            out["per_modality"] = {}
            for modality in ("fluorescence", "brightfield", "histology"):
                rows = [r for r in result["per_image"] if entry["modality"][r["image"]] == modality]
                if rows:
                    s = per_image_summary(rows)
                    out["per_modality"][modality] = {
                        "images": s["images"], "dsb_score": s["dsb_score"],
                        "per_image": {"f1@0.5": s["per_image_mean"]["0.5"]["f1"],
                                      "ap@0.9": s["per_image_mean"]["0.9"]["ap"]}}
        summary["sets"][name] = out
    path = args.out / f"peer_{peer}.json"
    path.write_text(json.dumps(summary, indent=2) + "\n")
    print(format_summary(summary))
    print(f"\nwrote {path}")
    return summary


def format_summary(summary: dict) -> str:
    head = (f"{'set':<24} {'images':>6} {'F1@0.5':>7} {'AP@0.9':>7} {'F1@0.5':>7} {'AP@0.9':>7} "
            f"{'DSB':>6} {'maskAP':>7}")
    lines = [f"{summary['peer']} peer (trained on {summary['train']}); pooled | mean per image",
             head]
    for name, s in summary["sets"].items():
        lines.append(f"{name:<24} {s['images']:>6} {s['pooled']['f1@0.5']:>7.3f} "
                     f"{s['pooled']['ap@0.9']:>7.3f} {s['per_image']['f1@0.5']:>7.3f} "
                     f"{s['per_image']['ap@0.9']:>7.3f} {s['dsb_score']:>6.3f} "
                     f"{s['coco_mask_ap']:>7.3f}")
        for modality, m in s.get("per_modality", {}).items():
            lines.append(f"  {modality:<22} {m['images']:>6} {'':>7} {'':>7} "
                         f"{m['per_image']['f1@0.5']:>7.3f} {m['per_image']['ap@0.9']:>7.3f} "
                         f"{m['dsb_score']:>6.3f}")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="step", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--out", type=Path, required=True, help="working folder of this run")
    common.add_argument("--data", type=Path, default=DATA, help="shared data folder")
    common.add_argument("--threads", type=int, default=None,
                        help="TensorFlow and OpenMP threads (default: all cores)")
    train_opts = argparse.ArgumentParser(add_help=False)
    train_opts.add_argument("--train", choices=("bbbc039", "bbbc039+dsb2018"), default="bbbc039")
    train_opts.add_argument("--cpu-seconds", type=float, required=True,
                            help="CPU-time budget of the training loop")
    train_opts.add_argument("--steps-per-epoch", type=int, default=100,
                            help="Config2D default: 100")
    train_opts.add_argument("--max-epochs", type=int, default=400,
                            help="upper bound if the budget is not reached (Config2D: 400)")
    train_opts.add_argument("--max-train-images", type=int, default=None,
                            help="at most this many images per training set (smoke tests)")
    train_opts.add_argument("--seed", type=int, default=42)
    predict_opts = argparse.ArgumentParser(add_help=False)
    predict_opts.add_argument("--sets", default=",".join(EVAL_SETS),
                              help="validation sets to predict: bbbc039, dsb2018 and the changed BBBC039 "
                                   "sets " + ", ".join(VARIANT_SETS))
    predict_opts.add_argument("--max-val-images", type=int, default=None,
                              help="at most this many images per validation set (smoke tests)")
    predict_opts.add_argument("--variant-images", type=int, default=20,
                              help=f"images of the changed BBBC039 sets ({', '.join(VARIANT_SETS)})")
    sub.add_parser("train", parents=[common, train_opts])
    sub.add_parser("predict", parents=[common, predict_opts])
    sub.add_parser("score", parents=[common])
    p = sub.add_parser("timing", parents=[common])
    p.add_argument("--images", type=int, default=5)
    p = sub.add_parser("run", parents=[common, train_opts, predict_opts])
    p.add_argument("--main-python", type=Path, default=MAIN_PYTHON,
                   help="python of morphoscope's venv, for the score step")
    args = parser.parse_args(argv)
    if hasattr(args, "sets"):
        args.sets = [s for s in args.sets.split(",") if s]
        unknown = set(args.sets) - set(EVAL_SETS + VARIANT_SETS)
        if unknown:
            parser.error(f"unknown validation sets {sorted(unknown)}; known: {EVAL_SETS + VARIANT_SETS}")
    args.out.mkdir(parents=True, exist_ok=True)
    if args.step == "train":
        train(args)
    elif args.step == "predict":
        predict(args)
    elif args.step == "score":
        score(args)
    elif args.step == "timing":
        timing(args)
    else:
        train(args)
        predict(args)
        cmd = [str(args.main_python), __file__, "score", "--out", str(args.out),
               "--data", str(args.data)]
        return subprocess.run(cmd).returncode
    return 0


if __name__ == "__main__":
    sys.exit(main())
