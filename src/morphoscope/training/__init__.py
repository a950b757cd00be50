"""Training: datasets with augmentation, the per-epoch engine, checkpoints and the run driver."""
