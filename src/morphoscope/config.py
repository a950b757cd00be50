"""Run configuration: YAML files validated by pydantic, and the settings sections every task
shares (normalisation, augmentation, training). Each task's own schema lives in its folder under
``morphoscope/tasks``; :func:`morphoscope.tasks.load_config` picks it by the ``task:`` key.

Relative paths in a config file are resolved against the folder the file is in, so a config runs
the same from any working directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

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


class InferenceConfig(Strict):
    """How the prediction engine cuts and batches images (all tasks): windows of at most
    ``block_size`` pixels with ``block_margin`` pixels of context on each side; an object narrower
    than the margin is never cut at a block border."""

    block_size: int = Field(1024, ge=64, description="largest window the network sees at once (pixels)")
    block_margin: int = Field(64, ge=0, description="context around each block's core (pixels); keep above the object size")
    batch_size: int = Field(4, ge=1, description="windows per network call (raise on a GPU)")


class ParamSpec(Strict):
    """One tuned setting: ``low``/``high`` (``log``, int with ``type: int``) or ``choices``."""

    type: Literal["float", "int", "categorical"] | None = None
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: list[Any] | None = None

    @model_validator(mode="after")
    def _kind(self):
        if self.choices is not None:
            if not self.choices:
                raise ValueError("choices must not be empty")
            self.type = "categorical"
        elif self.low is None or self.high is None:
            raise ValueError("a tuned setting needs low and high, or choices")
        elif self.low > self.high:
            raise ValueError(f"low ({self.low}) is above high ({self.high})")
        elif self.type is None:
            self.type = "float"
        return self


class TuneConfig(Strict):
    metric: str = Field("score", description="validation quantity to maximise: score (what picks model_best.pt) "
                                             "or any validation metric, e.g. f1@0.5, iou, macro_f1")
    epochs: int | None = Field(None, ge=1, description="epochs per trial (default: train.epochs)")
    fraction: float = Field(1.0, gt=0, le=1, description="fraction of training images per trial")
    val_max_images: int | None = Field(None, ge=1)
    space: dict[str, ParamSpec] = Field(default_factory=dict,
                                        description="dotted setting -> range, e.g. train.lr: {low: 1e-4, high: 1e-2, log: true}")
    seed: int = 0


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


def validate_config(schema: type[BaseModel], data: dict, *, base: Path | None = None,
                    source: str | Path | None = None):
    """Validate ``data`` against ``schema``; ``base`` resolves relative paths; errors name
    ``source`` and every wrong setting."""
    try:
        cfg = schema.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"])
            lines.append(f"  {loc}: {err['msg']}")
        raise ConfigError("invalid config:\n" + "\n".join(lines), path=source) from None
    return _resolve_paths(cfg, base) if base is not None else cfg


def read_yaml(path: str | Path) -> dict:
    """A YAML config file as a mapping; one-line errors name the file."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError("config file not found", path=path) from None
    except IsADirectoryError:
        raise ConfigError("config path is a folder, not a YAML file", path=path) from None
    except UnicodeDecodeError:
        raise ConfigError("not a text (YAML) file", path=path) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"not valid YAML: {' '.join(str(exc).split())}", path=path) from None
    if not isinstance(data, dict):
        raise ConfigError("config must be a mapping of settings (key: value lines)", path=path)
    return data


def config_to_dict(cfg: BaseModel) -> dict:
    return cfg.model_dump(mode="json")
