"""Models: building networks from a config and loading trained models by name or file."""

from morphoscope.models.registry import ModelBundle, list_models, load_model

__all__ = ["ModelBundle", "list_models", "load_model"]
