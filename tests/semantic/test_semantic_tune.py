"""``morphoscope tune``: two tiny trials write an SQLite study and a ready-to-train best config;
running again resumes the same study."""

from __future__ import annotations

import yaml

from semantic_testdata import tiny_config


def test_two_tiny_trials_write_study_and_best_config(small_set, tmp_path):
    import optuna

    from morphoscope.tasks import load_config
    from morphoscope.training.tune import tune

    d = tiny_config(small_set, small_set, train__iters_per_epoch=1)
    d["tune"] = {"metric": "iou", "epochs": 1, "fraction": 0.5, "val_max_images": 1,
                 "space": {"train.lr": {"low": 1e-4, "high": 1e-2, "log": True},
                           "train.batch_size": {"choices": [1, 2]},
                           "loss.aux": {"low": 0.5, "high": 2.0},
                           "postprocess.threshold": {"low": 0.3, "high": 0.7}}}
    cfg_path = tmp_path / "tiny.yaml"
    cfg_path.write_text(yaml.safe_dump(d))
    out = tmp_path / "tune"
    res = tune(cfg_path, trials=2, out=out)
    assert res["trials"] == 2 and res["complete"] + res["pruned"] == 2
    db = out / "study.db"
    assert db.is_file()
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{db}")
    assert len(study.trials) == 2
    best = load_config(res["best_config"])  # validates: ready to train
    assert best.train.epochs == 1 and best.data.fraction == 1.0  # the full run, not the trial's share
    assert best.train.lr == res["best_params"]["train.lr"]
    assert best.postprocess.threshold == res["best_params"]["postprocess.threshold"]

    # the command line resumes the same study with one more trial
    from typer.testing import CliRunner

    from morphoscope.cli import app

    r = CliRunner().invoke(app, ["tune", str(cfg_path), "--trials", "1", "--out", str(out),
                                 "--storage", f"sqlite:///{db}"])
    assert r.exit_code == 0, r.output
    assert "3 trials" in r.output and "best config" in r.output
    assert len(optuna.load_study(study_name="tiny", storage=f"sqlite:///{db}").trials) == 3


def test_tune_config_errors(small_set, tmp_path):
    import pytest

    from morphoscope.errors import ConfigError
    from morphoscope.training.tune import tune
    from morphoscope.tasks import parse_config

    d = tiny_config(small_set, small_set)
    with pytest.raises(ConfigError, match="no search space"):
        tune(parse_config(d), trials=1, out=tmp_path)
    d["tune"] = {"space": {"train.nonsense": {"low": 1, "high": 2}}}
    with pytest.raises(ConfigError, match="train.nonsense"):
        tune(parse_config(d), trials=1, out=tmp_path)
    d["tune"] = {"space": {"train.lr": {"low": 1}}}
    with pytest.raises(ConfigError, match="low and high"):
        parse_config(d)


def test_postprocess_search_and_rewrite(small_set, tiny_checkpoint, tmp_path):
    from morphoscope.tasks import load_model
    from morphoscope.tasks.semantic.postprocess_search import search_postprocess, write_postprocess

    res = search_postprocess(tiny_checkpoint, small_set, grid={"seed_threshold": [0.2, 0.5], "min_size": [5, 30]},
                             max_images=1)
    assert len(res["results"]) == 4 and res["images"] == 1
    assert set(res["best"]) == {"seed_threshold", "min_size"}
    out = write_postprocess(tiny_checkpoint, tmp_path / "tuned.pt", {"seed_threshold": 0.2, "min_size": 30})
    b = load_model(out)
    assert b.config["postprocess"]["seed_threshold"] == 0.2 and b.extra["postprocess"]["min_size"] == 30
