"""The one result type: what any model made of one image plane.

Callers (writers, the web app, evaluate, compare) branch on what a result *holds*, never on the
task that made it:

``objects``        instances (any number, may overlap), highest score first; the raw set, before
                   any score threshold, so a threshold can move without running the model again.
``class_scores``   one probability per class for the whole image (classification), with the
                   classes the model decides for in ``decided``.
``maps``           optional dense class probabilities (semantic models), kept when asked for, so
                   that a new probability threshold can re-make the objects.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from morphoscope.engine.objects import Objects


@dataclass
class ImageResult:
    name: str
    shape: tuple[int, ...]
    class_names: list[str]
    plane: dict[str, int] = field(default_factory=dict)
    objects: Objects | None = None
    class_scores: np.ndarray | None = None
    decided: list[str] | None = None
    maps: np.ndarray | None = None
    threshold_kind: str | None = None  # "score" (objects) or "probability" (maps), or None
    threshold: float | None = None  # the model's threshold the outputs use by default
    remake: Callable | None = field(default=None, repr=False)  # (maps, threshold) -> Objects
    pixel_size: float | None = None
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    settings: dict = field(default_factory=dict)

    @property
    def kind(self) -> str:
        """``objects`` or ``classes``: what this result can be drawn and written as."""
        return "classes" if self.class_scores is not None else "objects"

    def objects_at(self, threshold: float | None = None) -> Objects:
        """The objects a user sees at ``threshold`` (default: the model's): score-thresholded
        objects, or, for a result with ``maps``, the objects re-made at that probability."""
        if self.objects is None:
            return Objects.empty(self.shape)
        t = self.threshold if threshold is None else float(threshold)
        if t is None:
            return self.objects
        if self.threshold_kind == "probability":
            if self.maps is not None and self.remake is not None and not np.isclose(t, self.threshold):
                return self.remake(self.maps, t)
            return self.objects
        return self.objects.above(t)

    def counts(self, threshold: float | None = None) -> dict[str, int]:
        """Objects per class at ``threshold``."""
        if self.kind != "objects":
            return {}
        objs = self.objects_at(threshold)
        n = np.bincount(objs.classes, minlength=len(self.class_names) + 1)
        return {c: int(n[k]) for k, c in enumerate(self.class_names, start=1)}
