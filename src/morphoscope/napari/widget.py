"""napari widget (Plugins > morphoscope > Predict): predict the objects of an Image layer with a
shipped model or a checkpoint, through the one prediction engine
(:class:`morphoscope.engine.predictor.Predictor`, the engine behind ``morphoscope predict``).

Settings: the model, its threshold (the score threshold of instance models, the probability
threshold of semantic ones), the objects' diameter in pixels (0: the model's own estimate, for
models that record the diameter they were trained at) and whether to measure. The image layer's
pixel size (its X scale in µm) goes to the engine and the measurements. A 2D image (grey or RGB)
is one plane; a stack is predicted plane by plane. The result is one Labels layer per class,
numbered as ``NAME_labels.tif`` would be, with the measurements as features.

The model runs in a worker thread; :meth:`PredictWidget.run` with ``blocking=True`` runs it in
the caller's thread (scripts, tests).
"""

from __future__ import annotations

import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    FloatSpinBox,
    Label,
    PushButton,
)


def model_choices() -> list[str]:
    from morphoscope.tasks import list_models

    return [m["name"] for m in list_models()]


class PredictWidget(Container):
    """The Predict dock widget; napari passes its viewer as ``napari_viewer``."""

    def __init__(self, napari_viewer):
        super().__init__(labels=True)
        self.viewer = napari_viewer
        self._bundles: dict = {}
        self.image = ComboBox(label="image", choices=self._image_layers, nullable=False)
        names = model_choices()
        self.model = ComboBox(label="model", choices=names, value=names[0] if names else None)
        self.model_file = FileEdit(label="or model file", mode="r", nullable=True, value=None,
                                   tooltip="a checkpoint or a training run folder; overrides the model above")
        self.threshold = FloatSpinBox(label="threshold", value=0.5, min=0.0, max=1.0, step=0.05,
                                      tooltip="score threshold (instance models) or probability "
                                              "threshold (semantic models)")
        self.diameter = FloatSpinBox(label="diameter (px)", value=0.0, min=0.0, max=10000.0, step=1.0,
                                     tooltip="the objects' diameter in pixels; 0: the model estimates it "
                                             "(models that record their training diameter)")
        self.measure = CheckBox(label="measure", value=True)
        self.predict_button = PushButton(text="Predict")
        self.status = Label(value="")
        self.extend([self.image, self.model, self.model_file, self.threshold, self.diameter, self.measure,
                     self.predict_button, self.status])
        self.predict_button.changed.connect(lambda *_: self.run())
        events = self.viewer.layers.events
        events.inserted.connect(self.image.reset_choices)
        events.removed.connect(self.image.reset_choices)
        self.image.reset_choices()

    def _image_layers(self, *_):
        from napari.layers import Image

        return [(layer.name, layer) for layer in self.viewer.layers if isinstance(layer, Image)]

    # ---- the model --------------------------------------------------------------------------
    def bundle(self):
        """The chosen model, loaded once per choice."""
        from morphoscope.prediction.predict import resolve_bundle

        chosen = str(self.model_file.value) if self.model_file.value not in (None, "", ".") else self.model.value
        if chosen not in self._bundles:
            self._bundles[chosen] = resolve_bundle(chosen)
        return self._bundles[chosen]

    def settings(self, bundle) -> dict:
        """Predictor options from the widgets: the threshold the model takes, the diameter."""
        options = {}
        takes = bundle.task.predict_options()
        if "score_threshold" in takes:
            options["score_threshold"] = float(self.threshold.value)
        elif "threshold" in takes:
            options["threshold"] = float(self.threshold.value)
        if self.diameter.value > 0:
            options["diameter"] = float(self.diameter.value)
        return options

    # ---- prediction -------------------------------------------------------------------------
    def predict_layers(self) -> list[tuple]:
        """Predict the chosen image layer; returns the layer data tuples to add."""
        from morphoscope.engine.predictor import Predictor
        from morphoscope.errors import InputError
        from morphoscope.napari.layers import PlaneObjects, class_layers

        layer = self.image.value
        if layer is None:
            raise InputError("no image layer to predict: open an image first")
        bundle = self.bundle()
        if bundle.task.result_kind != "objects":
            raise InputError(f"'{bundle.name}' classifies whole images; this widget draws objects")
        options = self.settings(bundle)
        diameter = options.pop("diameter", None)
        predictor = Predictor(bundle, diameter=diameter, **options)
        data = np.asarray(layer.data[0] if layer.multiscale else layer.data)
        pixel_size = layer_pixel_size(layer)
        plane_dims = data.ndim - (3 if layer.rgb else 2)
        if plane_dims > 2:
            raise InputError(f"layer '{layer.name}' has {data.ndim} dimensions; this widget predicts 2D images "
                             "and Z, T or TZ stacks of them")
        plane_axes = "TZ"[2 - plane_dims:]
        plane_shape = data.shape[:plane_dims]
        planes, tables, offset = [], [], 0
        for index in np.ndindex(*plane_shape):
            image = data[index]
            result = predictor.predict(image, name=layer.name, pixel_size=pixel_size)
            objects = result.objects_at()
            labels, kept = objects.to_labels()
            objects = objects.select(kept)
            numbers = np.arange(offset + 1, offset + len(objects) + 1, dtype=np.int64)
            planes.append(PlaneObjects(tuple(index), objects, numbers))
            if self.measure.value:
                tables.append(self._measure(labels, image, objects, pixel_size, layer.name,
                                            dict(zip(plane_axes.lower(), index)), bundle))
            offset += len(objects)
        table = None
        if tables:
            from morphoscope.morphology import concat_tables

            table = concat_tables(tables)
        layers = class_layers(layer.name, planes, bundle.class_names, shape=plane_shape + data.shape[plane_dims:][:2],
                              table=table, plane_axes=plane_axes, pixel_size=pixel_size,
                              metadata={"model": bundle.name, "settings": {**options, "diameter": diameter}})
        for _, kwargs, _ in layers:  # on the image's own grid, in its own units
            kwargs.update(scale=tuple(layer.scale), units=tuple(str(u) for u in layer.units),
                          translate=tuple(layer.translate))
        return layers

    @staticmethod
    def _measure(labels, image, objects, pixel_size, name, plane: dict, bundle):
        from morphoscope.morphology import measure_labels

        n = int(labels.max(initial=0))
        table = measure_labels(labels, image=image, pixel_size=pixel_size, image_name=name,
                               scores={k: float(objects.scores[k - 1]) for k in range(1, n + 1)},
                               classes={k: int(objects.classes[k - 1]) for k in range(1, n + 1)},
                               class_names=bundle.class_names)
        for axis, i in reversed(list(plane.items())):  # as the prediction writer lays out stacks
            table.insert(1, axis, int(i))
        return table

    def add_layers(self, layers: list[tuple]) -> None:
        for data, kwargs, kind in layers:
            existing = kwargs["name"] in self.viewer.layers
            if existing:  # predicting again replaces the previous result
                self.viewer.layers.remove(kwargs["name"])
            getattr(self.viewer, f"add_{kind}")(data, **kwargs)
        count = sum(int(len(np.unique(d)) - 1) for d, _, _ in layers)
        self.status.value = f"{count} objects"

    def run(self, *, blocking: bool = False):
        """Predict and add the layers; in a worker thread unless ``blocking``."""
        if blocking:
            layers = self.predict_layers()
            self.add_layers(layers)
            return layers
        from napari.qt.threading import create_worker
        from napari.utils.notifications import show_error

        self.predict_button.enabled = False
        self.status.value = "predicting..."
        worker = create_worker(self.predict_layers)
        worker.returned.connect(self.add_layers)
        worker.errored.connect(lambda exc: (show_error(str(exc)), setattr(self.status, "value", "failed")))
        worker.finished.connect(lambda: setattr(self.predict_button, "enabled", True))
        worker.start()
        return worker


def layer_pixel_size(layer) -> float | None:
    """µm per pixel of a napari layer: its X scale, in µm when its units say so; a layer in the
    default pixel units with a scale other than 1 is taken to be in µm."""
    from morphoscope.napari.writer import _physical

    units = getattr(layer, "units", None) or ["pixel"] * layer.ndim
    return _physical(float(layer.scale[-1]), str(units[-1]), time=False)
