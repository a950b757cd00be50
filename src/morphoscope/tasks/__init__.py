"""The task registry: every model family is one folder here with a ``TASK`` (a
:class:`~morphoscope.engine.task.Task`). Configs, checkpoints and the CLI find a task by its name,
and nothing outside this package asks which task it is.

Adding a model family = adding a folder ``morphoscope/tasks/<name>/`` whose ``__init__`` defines
``TASK``, plus its name in :data:`PACKAGES` (docs/architecture.md).
"""

from __future__ import annotations

import importlib
from pathlib import Path

from morphoscope.config import read_yaml, validate_config
from morphoscope.engine.bundle import ModelBundle
from morphoscope.engine.task import Task
from morphoscope.errors import ConfigError

#: task name -> package under morphoscope/tasks (imported on first use: the CLI stays fast)
PACKAGES = ("instance", "semantic", "classify", "detection")
DEFAULT_TASK = "instance"


def task_names() -> list[str]:
    return list(PACKAGES)


def get_task(name: str) -> Task:
    """The task called ``name`` (the ``task:`` value of configs and checkpoints)."""
    if name not in PACKAGES:
        raise ConfigError(f"unknown task '{name}' (known: {', '.join(PACKAGES)})")
    return importlib.import_module(f"morphoscope.tasks.{name}").TASK


def parse_config(data: dict, *, base: Path | None = None, source: str | Path | None = None):
    """Validate a config mapping with its task's schema (``task:``, default ``instance``)."""
    if not isinstance(data, dict):
        raise ConfigError("config must be a mapping of settings", path=source)
    name = data.get("task", DEFAULT_TASK)
    try:
        task = get_task(str(name))
    except ConfigError as exc:
        raise ConfigError(exc.message, path=source) from None
    return validate_config(task.config_schema, data, base=base, source=source)


def load_config(path: str | Path):
    """Read and validate a YAML config file; relative paths resolve against its folder."""
    path = Path(path)
    return parse_config(read_yaml(path), base=path.resolve().parent, source=path)


def bundle_from_checkpoint(ckpt: dict, *, name: str = "model", path: Path | None = None,
                           device="cpu") -> ModelBundle:
    """A ready-to-use model from a checkpoint dict (see :mod:`morphoscope.models.checkpoint`)."""
    import torch

    where = path.name if path is not None else None
    try:
        task = get_task(str(ckpt["task"]))
    except ConfigError as exc:
        raise ConfigError(exc.message, path=where) from None
    try:
        cfg = parse_config(ckpt["config"], source=where)
    except ConfigError:  # a checkpoint of an older version: settings since removed are ignored
        import warnings

        config, dropped = _known_settings(task.config_schema, ckpt["config"])
        cfg = parse_config(config, source=where)
        if dropped:
            warnings.warn(f"{where or name}: settings this version no longer has were ignored: {', '.join(dropped)}",
                          stacklevel=2)
    class_names = list(ckpt["class_names"])
    model = task.build_model(cfg, class_names)
    state = {k: v.float() if v.is_floating_point() else v for k, v in ckpt["model"].items()}
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise ConfigError(f"the weights do not fit the model the checkpoint describes ({first})",
                          path=where) from None
    device = torch.device(device)
    model.to(device).eval()
    return ModelBundle(name=name, task=task, model=model, class_names=class_names, cfg=cfg,
                       normalize=dict(ckpt.get("normalize") or {"low": 1.0, "high": 99.8}),
                       metrics=dict(ckpt.get("metrics") or {}), extra=dict(ckpt.get("extra") or {}),
                       card=dict(ckpt.get("card") or {}), path=path, device=device)


def _known_settings(schema, data, prefix=""):
    """``data`` without the keys ``schema`` does not declare (recursively); returns it and the
    dotted names of what was dropped."""
    from pydantic import BaseModel

    if not isinstance(data, dict):
        return data, []
    fields = schema.model_fields
    kept, dropped = {}, []
    for key, value in data.items():
        if key not in fields:
            dropped.append(prefix + key)
            continue
        sub = fields[key].annotation
        sub = next((a for a in getattr(sub, "__args__", (sub,)) if isinstance(a, type) and issubclass(a, BaseModel)), sub)
        if isinstance(sub, type) and issubclass(sub, BaseModel) and isinstance(value, dict):
            value, more = _known_settings(sub, value, prefix + key + ".")
            dropped += more
        kept[key] = value
    return kept, dropped


def load_model(name_or_path=None, *, device="auto") -> ModelBundle:
    """A shipped model by name (default ``nuclei``), a checkpoint file or a training run folder."""
    from morphoscope.models.checkpoint import pick_device, read_checkpoint, resolve_model_path

    device = pick_device(device)
    name, path = resolve_model_path(name_or_path)
    return bundle_from_checkpoint(read_checkpoint(path), name=name, path=path, device=device)


def list_models() -> list[dict]:
    """Cards of the shipped models (from their JSON cards; no weights are loaded)."""
    import json

    from morphoscope.models.checkpoint import SHIPPED, WEIGHTS_DIR

    cards = []
    for name, stem in SHIPPED.items():
        meta_path = WEIGHTS_DIR / f"{stem}.json"
        if not meta_path.is_file():
            continue
        meta = json.loads(meta_path.read_text())
        model = meta.get("config", {}).get("model", {})
        card = meta.get("card", {})
        cards.append({"name": name, "task": meta["task"], "classes": meta["class_names"],
                      "metrics": meta.get("metrics", {}), "backbone": model.get("backbone") or model.get("encoder"),
                      "trained_on": card.get("trained_on", ""), "description": card.get("description", ""),
                      "file": f"{stem}.safetensors"})
    return cards
