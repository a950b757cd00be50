"""Prediction: running a trained model on image files and writing its outputs
(:func:`morphoscope.prediction.predict.predict`)."""
