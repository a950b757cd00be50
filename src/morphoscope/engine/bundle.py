"""A loaded model: the network, its task and what it needs to know about inputs and outputs."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from morphoscope.engine.task import Task


@dataclass
class ModelBundle:
    name: str
    task: Task
    model: torch.nn.Module
    class_names: list[str]
    cfg: Any  # the validated config the model was trained with
    normalize: dict
    metrics: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)
    card: dict = field(default_factory=dict)
    path: Path | None = None
    device: torch.device = torch.device("cpu")

    @property
    def config(self) -> dict:
        """The config as plain data."""
        return self.cfg.model_dump(mode="json")

    def describe(self) -> dict:
        """What a user (or the web app) is told about the model; no server paths."""
        model = self.config.get("model", {})
        return {"name": self.name, "task": self.task.name, "classes": list(self.class_names),
                "metrics": self.metrics, "backbone": model.get("backbone") or model.get("encoder"),
                "trained_on": self.card.get("trained_on") or _data_description(self.config),
                "description": self.card.get("description", ""),
                "file": self.path.name if self.path else None}


def _data_description(config: dict) -> str:
    """The training data as the last two parts of its path (never a whole server path)."""
    data = config.get("data", {})
    parts = []
    for key in ("train", "val"):
        if data.get(key):
            p = Path(str(data[key]))
            parts.append(f"{key}: {'/'.join(p.parts[-2:])}")
    return "; ".join(parts)
