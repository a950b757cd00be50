"""What every export format shares: the model, a real example input, PyTorch's reference
outputs, the comparison, and the card written into the exported file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from morphoscope.errors import InputError


@dataclass
class Example:
    """A real image, the network input the prediction engine makes of it and PyTorch's outputs."""

    name: str
    raw: np.ndarray  # the image as read, (Y, X) or (Y, X, C)
    input: np.ndarray  # (1, C, H, W) float32: Inference.prepare's window, batched
    stats: dict  # the normalisation statistics of the image
    reference: dict[str, np.ndarray]  # output name -> PyTorch's output


def load_bundle(model):
    from morphoscope.engine.bundle import ModelBundle
    from morphoscope.tasks import load_model

    if isinstance(model, ModelBundle):
        return model
    return load_model(model, device="cpu")


def default_image() -> Path:
    from morphoscope.samples import BBBC039

    return sorted((BBBC039 / "images").glob("*.tif"))[0]


def example(bundle, spec, image: str | Path | None = None) -> Example:
    """The check's input: ``image`` (default a bundled BBBC039 sample), normalised and prepared
    exactly as the prediction engine does for a window holding the whole image."""
    from morphoscope.engine.predictor import PlaneInput
    from morphoscope.io.images import read_image

    path = Path(image) if image is not None else default_image()
    raw = np.asarray(read_image(path))
    if raw.ndim not in (2, 3):
        raise InputError(f"the example image must be one 2D plane (Y, X[, C]), got shape {raw.shape}", path=path)
    if min(raw.shape[:2]) < spec.min_side:
        raise InputError(f"the example image must be at least {spec.min_side} px on each side", path=path)
    inf = bundle.task.inference(bundle)
    stats = inf.statistics(PlaneInput(path.name, raw).sample())
    x = np.ascontiguousarray(inf.prepare(raw, stats)[None], dtype=np.float32)
    return Example(name=path.name, raw=raw, input=x, stats=stats, reference=run_torch(spec.module, x, spec.outputs))


def as_outputs(out, names) -> dict[str, np.ndarray]:
    """A module's output (a tensor, or a tuple of them) -> {name: array}."""
    if isinstance(out, (torch.Tensor, np.ndarray)):
        out = (out,)
    if len(out) != len(names):
        raise RuntimeError(f"expected {len(names)} outputs ({', '.join(names)}), got {len(out)}")
    return {n: (o.detach().cpu().numpy() if isinstance(o, torch.Tensor) else np.asarray(o)) for n, o in zip(names, out)}


@torch.inference_mode()
def run_torch(module, x: np.ndarray, names) -> dict[str, np.ndarray]:
    return as_outputs(module(torch.from_numpy(x)), names)


def compare(result, reference: dict[str, np.ndarray], got: dict[str, np.ndarray]) -> None:
    """Fill ``result.max_abs_diff`` (and ``counts`` where outputs hold one row per object: the
    first rows, the highest-scoring detections, are compared)."""
    for name, ref in reference.items():
        out = np.asarray(got[name])
        if out.shape != ref.shape:
            if out.shape[1:] != ref.shape[1:]:
                raise RuntimeError(f"output '{name}' has shape {out.shape}, PyTorch's {ref.shape}")
            result.counts[name] = (len(ref), len(out))
            n = min(len(ref), len(out))
            ref, out = ref[:n], out[:n]
        diff = np.abs(out.astype(np.float64) - ref.astype(np.float64))
        result.max_abs_diff[name] = float(diff.max()) if diff.size else 0.0
        scaled = diff / np.maximum(1.0, np.abs(ref.astype(np.float64)))
        result.scaled_diff[name] = float(scaled.max()) if scaled.size else 0.0
    if any(a != b for a, b in result.counts.values()):
        result.notes.append("the number of detections differs: " + ", ".join(
            f"{k} PyTorch {a} / exported {b}" for k, (a, b) in result.counts.items()))


def worst(result, reference) -> tuple[str, float]:
    """The output that differs most (relative to max(1, |value|)) and by how much; a different
    number of detections counts as infinitely different."""
    if any(a != b for a, b in result.counts.values()):
        name = next(k for k, (a, b) in result.counts.items() if a != b)
        return name, float("inf")
    if not result.scaled_diff:
        return "", 0.0
    name = max(result.scaled_diff, key=result.scaled_diff.get)
    return name, result.scaled_diff[name]


def card(bundle, spec) -> dict:
    """What an exported file carries about its model (JSON-able; no server paths)."""
    from morphoscope import __version__

    d = bundle.describe()
    return {"name": d["name"], "task": d["task"], "classes": d["classes"], "backbone": d["backbone"],
            "trained_on": d["trained_on"], "description": d["description"], "metrics": bundle.metrics,
            "normalize": bundle.normalize, "inputs_outputs": spec.doc, "outputs": list(spec.outputs),
            "exported_by": f"morphoscope {__version__}", "torch": torch.__version__.split("+")[0]}


def exported_network(task: str, config: dict, class_names: list[str], normalize: dict | None = None,
                     extra: dict | None = None) -> torch.nn.Module:
    """The export module of a model described by its checkpoint fields, with random weights:
    the architecture of bioimage.io's ``pytorch_state_dict`` weights (load the state dict into
    it)."""
    from morphoscope.engine.bundle import ModelBundle
    from morphoscope.tasks import get_task, parse_config

    t = get_task(task)
    cfg = parse_config(config)
    bundle = ModelBundle(name="exported", task=t, model=t.build_model(cfg, list(class_names)),
                         class_names=list(class_names), cfg=cfg, normalize=dict(normalize or {}),
                         extra=dict(extra or {}))
    return t.export_module(bundle).module
