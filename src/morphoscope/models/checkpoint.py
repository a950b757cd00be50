"""Checkpoints and weights files, read without running any code they might contain.

A checkpoint holds everything needed to use a model without its training config file: ``task``,
``config`` (the validated config as JSON-like data), ``class_names``, ``normalize``, ``model``
(state dict), ``metrics`` (validation), ``extra`` (task settings such as tuned thresholds),
``card`` (what the model was trained on, for people) and ``versions`` (strings). Training runs
add the optimizer/scheduler state to ``checkpoint_last.pt`` for ``--resume``.

Every file is read with ``torch.load(weights_only=True)``: tensors, numbers, strings, lists and
dicts only. A file carrying pickled Python objects (which could run code when loaded) is refused.
Shipped models are ``NAME.safetensors`` (half-precision weights) plus ``NAME.json`` (the rest).
"""

from __future__ import annotations

import io
import json
import math
import pickle
from pathlib import Path

import torch

from morphoscope.errors import ConfigError
from morphoscope.io.atomic import atomic_write

WEIGHTS_DIR = Path(__file__).parent / "weights"
DEFAULT_MODEL = "nuclei"
#: shipped model name -> file stem in WEIGHTS_DIR (``.safetensors`` + ``.json``): ``nuclei`` is
#: the generalist semantic FPN (fluorescence, brightfield, H&E; any scale: docs/models.md),
#: ``nuclei-maskrcnn`` the earlier BBBC039-only Mask R-CNN
SHIPPED = {"nuclei": "nuclei_fpn_r18_generalist", "nuclei-maskrcnn": "nuclei_maskrcnn_r18"}
FORMAT = 2


def _plain(value):
    """JSON-like copy of ``value`` (numpy scalars -> Python numbers, paths -> str, tuples -> lists)."""
    def default(o):
        if hasattr(o, "item"):
            return o.item()
        if hasattr(o, "tolist"):
            return o.tolist()
        return str(o)

    def fix_nan(o):  # JSON has no NaN; keep them as None
        if isinstance(o, float) and not math.isfinite(o):
            return None
        if isinstance(o, dict):
            return {k: fix_nan(v) for k, v in o.items()}
        if isinstance(o, list):
            return [fix_nan(v) for v in o]
        return o

    return fix_nan(json.loads(json.dumps(value, default=default)))


def versions() -> dict[str, str]:
    import numpy
    import torchvision

    from morphoscope import __version__

    return {"morphoscope": str(__version__), "torch": str(torch.__version__),
            "torchvision": str(torchvision.__version__), "numpy": str(numpy.__version__)}


def resolve_model_path(name_or_path: str | Path | None) -> tuple[str, Path]:
    """A shipped model's name, a checkpoint file or a training run folder -> (name, file)."""
    name_or_path = DEFAULT_MODEL if name_or_path is None else name_or_path
    if str(name_or_path) in SHIPPED:
        path = WEIGHTS_DIR / f"{SHIPPED[str(name_or_path)]}.safetensors"
        if not path.is_file():
            raise ConfigError(f"shipped model '{name_or_path}' is missing from the installation",
                              path=path.name)
        return str(name_or_path), path
    p = Path(name_or_path)
    if p.is_dir():  # a training run folder: its best checkpoint
        for cand in ("model_best.pt", "checkpoint_last.pt"):
            if (p / cand).is_file():
                return p.name, p / cand
        raise ConfigError("run folder has no model_best.pt or checkpoint_last.pt", path=p)
    if p.is_file():
        return p.stem, p
    raise ConfigError(f"unknown model '{name_or_path}': not a shipped model ({', '.join(SHIPPED)}) "
                      "nor a checkpoint file or run folder")


def _torch_load(path: Path, what: str):
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        if "GLOBAL" in text or "global" in text:  # a class or function would be imported and run
            found = next((ln.strip() for ln in text.splitlines() if "GLOBAL" in ln or "global" in ln), "")
            raise ConfigError(f"refusing to load this {what}: it holds pickled Python objects, which "
                              "could run code when loaded; only tensors, numbers, strings, lists and "
                              f"dicts are accepted ({found})", path=path) from None
        raise ConfigError(f"cannot read {what} (not a PyTorch file, or a damaged one)", path=path) from None
    except Exception as exc:
        raise ConfigError(f"cannot read {what} ({type(exc).__name__}: {exc})", path=path) from None


