"""Run configuration: a YAML file validated by pydantic, one schema per ``task``.

Relative paths in a config file are resolved against the folder the file is in, so a config runs
the same from any working directory. Later tasks (``semantic``, ``classify``) register their own
schema with :func:`register_task`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from morphoscope.errors import ConfigError


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class NormalizeConfig(Strict):
    """Per-image percentile normalisation: ``low``/``high`` percentiles map to 0/1."""

    low: float = Field(1.0, ge=0, lt=100)
    high: float = Field(99.8, gt=0, le=100)

    @model_validator(mode="after")
    def _order(self):
        if self.low >= self.high:
            raise ValueError(f"normalize.low ({self.low}) must be below normalize.high ({self.high})")
        return self


class InstanceDataConfig(Strict):
    train: Path
    val: Path | None = None
    class_name: str = "nucleus"  # for layouts without class names (label images, Kaggle masks)
    normalize: NormalizeConfig = NormalizeConfig()
    min_object_area: int = Field(4, ge=0, description="objects smaller than this (pixels) after cropping are dropped")


class AugmentConfig(Strict):
    hflip: bool = True
    vflip: bool = True
    rot90: bool = True
    scale: tuple[float, float] = (0.8, 1.25)
    intensity: float = Field(0.2, ge=0, description="max relative brightness/contrast change")
    gamma: tuple[float, float] = (0.8, 1.25)
    blur_sigma: tuple[float, float] = (0.0, 1.0)
    blur_prob: float = Field(0.2, ge=0, le=1)
    noise_std: float = Field(0.03, ge=0, description="max std of added Gaussian noise (normalised units)")


class MaskRCNNModelConfig(Strict):
    architecture: Literal["maskrcnn"] = "maskrcnn"
    backbone: Literal["resnet18", "resnet34", "resnet50", "resnet101"] = "resnet18"
    pretrained: Literal["none", "imagenet", "coco"] = "none"
    weights: Path | None = Field(None, description="local weights file (offline path); backbone-only or full model state dict")
    trainable_layers: int = Field(5, ge=0, le=5)
    norm: Literal["batch", "frozen_batch", "group"] = "batch"
    scale: float = Field(1.0, gt=0, description="images are resized by this factor before the network (e.g. 2 for very small objects)")
    anchor_sizes: list[int] = [8, 16, 32, 64, 128]
    aspect_ratios: list[float] = [0.5, 1.0, 2.0]
    detections_per_image: int = Field(1000, ge=1)
    rpn_pre_nms_top_n_test: int = 3000
    rpn_post_nms_top_n_test: int = 2000
    rpn_pre_nms_top_n_train: int = 3000
    rpn_post_nms_top_n_train: int = 2000
    box_batch_size_per_image: int = 256
    fpn_channels: int = Field(256, ge=16, description="FPN width; 128 makes CPU training ~2x faster")
    box_head_size: int = Field(1024, ge=16, description="hidden size of the two-layer box head")
    mask_head_layers: list[int] = Field([256, 256, 256, 256], min_length=1)
    box_score_thresh: float = Field(0.05, ge=0, le=1)
    box_nms_thresh: float = Field(0.4, gt=0, le=1)
    mask_threshold: float = Field(0.5, gt=0, lt=1)

    @field_validator("anchor_sizes")
    @classmethod
    def _five_levels(cls, v):
        if len(v) != 5:
            raise ValueError("anchor_sizes needs one size per FPN level: 5 values")
        return v


class TrainConfig(Strict):
    epochs: int = Field(30, ge=1)
    iters_per_epoch: int | None = Field(None, ge=1, description="default: one crop per training image")
    batch_size: int = Field(4, ge=1)
    crop_size: int | None = Field(256, ge=32, description="random square crops; null trains on whole images")
    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: float = Field(0.02, gt=0)
    momentum: float = 0.9
    weight_decay: float = Field(1e-4, ge=0)
    warmup_iters: int = Field(200, ge=0)
    min_lr_ratio: float = Field(0.01, ge=0, le=1, description="cosine schedule ends at lr * min_lr_ratio")
    grad_clip: float | None = Field(10.0, gt=0)
    amp: bool = True  # used on CUDA only
    workers: int = Field(2, ge=0)
    seed: int = 0
    val_every: int = Field(1, ge=1)
    val_max_images: int | None = Field(None, ge=1)
    checkpoint_every: int = Field(1, ge=1)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int | None = Field(None, ge=1)


class InstanceConfig(Strict):
    """``task: instance`` — Mask R-CNN instance segmentation."""

    task: Literal["instance"] = "instance"
    name: str = "instance"
    data: InstanceDataConfig
    model: MaskRCNNModelConfig = MaskRCNNModelConfig()
    train: TrainConfig = TrainConfig()
    augment: AugmentConfig = AugmentConfig()


TASKS: dict[str, type[BaseModel]] = {"instance": InstanceConfig}


def register_task(name: str, schema: type[BaseModel]) -> None:
    TASKS[name] = schema


def _resolve_paths(obj, base: Path):
    if isinstance(obj, BaseModel):
        for name in type(obj).model_fields:
            val = getattr(obj, name)
            if isinstance(val, Path) and not val.is_absolute():
                object.__setattr__(obj, name, (base / val).resolve())
            elif isinstance(val, (BaseModel, list)):
                _resolve_paths(val, base)
    elif isinstance(obj, list):
        for item in obj:
            _resolve_paths(item, base)
    return obj


def parse_config(data: dict, *, base: Path | None = None, source: str | Path | None = None):
    """Validate a config dict; ``base`` resolves relative paths; errors name ``source``."""
    if not isinstance(data, dict):
        raise ConfigError("config must be a mapping of settings", path=source)
    task = data.get("task", "instance")
    if task not in TASKS:
        _load_task_modules()
    if task not in TASKS:
        raise ConfigError(f"unknown task '{task}' (known: {', '.join(sorted(TASKS))})", path=source)
    try:
        cfg = TASKS[task].model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"])
            lines.append(f"  {loc}: {err['msg']}")
        raise ConfigError("invalid config:\n" + "\n".join(lines), path=source) from None
    return _resolve_paths(cfg, base) if base is not None else cfg


def load_config(path: str | Path):
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError("config file not found", path=path) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"not valid YAML: {exc}", path=path) from None
    return parse_config(data, base=path.resolve().parent, source=path)


def config_to_dict(cfg: BaseModel) -> dict:
    return cfg.model_dump(mode="json")


def _load_task_modules() -> None:
    """Import the modules that register the other tasks' schemas (they may not all exist)."""
    import importlib

    for mod in ("morphoscope.semantic.config", "morphoscope.classify.config"):
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError:
            pass
