"""``morphoscope tune``: Optuna search over the settings a config's ``tune.space`` declares, for
any task.

Each trial is a short training (``tune.epochs`` epochs on ``tune.fraction`` of the training
images) scored on validation (``tune.metric``: the task's validation score, or any of its
validation metrics such as ``f1@0.5``, ``iou`` or ``macro_f1``) after every epoch; the median pruner stops trials that fall below the median of earlier
trials at the same epoch. The study lives in an Optuna storage (an SQLite file by default), so a
search can be stopped, resumed (run the same command again: N more trials) and inspected
(``optuna-dashboard sqlite:///...``). The best configuration is written as a ready-to-train YAML
(full epochs, all the data, the best settings).

Settings are named by their dotted path in the config: ``train.lr``, ``train.batch_size``,
``model.encoder``, ``loss.aux``, ``postprocess.threshold``, ...
"""

from __future__ import annotations

import copy
from pathlib import Path

import yaml

from morphoscope.config import config_to_dict
from morphoscope.errors import ConfigError
from morphoscope.tasks import load_config, parse_config


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
    if fraction < 1.0:
        if "fraction" not in d["data"]:
            raise ConfigError(f"--fraction: the '{d.get('task')}' task's data section has no fraction setting; "
                              "tune it on all the training images (fraction 1)")
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
    metric = t.metric

    def objective(trial):
        from morphoscope.training.run import train

        params = {k: _suggest(trial, k, s) for k, s in t.space.items()}
        d = trial_config(base, params, epochs=epochs, fraction=fraction, val_max_images=t.val_max_images)
        d["name"] = f"{cfg.name}_trial{trial.number}"
        tcfg = parse_config(d)
        seen: list[float] = []

        def report(epoch, metrics):
            if metric not in metrics:
                numbers = [k for k, v in metrics.items() if isinstance(v, (int, float))]
                raise ConfigError(f"tune.metric '{metric}' is not a validation metric of this task "
                                  f"(it has: {', '.join(numbers)})")
            seen.append(float(metrics[metric]))
            trial.report(seen[-1], epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned after epoch {epoch}")

        run = train(tcfg, out=out / f"trial_{trial.number:03d}", overwrite=True, progress=progress,
                    on_validation=report)
        trial.set_user_attr("run", str(run))
        if not seen:
            raise ConfigError("trial finished without a validation score")
        return seen[-1]

    from morphoscope.engine.training import NonFiniteLossError

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


