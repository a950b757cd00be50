"""``task: semantic`` — per-pixel classification (FPN / U-Net through segmentation-models-pytorch)
of 2D images and 3D+t stacks, with instances by connected components or seeded watershed.

A config looks like ``configs/bbbc039_fpn_r18.yaml``. Relative paths resolve against the config
file's folder. ``tune.space`` declares the Optuna search space for ``morphoscope tune``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from morphoscope.config import AugmentConfig, InferenceConfig, NormalizeConfig, Strict, TrainConfig, TuneConfig


class SemanticNormalizeConfig(NormalizeConfig):
    """Percentile normalisation; ``per: stack`` takes the percentiles over a whole stack."""

    per: Literal["image", "stack"] = "image"


class SemanticDataConfig(Strict):
    train: Path
    val: Path | None = None
    classes: list[str] = Field(["nucleus"], min_length=1,
                               description="foreground class names; class k (1..K) is classes[k-1], 0 is background")
    labels: Literal["instance", "class"] = Field(
        "instance", description="instance: label values are object ids (all of class 1, or of the classes in "
                                "labels/classes.json); class: label values are class ids 0..K")
    axes: str | None = Field(None, description="axes of stack files when their metadata does not say (e.g. TZYX)")
    skip_empty_slices: bool = Field(False, description="drop the label-free 2D slices at both ends of each stack axis")
    normalize: SemanticNormalizeConfig = SemanticNormalizeConfig()
    fraction: float = Field(1.0, gt=0, le=1, description="use this fraction of the training images (tuning)")

    @field_validator("axes")
    @classmethod
    def _axes(cls, v):
        if v is None:
            return v
        from morphoscope.io.stacks import validate_axes

        return validate_axes(v)


class SemanticModelConfig(Strict):
    architecture: Literal["fpn", "unet"] = "fpn"
    encoder: Literal["resnet18", "resnet34"] = "resnet18"
    encoder_weights: Literal["none", "imagenet"] = Field(
        "none", description="imagenet needs weights: a local file (never downloaded)")
    weights: Path | None = Field(None, description="offline encoder (or full model) state dict file")
    in_channels: int = Field(1, ge=1, le=8)
    output: Literal["mask", "boundary", "distance"] = Field(
        "boundary", description="extra head for touching objects: boundary probability or normalised distance")
    boundary_width: int = Field(2, ge=1, le=8, description="boundary target width in pixels (inside each object)")
    decoder_channels: int = Field(128, ge=16, description="FPN pyramid channels / first U-Net decoder width")
    dropout: float = Field(0.0, ge=0, lt=1)


class LossConfig(Strict):
    ce: float = Field(1.0, ge=0, description="cross-entropy weight (classes)")
    dice: float = Field(1.0, ge=0, description="soft Dice weight (foreground classes)")
    aux: float = Field(1.0, ge=0, description="boundary BCE / distance L1 weight")
    class_weights: list[float] | None = Field(None, description="cross-entropy weight per class, background first")


class PostprocessConfig(Strict):
    method: Literal["components", "watershed"] = "watershed"
    threshold: float = Field(0.5, gt=0, lt=1, description="foreground probability threshold")
    seed_threshold: float = Field(0.5, gt=0, lt=1, description="seed: boundary prob below / distance above this")
    min_size: int = Field(10, ge=0, description="objects (and seeds) smaller than this (pixels) are removed")


class SemanticConfig(Strict):
    """``task: semantic`` — FPN/U-Net pixel classification, instances by watershed."""

    task: Literal["semantic"] = "semantic"
    name: str = "semantic"
    data: SemanticDataConfig
    model: SemanticModelConfig = SemanticModelConfig()
    loss: LossConfig = LossConfig()
    train: TrainConfig = TrainConfig(optimizer="adamw", lr=1e-3, warmup_iters=50, batch_size=8)
    augment: AugmentConfig = AugmentConfig()
    postprocess: PostprocessConfig = PostprocessConfig()
    inference: InferenceConfig = InferenceConfig()
    tune: TuneConfig = TuneConfig()

    @model_validator(mode="after")
    def _check(self):
        if self.loss.class_weights is not None and len(self.loss.class_weights) != len(self.data.classes) + 1:
            raise ValueError(f"loss.class_weights needs {len(self.data.classes) + 1} values "
                             "(background + each class)")
        if self.model.encoder_weights == "imagenet" and self.model.weights is None:
            raise ValueError("model.encoder_weights: imagenet needs model.weights: a local weights file "
                             "(weights are never downloaded)")
        return self

    @property
    def num_classes(self) -> int:
        return len(self.data.classes)

