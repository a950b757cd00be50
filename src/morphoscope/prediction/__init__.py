"""Prediction: running a trained model on images and writing its outputs."""
