"""``morphoscope train`` in a run folder that holds an earlier run, for every task: --overwrite
clears the earlier run's model_best.pt and history before the new run starts, and a run that
failed before its first checkpoint can be run again without --overwrite."""

from __future__ import annotations

import json

import pytest
import torch

from cli_testdata import assert_one_line_error, assert_success, run_cli, tiny_config, write_config
from morphoscope.models.checkpoint import read_checkpoint


def history(run) -> list[dict]:
    return [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("task", ["instance", "semantic", "classify"])
def test_overwrite_clears_the_earlier_run_and_a_failed_run_can_be_rerun(task, tmp_path, samples_dir):
    run = tmp_path / "run"

    def config(name, **settings):
        return write_config(tmp_path / name, tiny_config(task, tmp_path, samples_dir, **settings))

    # an earlier run: two validated epochs
    assert_success(run_cli("train", config("first.yaml", validate=True, epochs=2), "--out", run))
    assert [h["epoch"] for h in history(run)] == [0, 1] and all("val" in h for h in history(run))
    assert "epoch" in read_checkpoint(run / "model_best.pt")["metrics"]

    # --overwrite with a learning rate that makes the loss infinite at the second step: the
    # earlier run's files are gone although the new run wrote no checkpoint
    diverging = config("diverging.yaml", validate=False, lr=1e30, optimizer="sgd", warmup_iters=0,
                       grad_clip=None)
    assert_one_line_error(run_cli("train", diverging, "--out", run, "--overwrite"), "loss became")
    for name in ("model_best.pt", "checkpoint_last.pt", "history.jsonl"):
        assert not (run / name).exists(), name

    # the failed run left no checkpoint: the folder is used again without --overwrite, and
    # holds only the new run (no validation set: model_best.pt is the last weights)
    assert_success(run_cli("train", config("second.yaml", validate=False), "--out", run))
    new = history(run)
    assert [h["epoch"] for h in new] == [0]
    best = read_checkpoint(run / "model_best.pt")
    last = read_checkpoint(run / "checkpoint_last.pt")
    assert best["model"].keys() == last["model"].keys()
    assert all(torch.equal(best["model"][k], last["model"][k]) for k in best["model"])
    if task == "classify":  # a classifier always holds out part of its images and validates
        assert "val" in new[0] and best["metrics"]["epoch"] == 0
    else:
        assert "val" not in new[0] and best["metrics"] == {}
    # with a checkpoint there, the folder is refused without --overwrite or --resume
    assert_one_line_error(run_cli("train", config("third.yaml", validate=False), "--out", run),
                          str(run), "--overwrite")
