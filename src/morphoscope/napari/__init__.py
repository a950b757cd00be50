"""napari plugin (npe2; ``pip install morphoscope[napari]``): open a prediction folder (or one
``NAME_labels.tif`` in it) as the image, one Labels layer per class and the measurements as the
layers' features; predict the current image layer with a model (Plugins > morphoscope > Predict);
save a Labels layer as a label TIFF with its pixel size. The manifest is ``napari.yaml`` here;
docs/interop.md says what each part reads and writes.

Only the widget needs napari and Qt; the reader and writer are plain functions that return or take
napari's layer data, so they also work (and are tested) without a display.
"""
