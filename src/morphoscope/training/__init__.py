"""Training as users run it: ``train`` (:mod:`.run`) and the Optuna search ``tune`` (:mod:`.tune`),
on the one training loop of :mod:`morphoscope.engine.training`."""
