"""Post-processing search for a trained semantic model: the watershed settings that give the best
objects, found on annotated images with one network pass per image (no retraining), and written
into a copy of the checkpoint as its new defaults."""

from __future__ import annotations

from pathlib import Path

from morphoscope.errors import ConfigError
from morphoscope.tasks import parse_config


def search_postprocess(model, data, *, grid: dict | None = None, max_images: int | None = 20,
                       metric: str = "f1@0.5") -> dict:
    """Grid search of the post-processing settings of a trained model (no retraining: each image
    goes through the network once). ``model``: checkpoint/run folder/bundle; ``data``: an annotated
    dataset folder — use training images, and keep validation for reporting. Returns
    ``{"best": {setting: value}, "score": ..., "results": [...]}``."""
    import itertools

    import numpy as np

    from morphoscope.engine.bundle import ModelBundle
    from morphoscope.engine.predictor import PlaneInput, Predictor
    from morphoscope.metrics.matching import match, matching_stats
    from morphoscope.metrics.semantic import semantic_scores
    from morphoscope.tasks import load_model
    from morphoscope.tasks.semantic.postprocess import instances_from_probs
    from morphoscope.tasks.semantic.task import load_split

    bundle = model if isinstance(model, ModelBundle) else load_model(model)
    cfg = bundle.cfg
    post = cfg.postprocess
    grid = grid or {"threshold": [0.4, 0.5, 0.6], "seed_threshold": [0.1, 0.2, 0.3, 0.5],
                    "min_size": [10, 20, 30, 50]}
    unknown = set(grid) - {"threshold", "seed_threshold", "min_size", "method"}
    if unknown:
        raise ConfigError(f"cannot search post-processing setting(s) {sorted(unknown)}")
    planes = load_split(data, cfg, limit=max_images)
    predictor = Predictor(bundle, keep_maps=True)
    inputs = [PlaneInput(p.name, np.ascontiguousarray(np.moveaxis(p.image, 0, -1)), stats={"low": 0.0, "high": 1.0})
              for p in planes]
    outs = []
    for p, (_, res) in zip(planes, predictor.run(inputs)):
        if isinstance(res, BaseException):
            raise res
        outs.append((p, *predictor.inference.split_maps(res.maps)))
    keys = list(grid)
    results = []
    for values in itertools.product(*(grid[k] for k in keys)):
        s = {**post.model_dump(), **dict(zip(keys, values))}
        ms, pairs = [], []
        for p, probs, aux in outs:
            lab, _, _ = instances_from_probs(probs, aux, kind=cfg.model.output, method=s["method"],
                                             threshold=s["threshold"], seed_threshold=s["seed_threshold"],
                                             min_size=s["min_size"])
            ms.append(match(p.instances, lab, thresholds=(0.5,)))
            fg = (1 - probs[0]) >= s["threshold"]
            pairs.append((p.classes, np.where(fg, probs[1:].argmax(0) + 1, 0)))
        st = matching_stats(ms, thresholds=(0.5,))["0.5"]
        sem = semantic_scores(pairs, cfg.num_classes + 1, cfg.data.classes)
        results.append({**dict(zip(keys, values)), "f1@0.5": st["f1"], "precision@0.5": st["precision"],
                        "recall@0.5": st["recall"], "iou": sem["iou"]})
    key = "f1@0.5" if metric == "f1@0.5" else "iou"
    best = max(results, key=lambda r: r[key])
    return {"best": {k: best[k] for k in keys}, "score": best[key], "metric": key, "images": len(planes),
            "results": results}


def write_postprocess(model_path, out_path, values: dict) -> Path:
    """Copy a semantic checkpoint with new post-processing defaults (``threshold``,
    ``seed_threshold``, ``min_size``, ``method``): what ``morphoscope predict`` then uses."""
    import io

    import torch

    from morphoscope.io.atomic import atomic_write
    from morphoscope.models.checkpoint import read_checkpoint, resolve_model_path

    _, path = resolve_model_path(model_path)
    ckpt = read_checkpoint(path)
    if ckpt["task"] != "semantic":
        raise ConfigError("not a semantic model checkpoint", path=path)
    ckpt["config"]["postprocess"].update(values)
    parse_config(ckpt["config"])
    ckpt.setdefault("extra", {})
    ckpt["extra"]["postprocess"] = ckpt["config"]["postprocess"]
    ckpt["extra"]["threshold"] = ckpt["config"]["postprocess"]["threshold"]
    for k in ("optimizer", "scheduler", "scaler", "history"):
        ckpt.pop(k, None)
    buf = io.BytesIO()
    torch.save(ckpt, buf)
    with atomic_write(out_path) as fh:
        fh.write(buf.getvalue())
    return Path(out_path)
