"""``task: classify`` — whole-image classification, multi-label (sigmoid + BCE) or single-label
(softmax + cross-entropy), with a torchvision ResNet.

Example (``configs/hpa_resnet18.yaml``)::

    task: classify
    name: hpa_resnet18
    data:
      train: ../../shared/data/hpa_sample      # labels.csv + images/, a CSV file, or class folders
      channels: [green]                        # image files are <Id>_green.png
      class_names: [Nucleoplasm, ...]          # class id k is class_names[k]
      val_fraction: 0.2
    model: {backbone: resnet18, head: multi_label, pretrained: none}
    train: {epochs: 12, freeze_backbone_epochs: 0, lr: 0.001, optimizer: adamw}

Relative paths are resolved against the config file's folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from morphoscope.config import Strict, TuneConfig


class ClassifyDataConfig(Strict):
    train: Path = Field(description="a folder with labels.csv and images/, a CSV file (Id,Target), "
                                    "or a folder with one sub-folder of images per class")
    val: Path | None = Field(None, description="a separate validation set in the same layout; "
                                               "default: a seeded split of 'train'")
    val_fraction: float = Field(0.2, gt=0, lt=1, description="share of 'train' held out when no val set is given")
    split_seed: int | None = Field(None, description="seed of the train/val split (default: train.seed)")
    train_ids: Path | None = Field(None, description="text file of the Ids to train on (one per line)")
    val_ids: Path | None = Field(None, description="text file of the Ids to validate on (one per line)")
    images: Path | None = Field(None, description="image folder of a CSV layout (default: images/ beside the CSV, else the CSV's folder)")
    channels: list[str] | None = Field(
        None, min_length=1, max_length=4,
        description="per-channel files <Id>_<channel>.<ext> stacked in this order (HPA: [red, green, blue, yellow]); "
                    "default: one file <Id>.<ext> holding all channels")
    class_names: list[str] | None = Field(None, min_length=1, description="class id k is class_names[k]")
    class_names_file: Path | None = Field(None, description="text file, one class name per line (line k = class id k)")
    intensity: Literal["dtype", "percentile"] = Field(
        "dtype", description="dtype: 8/16-bit scaled by their full range; percentile: per image, 1st/99.8th percentile -> 0/1")
    normalization: Literal["auto", "dataset", "imagenet"] = Field(
        "auto", description="per-channel mean/std: from the training images, or ImageNet's (auto: ImageNet when ImageNet weights are used)")
    image_size: int = Field(256, ge=32, description="images are resized to image_size x image_size for the network")
    cache_images: bool = Field(True, description="keep decoded images in memory (turn off for very large sets)")

    @model_validator(mode="after")
    def _names(self):
        if self.class_names is not None and self.class_names_file is not None:
            raise ValueError("give class_names or class_names_file, not both")
        if self.class_names is not None and len(set(self.class_names)) != len(self.class_names):
            raise ValueError("class_names has duplicates")
        if self.val is not None and (self.val_ids is not None or self.train_ids is not None):
            raise ValueError("give either a separate 'val' dataset or train_ids/val_ids files, not both")
        return self


class ClassifyModelConfig(Strict):
    architecture: Literal["resnet"] = "resnet"
    backbone: Literal["resnet18", "resnet34", "resnet50"] = "resnet18"
    head: Literal["multi_label", "single_label"] = Field(
        "multi_label", description="multi_label: sigmoid per class + BCE; single_label: softmax + cross-entropy")
    pretrained: Literal["none", "imagenet"] = Field(
        "none", description="imagenet downloads torchvision's weights (online); offline use 'weights: FILE'")
    weights: Path | None = Field(None, description="local weights file: torchvision ResNet state dict "
                                                   "(e.g. resnet18-f37072fd.pth) or a morphoscope checkpoint")
    in_channels: int | None = Field(None, ge=1, le=4, description="input channels; default: from the data")
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout before the final linear layer")


class ClassifyLossConfig(Strict):
    pos_weight: Literal["none", "balanced"] | list[float] = Field(
        "none", description="multi-label: weight of positives per class; 'balanced' = negatives/positives "
                            "in the training set (capped at max_pos_weight). single-label: class weights")
    max_pos_weight: float = Field(20.0, ge=1)
    label_smoothing: float = Field(0.0, ge=0, lt=1)


class ClassifyTrainConfig(Strict):
    epochs: int = Field(20, ge=1)
    iters_per_epoch: int | None = Field(None, ge=1, description="default: one pass over the training images")
    batch_size: int = Field(16, ge=1)
    optimizer: Literal["adamw", "adam", "sgd"] = "adamw"
    lr: float = Field(1e-3, gt=0)
    momentum: float = 0.9
    weight_decay: float = Field(1e-4, ge=0)
    schedule: Literal["cosine", "onecycle", "constant"] = "cosine"
    warmup_iters: int = Field(0, ge=0, description="cosine: linear warm-up iterations (per phase)")
    onecycle_pct_start: float = Field(0.3, gt=0, lt=1)
    min_lr_ratio: float = Field(0.01, ge=0, le=1, description="the schedule ends at lr * min_lr_ratio")
    freeze_backbone_epochs: int = Field(
        0, ge=0, description="train only the head for this many epochs, then the whole network")
    unfreeze_lr_factor: float = Field(
        0.1, gt=0, le=1, description="after unfreezing, learning rates are lr * this factor")
    grad_clip: float | None = Field(5.0, gt=0)
    amp: bool = True  # CUDA only
    workers: int = Field(0, ge=0)
    seed: int = 0
    val_every: int = Field(1, ge=1)
    checkpoint_every: int = Field(1, ge=1)
    monitor: Literal["loss", "macro_f1", "micro_f1"] = Field(
        "loss", description="validation quantity that picks model_best.pt (loss: lowest; F1: highest, at threshold 0.5)")
    tune_thresholds: bool = Field(True, description="multi-label: per-class thresholds maximising validation F1")
    default_threshold: float = Field(0.5, gt=0, lt=1)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _freeze(self):
        if self.freeze_backbone_epochs >= self.epochs:
            raise ValueError(f"freeze_backbone_epochs ({self.freeze_backbone_epochs}) must be below epochs "
                             f"({self.epochs}): the whole network has to train at least one epoch")
        return self


class ClassifyAugmentConfig(Strict):
    crop_scale: tuple[float, float] = Field((0.5, 1.0), description="random resized crop: share of the image area")
    crop_ratio: tuple[float, float] = Field((0.75, 1.333), description="random resized crop: aspect ratio range")
    hflip: bool = True
    vflip: bool = True
    rot90: bool = True
    rotation: float = Field(0.0, ge=0, le=180, description="extra random rotation in degrees (+-)")
    intensity: float = Field(0.1, ge=0, description="max relative brightness/contrast change")

    @field_validator("crop_scale")
    @classmethod
    def _scale(cls, v):
        if not 0 < v[0] <= v[1] <= 1:
            raise ValueError("crop_scale must be 0 < min <= max <= 1")
        return v

    @field_validator("crop_ratio")
    @classmethod
    def _ratio(cls, v):
        if not 0 < v[0] <= v[1]:
            raise ValueError("crop_ratio must be 0 < min <= max")
        return v


class ClassifyConfig(Strict):
    """``task: classify`` — whole-image classification with a ResNet."""

    task: Literal["classify"] = "classify"
    name: str = "classify"
    data: ClassifyDataConfig
    model: ClassifyModelConfig = ClassifyModelConfig()
    loss: ClassifyLossConfig = ClassifyLossConfig()
    train: ClassifyTrainConfig = ClassifyTrainConfig()
    augment: ClassifyAugmentConfig | None = ClassifyAugmentConfig()
    tune: TuneConfig = TuneConfig()


