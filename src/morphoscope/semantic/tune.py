"""``morphoscope tune``: Optuna search over the settings a config's ``tune.space`` declares.

Each trial is a short training (``tune.epochs`` epochs on ``tune.fraction`` of the training
images) scored on validation (``tune.metric``: F1 at IoU 0.5 of the instances, or foreground
IoU) after every epoch; the median pruner stops trials that fall below the median of earlier
trials at the same epoch. The study lives in an Optuna storage (an SQLite file by default), so a
search can be stopped, resumed (run the same command again: N more trials) and inspected
(``optuna-dashboard sqlite:///...``). The best configuration is written as a ready-to-train YAML
(full epochs, all the data, the best settings).

Settings are named by their dotted path in the config: ``train.lr``, ``train.batch_size``,
``model.encoder``, ``loss.aux``, ``postprocess.threshold``, ...
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import yaml

from morphoscope.config import config_to_dict, load_config, parse_config
from morphoscope.errors import ConfigError


def _set(d: dict, dotted: str, value) -> None:
    keys = dotted.split(".")
    node = d
    for k in keys[:-1]:
        if not isinstance(node.get(k), dict):
            raise ConfigError(f"tune.space: '{dotted}' is not a setting of the config ('{k}' is not a section)")
        node = node[k]
    if keys[-1] not in node:
        raise ConfigError(f"tune.space: '{dotted}' is not a setting of the config")
    node[keys[-1]] = value


def _suggest(trial, name: str, spec):
    if spec.type == "categorical":
        return trial.suggest_categorical(name, list(spec.choices))
    if spec.type == "int":
        return trial.suggest_int(name, int(spec.low), int(spec.high), log=spec.log)
    return trial.suggest_float(name, float(spec.low), float(spec.high), log=spec.log)


def trial_config(base: dict, params: dict, *, epochs: int | None, fraction: float, val_max_images: int | None) -> dict:
    d = copy.deepcopy(base)
    for k, v in params.items():
        _set(d, k, v)
    if epochs is not None:
        d["train"]["epochs"] = epochs
    d["train"]["val_every"] = 1
    d["train"]["checkpoint_every"] = max(1, d["train"]["epochs"])
    if val_max_images is not None:
        d["train"]["val_max_images"] = val_max_images
    d["data"]["fraction"] = fraction
    return d


def tune(config, *, trials: int, storage: str | None = None, study: str | None = None,
         fraction: float | None = None, out: str | Path | None = None, epochs: int | None = None,
         progress: bool = False) -> dict:
    """Run ``trials`` more trials of the study; returns a summary with the best config's path.

    ``out`` (default ``runs/tune_<name>``) holds the trial runs, ``study.db`` (the default
    storage) and ``best_config.yaml``.
    """
    import optuna

    cfg = load_config(config) if isinstance(config, (str, Path)) else config
    if cfg.task != "semantic":
        raise ConfigError(f"morphoscope tune works for task: semantic configs, not '{cfg.task}'")
    if cfg.data.val is None:
        raise ConfigError("tuning scores trials on validation images: set data.val in the config")
    if not cfg.tune.space:
        raise ConfigError("the config declares no search space: add tune.space (e.g. train.lr: "
                          "{low: 0.0003, high: 0.005, log: true})")
    if trials < 1:
        raise ConfigError("--trials must be at least 1")
    t = cfg.tune
    fraction = t.fraction if fraction is None else fraction
    if not 0 < fraction <= 1:
        raise ConfigError(f"--fraction must be in (0, 1], got {fraction}")
    epochs = epochs or t.epochs
    out = Path(out) if out is not None else Path("runs") / f"tune_{cfg.name}"
    out.mkdir(parents=True, exist_ok=True)
    storage = storage or f"sqlite:///{(out / 'study.db').resolve()}"
    study_name = study or cfg.name
    base = config_to_dict(cfg)
    # check every name and range now, not after an hour of trials
    probe = {k: (s.choices[0] if s.type == "categorical" else (int(s.low) if s.type == "int" else s.low))
             for k, s in t.space.items()}
    parse_config(trial_config(base, probe, epochs=epochs, fraction=fraction, val_max_images=t.val_max_images))

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    st = optuna.create_study(study_name=study_name, storage=storage, load_if_exists=True, direction="maximize",
                             sampler=optuna.samplers.TPESampler(seed=t.seed + len_trials(storage, study_name)),
                             pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0))
    metric = "f1@0.5" if t.metric == "f1@0.5" else "iou"

    def objective(trial):
        from morphoscope.semantic.train import train

        params = {k: _suggest(trial, k, s) for k, s in t.space.items()}
        d = trial_config(base, params, epochs=epochs, fraction=fraction, val_max_images=t.val_max_images)
        d["name"] = f"{cfg.name}_trial{trial.number}"
        tcfg = parse_config(d)
        run = train(tcfg, out=out / f"trial_{trial.number:03d}", overwrite=True, progress=progress, trial=trial)
        trial.set_user_attr("run", str(run))
        vals = [json.loads(line).get("val", {}).get(metric) for line in (run / "history.jsonl").read_text().splitlines()]
        vals = [v for v in vals if v is not None]
        if not vals:
            raise ConfigError("trial finished without a validation score")
        return float(vals[-1])

    from morphoscope.training.engine import NonFiniteLossError

    st.optimize(objective, n_trials=trials, catch=(NonFiniteLossError,))
    complete = [tr for tr in st.trials if tr.state == optuna.trial.TrialState.COMPLETE]
    summary = {"study": study_name, "storage": storage, "metric": metric, "trials": len(st.trials),
               "complete": len(complete),
               "pruned": sum(tr.state == optuna.trial.TrialState.PRUNED for tr in st.trials),
               "failed": sum(tr.state == optuna.trial.TrialState.FAIL for tr in st.trials),
               "best_value": None, "best_params": None, "best_config": None}
    if complete:
        best = st.best_trial
        d = copy.deepcopy(base)
        for k, v in best.params.items():
            _set(d, k, v)
        d["name"] = f"{cfg.name}_tuned"
        parse_config(d)  # a config that does not validate is never written
        path = out / "best_config.yaml"
        from morphoscope.io.atomic import atomic_write

        header = (f"# best of {len(complete)} completed trial(s) of study '{study_name}' ({storage}):\n"
                  f"# {metric} {best.value:.4f} after {epochs or base['train']['epochs']} epoch(s) on "
                  f"{fraction:g} of the training images. Train with: morphoscope train {path.name}\n")
        with atomic_write(path, mode="w") as fh:
            fh.write(header)
            yaml.safe_dump(d, fh, sort_keys=False)
        summary.update(best_value=best.value, best_params=best.params, best_trial=best.number,
                       best_config=str(path))
    return summary


def len_trials(storage: str, study_name: str) -> int:
    """Trials already in the study (so a resumed search does not repeat the sampler's draws)."""
    import optuna

    try:
        return len(optuna.load_study(study_name=study_name, storage=storage).trials)
    except KeyError:
        return 0


def search_postprocess(model, data, *, grid: dict | None = None, max_images: int | None = 20,
                       metric: str = "f1@0.5") -> dict:
    """Grid search of the post-processing settings of a trained model (no retraining: each image
    goes through the network once). ``model``: checkpoint/run folder/bundle; ``data``: an annotated
    dataset folder — use training images, and keep validation for reporting. Returns
    ``{"best": {setting: value}, "score": ..., "results": [...]}``."""
    import itertools

    import numpy as np

    from morphoscope.metrics.matching import match, matching_stats
    from morphoscope.metrics.semantic import semantic_scores
    from morphoscope.models.registry import ModelBundle, load_model
    from morphoscope.semantic.infer import predict_plane
    from morphoscope.semantic.postprocess import instances_from_probs
    from morphoscope.semantic.train import load_split

    bundle = model if isinstance(model, ModelBundle) else load_model(model)
    cfg = parse_config(bundle.config)
    post = cfg.postprocess
    grid = grid or {"threshold": [0.4, 0.5, 0.6], "seed_threshold": [0.1, 0.2, 0.3, 0.5],
                    "min_size": [10, 20, 30, 50]}
    unknown = set(grid) - {"threshold", "seed_threshold", "min_size", "method"}
    if unknown:
        raise ConfigError(f"cannot search post-processing setting(s) {sorted(unknown)}")
    planes = load_split(data, cfg, limit=max_images)
    outs = [(p, *predict_plane(bundle.model, p.image, cfg.model, cfg.num_classes, tile_size=post.tile_size,
                               overlap=post.tile_overlap, device=bundle.device)) for p in planes]
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
    from morphoscope.models.registry import read_checkpoint, resolve_model_path

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
