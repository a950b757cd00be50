"""The task protocol: what a model family provides so that the one training loop and the one
prediction engine can run it. Each task is one folder under ``morphoscope/tasks`` with a
:class:`Task` subclass; see docs/architecture.md.

A task provides:

* ``name`` and ``config_schema`` (pydantic; the YAML ``task:`` value selects it),
* :meth:`Task.build_model` — the network of a config, without weights,
* :meth:`Task.training_plan` — datasets, loss, validation and what else the loop needs,
* :meth:`Task.inference` — an :class:`Inference`: how to prepare a window of an image, run the
  network on a batch of windows, and turn the outputs into objects or class scores.

Everything else (tiling, batching, devices, merging, writing files, checkpoints, resuming,
torchrun) is the engine's and the same for every task.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch

from morphoscope.engine.objects import Objects


# --------------------------------------------------------------------------------------------
# prediction
# --------------------------------------------------------------------------------------------


@dataclass
class BlockOutput:
    """What the network made of one window: objects in window coordinates, dense maps
    ``(channels, h, w)`` (kept only when asked for), or class scores for the whole image."""

    objects: Objects | None = None
    maps: np.ndarray | None = None
    class_scores: np.ndarray | None = None
    capped: bool = False  # the model hit its cap of detections in this window
    #: small per-window numbers the task aggregates itself per plane (e.g. object-size votes,
    #: feature statistics), handed to :meth:`Inference.object_diameter` and :meth:`Inference.finish`
    summary: dict | None = None


class Inference:
    """A model bound to its prediction settings. Subclasses set the attributes and implement
    :meth:`prepare` and :meth:`run`.

    The engine calls, per plane: :meth:`statistics` on a bounded sample of the plane, then for
    each window :meth:`prepare`, then :meth:`run` on batches of prepared windows (from one or
    several planes), then :meth:`finish` with the merged objects.
    """

    #: windows of at most ``block_size`` pixels with ``block_margin`` pixels of context; a task
    #: that looks at whole images (classification) sets ``tiled = False``
    tiled: bool = True
    block_size: int = 1024
    block_margin: int = 64
    #: windows start on multiples of this (the network's coarsest stride: shift invariance)
    block_align: int = 32
    batch_size: int = 1
    #: smallest image side the model can take
    min_side: int = 8
    #: what the default threshold thresholds: "score" (objects), "probability" (maps) or None
    threshold_kind: str | None = "score"
    threshold: float | None = 0.5
    #: keep dense maps in the result (the web app's live threshold); costs memory
    keep_maps: bool = False
    #: normalise with statistics of a whole stack rather than of each plane
    per_stack: bool = False
    #: the object diameter (pixels) the model works at (``extra.diameter`` of its checkpoint), and
    #: the pixel size (µm) of its training images when known: the engine rescales a plane to it
    #: from a given diameter or pixel size, or from an estimate (:meth:`object_diameter`)
    diameter: float | None = None
    pixel_size: float | None = None

    def __init__(self, bundle):
        self.bundle = bundle
        extra = getattr(bundle, "extra", None) or {}
        self.diameter = float(extra["diameter"]) if extra.get("diameter") else None
        self.pixel_size = float(extra["pixel_size"]) if extra.get("pixel_size") else None

    def use_windows(self, defaults, *, block_size=None, block_margin=None, batch_size=None) -> None:
        """Window settings from the options given, else from the model's ``inference`` config
        section (``defaults``); 0 is a value here, not "unset" (the engine refuses it)."""
        self.block_size = int(defaults.block_size if block_size is None else block_size)
        self.block_margin = int(defaults.block_margin if block_margin is None else block_margin)
        self.batch_size = int(defaults.batch_size if batch_size is None else batch_size)

    @property
    def device(self) -> torch.device:
        return self.bundle.device

    def statistics(self, sample: np.ndarray) -> dict:
        """Normalisation statistics of a plane from a bounded sample of its pixels (native
        dtype, ``(h, w)`` or ``(h, w, C)``). Default: the model's percentiles."""
        norm = self.bundle.normalize
        lo, hi = norm.get("low", 1.0), norm.get("high", 99.8)
        x = sample.astype(np.float32, copy=False)
        p_lo, p_hi = (float(v) for v in np.percentile(x, [lo, hi]))
        return {"low": p_lo, "high": p_hi}

    def prepare(self, window: np.ndarray, stats: dict) -> np.ndarray:
        """A window of the plane (native dtype) -> the network's float32 ``(C, h, w)`` input."""
        raise NotImplementedError

    def run(self, batch: list[np.ndarray]) -> list[BlockOutput]:
        """The network on prepared windows (sizes may differ) -> one output per window."""
        raise NotImplementedError

    def finish(self, objects: Objects | None, maps: np.ndarray | None,
               class_scores: np.ndarray | None) -> dict:
        """Fields of the :class:`~morphoscope.engine.result.ImageResult` beyond the merged
        objects/maps/scores (e.g. ``decided`` classes, ``warnings``). Default: none. A task whose
        windows carry a ``summary`` gets them all as the keyword argument ``summaries``."""
        return {}

    def object_diameter(self, objects: Objects | None, summaries: list[dict]) -> float | None:
        """The median object diameter (pixels of the plane the network saw) of one plane's
        prediction, for the automatic scale; None when it cannot tell (no objects). Default: the
        median equivalent diameter of the objects at the default threshold."""
        if objects is None or not len(objects):
            return None
        if self.threshold_kind == "score" and self.threshold is not None:
            objects = objects.above(self.threshold)
        a = objects.areas
        a = a[a > 0]
        return float(np.median(2 * np.sqrt(a / np.pi))) if len(a) else None

    def remake(self, maps: np.ndarray, threshold: float) -> Objects:
        """Objects from kept maps at another probability threshold (tasks with maps)."""
        raise NotImplementedError

    def merge_stack(self, results: list, z_spacing_ratio: float | None) -> list:
        """After all planes of one input are predicted, once per time point: ``results`` are the
        :class:`~morphoscope.engine.result.ImageResult` of its Z planes in Z order (one result
        for an input without Z), ``z_spacing_ratio`` the Z spacing over the pixel size (None when
        unknown). Returns the results to write: these (2D objects per plane; the default), or one
        3D result whose objects have shape ``(Z, H, W)`` — one label per object through Z (see
        :mod:`morphoscope.engine.volume` for the helpers: stacked maps, IoU stitching)."""
        return results

    def settings(self) -> dict:
        """The settings recorded with the outputs (predictions.json ``info``)."""
        return {"threshold": self.threshold, "threshold_kind": self.threshold_kind,
                "block_size": self.block_size, "block_margin": self.block_margin,
                "batch_size": self.batch_size}


