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
    """Percentile normalisation; ``per: stack`` takes the percentiles over a whole stack;
    ``per_channel`` stretches each colour channel on its own (a white balance for stains)."""

    per: Literal["image", "stack"] = "image"
    per_channel: bool = False


class DataSource(Strict):
    """One dataset of a training or validation set: a folder (any layout :func:`list_samples`
    reads), optionally restricted to the samples of a split list, with a group per sample (e.g.
    the imaging modality) for balanced sampling and per-group validation scores."""

    path: Path
    split: Path | None = Field(None, description="split list file: one sample name per line")
    group: str | None = Field(None, description="group of every sample of this source (e.g. fluorescence)")
    groups: Path | None = Field(None, description="CSV table giving each sample's group (first column: name)")
    group_column: str = Field("modality", description="the column of `groups` holding the group")
    weight: float = Field(1.0, gt=0, description="share of training crops drawn from this source, relative "
                                                 "to the others (before group weights)")


class SemanticDataConfig(Strict):
    train: Path | list[DataSource]
    val: Path | list[DataSource] | None = None
    classes: list[str] = Field(["nucleus"], min_length=1,
                               description="foreground class names; class k (1..K) is classes[k-1], 0 is background")
    labels: Literal["instance", "class"] = Field(
        "instance", description="instance: label values are object ids (all of class 1, or of the classes in "
                                "labels/classes.json); class: label values are class ids 0..K")
    axes: str | None = Field(None, description="axes of stack files when their metadata does not say (e.g. TZYX)")
    skip_empty_slices: bool = Field(False, description="drop the label-free 2D slices at both ends of each stack axis")
    normalize: SemanticNormalizeConfig = SemanticNormalizeConfig()
    fraction: float = Field(1.0, gt=0, le=1, description="use this fraction of the training images (tuning)")
    diameter: float | None = Field(
        None, gt=0, description="canonical object diameter (pixels): every training image is rescaled so that "
                                "the median equivalent diameter of its objects is this, and prediction rescales "
                                "images to it (--diameter, or the size estimate); null: images as they are")
    group_weights: dict[str, float] = Field(
        default_factory=dict, description="share of training crops per group (e.g. per modality), relative; "
                                          "groups not named here get 1; images within a group are drawn uniformly")

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
    output: Literal["mask", "boundary", "distance", "boundary+distance"] = Field(
        "boundary", description="extra head(s) for touching objects: boundary probability, normalised distance, "
                                "or both")
    size_head: bool = Field(False, description="also regress each object's diameter (log2 of diameter / "
                                               "data.diameter): the size estimate that sets the scale of an image")
    boundary_width: int = Field(2, ge=1, le=8, description="boundary target width in pixels (inside each object)")
    decoder_channels: int = Field(128, ge=16, description="FPN pyramid channels / first U-Net decoder width")
    dropout: float = Field(0.0, ge=0, lt=1)


class LossConfig(Strict):
    ce: float = Field(1.0, ge=0, description="cross-entropy weight (classes)")
    dice: float = Field(1.0, ge=0, description="soft Dice weight (foreground classes)")
    aux: float = Field(1.0, ge=0, description="boundary BCE / distance L1 weight")
    size: float = Field(0.2, ge=0, description="size head L1 weight (log2 diameter ratio)")
    class_weights: list[float] | None = Field(None, description="cross-entropy weight per class, background first")


class PostprocessConfig(Strict):
    method: Literal["components", "watershed"] = "watershed"
    threshold: float = Field(0.5, gt=0, lt=1, description="foreground probability threshold")
    seed_threshold: float = Field(0.5, gt=0, lt=1, description="seed: boundary prob below / distance above this")
    distance_threshold: float = Field(0.5, gt=0, lt=1, description="output boundary+distance: seeds also need "
                                                                  "the predicted distance above this")
    seeds: Literal["boundary", "distance", "both"] = Field(
        "both", description="output boundary+distance: which map makes the seeds (both: boundary below "
                            "seed_threshold and distance above distance_threshold)")
    min_size: int = Field(10, ge=0, description="objects (and seeds) smaller than this (pixels) are removed")
    volume: bool = Field(False, description="stacks with a Z axis: one object per nucleus through Z (a 3D seeded "
                                            "watershed on the stacked probability maps, docs/volumes.md) instead "
                                            "of 2D objects per plane")
    min_volume: int = Field(20, ge=0, description="volume: 3D objects smaller than this (voxels) are removed")
    seed_h: float = Field(2.0, gt=0, description="volume: seeds are the maxima of the anisotropic distance to the "
                                                 "background (pixels, weighted by 1 - boundary) standing at least "
                                                 "this high above their saddles (h-maxima)")


class SemanticAugmentConfig(AugmentConfig):
    """The shared augmentations plus colour and polarity ones (for models that take fluorescence,
    brightfield and stained tissue alike) and a wide scale range for the size head."""

    invert: float = Field(0.0, ge=0, le=1, description="probability of inverting the (normalised) intensities")
    grey: float = Field(0.0, ge=0, le=1, description="probability of turning a colour crop grey")
    colour: float = Field(0.0, ge=0, le=1, description="max per-channel gain / offset change (stain jitter)")
    wide_scale: tuple[float, float] = Field((1.0, 1.0), description="scale range of the wide-scale crops")
    wide_prob: float = Field(0.0, ge=0, le=1, description="share of crops drawn at wide_scale instead of scale")


class SemanticConfig(Strict):
    """``task: semantic`` — FPN/U-Net pixel classification, instances by watershed."""

    task: Literal["semantic"] = "semantic"
    name: str = "semantic"
    data: SemanticDataConfig
    model: SemanticModelConfig = SemanticModelConfig()
    loss: LossConfig = LossConfig()
    train: TrainConfig = TrainConfig(optimizer="adamw", lr=1e-3, warmup_iters=50, batch_size=8)
    augment: SemanticAugmentConfig = SemanticAugmentConfig()
    postprocess: PostprocessConfig = PostprocessConfig()
    inference: InferenceConfig = InferenceConfig()
    tune: TuneConfig = TuneConfig()

    @model_validator(mode="after")
    def _check(self):
        if self.loss.class_weights is not None and len(self.loss.class_weights) != len(self.data.classes) + 1:
            raise ValueError(f"loss.class_weights needs {len(self.data.classes) + 1} values "
                             "(background + each class)")
        if self.model.size_head and self.data.diameter is None:
            raise ValueError("model.size_head needs data.diameter (the canonical object diameter it measures against)")
        if self.model.encoder_weights == "imagenet" and self.model.weights is None:
            raise ValueError("model.encoder_weights: imagenet needs model.weights: a local weights file "
                             "(weights are never downloaded)")
        return self

    @property
    def num_classes(self) -> int:
        return len(self.data.classes)

