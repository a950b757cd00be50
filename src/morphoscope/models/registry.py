"""Trained models by name (shipped with the package) or by checkpoint file.

A checkpoint is a ``torch.save`` dict holding everything needed to use the model without its
training config file: ``task``, ``config`` (the validated training config), ``class_names``,
``normalize``, ``model`` (state dict), ``metrics`` (validation), ``versions``. Shipped models are
stored with half-precision weights to keep the package small; they are used in float32.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from morphoscope.errors import ConfigError

WEIGHTS_DIR = Path(__file__).parent / "weights"
DEFAULT_MODEL = "nuclei"
SHIPPED = {"nuclei": "nuclei_maskrcnn_r18.pt"}


@dataclass
class ModelBundle:
    """A ready-to-use network and what it needs to know about its inputs and outputs."""

    name: str
    task: str
    model: torch.nn.Module
    class_names: list[str]
    config: dict
    normalize: dict
    metrics: dict = field(default_factory=dict)
    path: Path | None = None
    device: torch.device = torch.device("cpu")
    extra: dict = field(default_factory=dict)

    def card(self) -> dict:
        """What a user (or the web app) is told about the model."""
        return {"name": self.name, "task": self.task, "classes": self.class_names,
                "metrics": self.metrics, "path": str(self.path) if self.path else None,
                "backbone": self.config.get("model", {}).get("backbone") or self.config.get("model", {}).get("encoder")}


def resolve_model_path(name_or_path: str | Path | None) -> tuple[str, Path]:
    name_or_path = DEFAULT_MODEL if name_or_path is None else name_or_path
    p = Path(name_or_path)
    if str(name_or_path) in SHIPPED:
        path = WEIGHTS_DIR / SHIPPED[str(name_or_path)]
        if not path.is_file():
            raise ConfigError(f"shipped model '{name_or_path}' is missing from the installation", path=path)
        return str(name_or_path), path
    if p.is_dir():  # a training run folder: its best checkpoint
        for cand in ("model_best.pt", "checkpoint_last.pt"):
            if (p / cand).is_file():
                return p.name, p / cand
        raise ConfigError("run folder has no model_best.pt or checkpoint_last.pt", path=p)
    if p.is_file():
        return p.stem, p
    raise ConfigError(f"unknown model '{name_or_path}': not a shipped model ({', '.join(SHIPPED)}) "
                      "nor a checkpoint file or run folder")


def read_checkpoint(path: Path) -> dict:
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise ConfigError(f"cannot read model checkpoint ({type(exc).__name__}: {exc})", path=path) from None
    if not isinstance(ckpt, dict) or "model" not in ckpt or "task" not in ckpt:
        raise ConfigError("not a morphoscope checkpoint (needs 'task' and 'model')", path=path)
    return ckpt


def build_from_checkpoint(ckpt: dict, *, name: str = "model", path: Path | None = None,
                          device: str | torch.device = "cpu") -> ModelBundle:
    from morphoscope.config import parse_config

    task = ckpt["task"]
    cfg = parse_config(ckpt["config"])
    if task == "instance":
        from morphoscope.models.maskrcnn import build_maskrcnn

        model_cfg = cfg.model.model_copy(update={"pretrained": "none", "weights": None})
        model = build_maskrcnn(model_cfg, len(ckpt["class_names"]))
    else:
        import importlib

        builder = importlib.import_module(f"morphoscope.{ 'semantic' if task == 'semantic' else 'classify'}.model")
        model = builder.build_from_config(cfg, len(ckpt["class_names"]))
    state = {k: v.float() if v.is_floating_point() else v for k, v in ckpt["model"].items()}
    model.load_state_dict(state)
    device = torch.device(device)
    model.to(device).eval()
    return ModelBundle(name=name, task=task, model=model, class_names=list(ckpt["class_names"]),
                       config=ckpt["config"], normalize=ckpt.get("normalize", {"low": 1.0, "high": 99.8}),
                       metrics=ckpt.get("metrics", {}), path=path, device=device,
                       extra=ckpt.get("extra", {}))


def read_weights_file(path: Path) -> dict:
    """A local weights file -> state dict: a plain ``state_dict`` (e.g. torchvision's ImageNet
    file) or a morphoscope checkpoint (its ``model``). Errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError("weights file not found", path=path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise ConfigError(f"cannot read weights file ({type(exc).__name__}: {exc})", path=path) from None
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]  # a morphoscope checkpoint
    if not isinstance(state, dict):
        raise ConfigError("weights file holds no state dict", path=path)
    return state


def load_model(name_or_path: str | Path | None = None, *, device: str | torch.device = "cpu") -> ModelBundle:
    """Load a shipped model by name (default ``nuclei``), a checkpoint file or a run folder."""
    device = pick_device(device)
    name, path = resolve_model_path(name_or_path)
    return build_from_checkpoint(read_checkpoint(path), name=name, path=path, device=device)


def pick_device(device: str | torch.device | None) -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for but no CUDA GPU is available")
    return device


def list_models() -> list[dict]:
    """Cards of the shipped models (reads their checkpoint metadata)."""
    cards = []
    for name, fname in SHIPPED.items():
        path = WEIGHTS_DIR / fname
        if path.is_file():
            ckpt = read_checkpoint(path)
            cards.append({"name": name, "task": ckpt["task"], "classes": ckpt["class_names"],
                          "metrics": ckpt.get("metrics", {}), "path": str(path),
                          "backbone": ckpt["config"].get("model", {}).get("backbone")
                          or ckpt["config"].get("model", {}).get("encoder")})
    return cards


def save_checkpoint(path: Path, *, task: str, model: torch.nn.Module, config: dict, class_names,
                    normalize: dict, metrics: dict | None = None, half: bool = False, extra: dict | None = None,
                    **state) -> None:
    """Write a checkpoint atomically (``state``: optimizer, scheduler, epoch, ... for resuming)."""
    import io

    import numpy
    import torchvision

    from morphoscope import __version__
    from morphoscope.io.atomic import atomic_write

    sd = model.state_dict()
    if half:
        sd = {k: v.half() if v.is_floating_point() else v for k, v in sd.items()}
    ckpt = {"format": 1, "task": task, "config": config, "class_names": list(class_names),
            "normalize": normalize, "metrics": metrics or {}, "model": sd, "extra": extra or {},
            "versions": {"morphoscope": __version__, "torch": torch.__version__,
                         "torchvision": torchvision.__version__, "numpy": numpy.__version__},
            **state}
    buf = io.BytesIO()
    torch.save(ckpt, buf)
    with atomic_write(path) as fh:
        fh.write(buf.getvalue())