# --------------------------------------------------------------------------------------------
# export (morphoscope.export: TorchScript, ONNX, bioimage.io)
# --------------------------------------------------------------------------------------------


@dataclass
class ExportSpec:
    """A task's network with its fixed pre/post-processing, for :mod:`morphoscope.export`.

    ``module`` (eval mode, CPU) takes one float32 tensor ``(B, C, H, W)``: the windows that
    :meth:`Inference.prepare` makes, stacked (normalisation stays outside: it needs statistics
    of the whole plane). It must compile with ``torch.jit.script`` and trace for ONNX.
    """

    module: torch.nn.Module
    outputs: tuple[str, ...]
    #: what the input and each output hold (written into exported model cards)
    doc: str
    input_name: str = "image"
    #: the input's first axis may be larger than 1 (else exactly one image per call)
    batch: bool = True
    #: the first output is a per-pixel map ``(B, K, H, W)`` the size of the input (bioimage.io)
    dense: bool = False
    #: names of the K channels of a dense output
    channels: list[str] = field(default_factory=list)
    #: smallest input side, and input sides must be a multiple of ``step`` (after min_side)
    min_side: int = 32
    step: int = 1
    #: the input has a fixed size ``(H, W)`` (e.g. a classifier's image_size), else None
    fixed_size: tuple[int, int] | None = None