def read_checkpoint(path: str | Path) -> dict:
    """A checkpoint file (``.pt``, or a shipped ``.safetensors`` with its ``.json``) as a dict."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError("model checkpoint not found", path=path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        meta_path = path.with_suffix(".json")
        try:
            meta = json.loads(meta_path.read_text())
            state = load_file(str(path))
        except FileNotFoundError:
            raise ConfigError("a .safetensors model needs its .json card beside it", path=meta_path) from None
        except Exception as exc:
            raise ConfigError(f"cannot read model ({type(exc).__name__}: {exc})", path=path) from None
        ckpt = {**meta, "model": state}
    else:
        ckpt = _torch_load(path, "model checkpoint")
    if not isinstance(ckpt, dict) or "model" not in ckpt or "task" not in ckpt:
        raise ConfigError("not a morphoscope checkpoint (needs 'task' and 'model')", path=path)
    return ckpt


def read_weights_file(path: str | Path) -> dict:
    """A local weights file -> state dict: a plain ``state_dict`` (e.g. torchvision's ImageNet
    file), a ``.safetensors`` file or a morphoscope checkpoint (its ``model``)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError("weights file not found", path=path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as exc:
            raise ConfigError(f"cannot read weights file ({type(exc).__name__}: {exc})", path=path) from None
    state = _torch_load(path, "weights file")
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]  # a morphoscope checkpoint
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError("weights file holds no state dict", path=path)
    return state


def save_checkpoint(path: str | Path, *, task: str, model: torch.nn.Module | dict, config: dict,
                    class_names, normalize: dict, metrics: dict | None = None, extra: dict | None = None,
                    card: dict | None = None, half: bool = False, **training_state) -> None:
    """Write a checkpoint atomically; ``training_state`` (optimizer, scheduler, epoch, ...) makes
    it resumable. Everything but tensors is stored as plain data so it loads with
    ``weights_only=True``."""
    sd = model.state_dict() if isinstance(model, torch.nn.Module) else dict(model)
    if half:
        sd = {k: v.half() if v.is_floating_point() else v for k, v in sd.items()}
    ckpt = {"format": FORMAT, "task": str(task), "config": _plain(config),
            "class_names": [str(c) for c in class_names], "normalize": _plain(normalize),
            "metrics": _plain(metrics or {}), "extra": _plain(extra or {}), "card": _plain(card or {}),
            "versions": versions(), "model": sd}
    for key, value in training_state.items():
        ckpt[key] = value if key in ("optimizer", "scheduler", "scaler") else _plain(value)
    buf = io.BytesIO()
    torch.save(ckpt, buf)
    with atomic_write(path) as fh:
        fh.write(buf.getvalue())


def save_shipped(stem_path: str | Path, ckpt: dict, *, half: bool = True) -> tuple[Path, Path]:
    """Write ``ckpt`` as ``STEM.safetensors`` (weights) + ``STEM.json`` (everything else)."""
    from safetensors.torch import save

    stem_path = Path(stem_path)
    state = {k: (v.half() if half and v.is_floating_point() else v).contiguous() for k, v in ckpt["model"].items()}
    meta = {k: v for k, v in ckpt.items() if k not in ("model", "optimizer", "scheduler", "scaler", "history")}
    meta = _plain({**meta, "format": FORMAT, "versions": meta.get("versions") or versions()})
    weights, card = stem_path.with_suffix(".safetensors"), stem_path.with_suffix(".json")
    with atomic_write(weights) as fh:
        fh.write(save(state))
    with atomic_write(card, mode="w") as fh:
        json.dump(meta, fh, indent=1)
        fh.write("\n")
    return weights, card


def pick_device(device: str | torch.device | None) -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except RuntimeError:
        raise ConfigError(f"unknown device '{device}' (cpu, cuda, cuda:N or auto)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for but no CUDA GPU is available")
    return device