# --------------------------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------------------------


@dataclass
class Validation:
    """Validation of one epoch: ``metrics`` (logged), ``score`` (higher is better; picks
    ``model_best.pt``) and ``extra`` stored in that checkpoint (e.g. tuned thresholds)."""

    metrics: dict
    score: float
    extra: dict = field(default_factory=dict)


@dataclass
class TrainingPlan:
    """What a task hands the training loop.

    ``dataset`` has ``set_epoch(epoch)`` and gives each item from (seed, epoch, index) alone, so
    resumed runs see the same data. ``loss(model, batch, device)`` returns the loss terms of a
    batch. ``validate(model, device)`` scores the model (None: no validation data).
    """

    config: Any  # the config as trained (a task may fill in values learnt from the data)
    class_names: list[str]
    normalize: dict
    dataset: torch.utils.data.Dataset
    loss: Callable[[torch.nn.Module, Any, torch.device], dict]
    iters_per_epoch: int
    collate: Callable | None = None
    validate: Callable[[torch.nn.Module, torch.device], Validation] | None = None
    extra: dict = field(default_factory=dict)  # stored in every checkpoint (task settings)
    files: dict[str, str] = field(default_factory=dict)  # written into the run folder once
    optimizer: Callable[[torch.nn.Module], torch.optim.Optimizer] | None = None
    lr_factor: Callable[[int], float] | None = None  # per iteration; default warm-up + cosine
    #: called at the start of each epoch; returns True when the set of trained parameters
    #: changed (freeze -> unfreeze), so the loop re-wraps the model for torchrun
    on_epoch: Callable[[torch.nn.Module, int], bool] | None = None
    #: what to note about an epoch in ``history.jsonl`` (e.g. a classifier's training phase)
    epoch_info: Callable[[int], dict] | None = None
    nonfinite_hint: str = "lower train.lr, raise train.warmup_iters, or check the annotations"


class Task:
    """Base class of a task (one folder under ``morphoscope/tasks``)."""

    name: ClassVar[str]
    config_schema: ClassVar[type]
    description: ClassVar[str] = ""
    #: what its results hold: "objects" (instances) or "classes" (whole-image class scores)
    result_kind: ClassVar[str] = "objects"

    def build_model(self, cfg, class_names: list[str]) -> torch.nn.Module:
        """The network of ``cfg`` with random weights (checkpoints are loaded into it)."""
        raise NotImplementedError

    def training_plan(self, cfg, *, seed: int, world: int) -> TrainingPlan:
        raise NotImplementedError

    def initial_model(self, cfg, class_names: list[str]) -> torch.nn.Module:
        """The network to start training from: :meth:`build_model` plus pretrained/offline
        weights when the config asks for them. Default: random weights."""
        return self.build_model(cfg, class_names)

    def inference(self, bundle, **options) -> Inference:
        raise NotImplementedError

    def export_module(self, bundle) -> ExportSpec:
        """The network of ``bundle`` with fixed pre/post-processing for export (TorchScript,
        ONNX, bioimage.io). Default: this task has none."""
        from morphoscope.errors import ConfigError

        raise ConfigError(f"models of task '{self.name}' cannot be exported yet")

    def predict_options(self) -> dict[str, str]:
        """Prediction options this task takes beyond the common ones: {name: help}."""
        return {}

    def input_groups(self, bundle, paths) -> list[tuple[str, list]]:
        """Input files grouped into images ``(name, files)``. Default: one image per file, named
        by its stem. (A classifier may stack per-channel files ``X_green.png`` ... into ``X``.)"""
        return [(p.stem, [p]) for p in paths]

    def read_group(self, bundle, name: str, files: list):
        """A group of several files as one 2D image, or None to read it as an image/stack file."""
        return None
