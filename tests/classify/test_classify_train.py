"""Training a classifier: a few steps on the HPA sample lower the loss; freezing keeps the trunk;
a tiny run writes a usable run folder whose model predicts classifications.csv."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from classify_testdata import HPA, hpa_config, need_hpa
from morphoscope.tasks.classify.data import ClassificationImages, datasets_from_config
from morphoscope.tasks.classify.model import ResNetClassifier, build_from_config, load_backbone_state
from morphoscope.engine.training import optimizer_step
from morphoscope.tasks import parse_config
from morphoscope.tasks.classify.task import make_loss, phase_schedule


def train_step(model, batch, criterion, optimizer, *, device, grad_clip=None):
    """One step as the training loop takes it (loss of the task, then the shared update)."""
    x, y = batch
    loss = criterion(model(x.to(device)).float(), y.to(device))
    optimizer_step(loss, optimizer, grad_clip=grad_clip)


def test_a_few_steps_on_hpa_lower_the_loss():
    cfg = parse_config(hpa_config())
    ds, tr, _, _ = datasets_from_config(cfg)
    torch.manual_seed(0)
    images = ClassificationImages(ds, tr[:8], in_channels=1, image_size=64, intensity="dtype", mean=[0.08],
                                  std=[0.1], multi_label=True)
    batch = (torch.stack([images[i][0] for i in range(8)]), torch.stack([images[i][1] for i in range(8)]))
    model = ResNetClassifier("resnet18", 28, 1)
    crit = make_loss(cfg, ds.label_matrix()[tr], torch.device("cpu"))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def loss_now():
        model.eval()
        with torch.no_grad():
            return float(crit(model(batch[0]), batch[1]))

    before = loss_now()
    model.train()
    for _ in range(4):
        train_step(model, batch, crit, opt, device=torch.device("cpu"), grad_clip=5.0)
    after = loss_now()
    assert after < before * 0.8, (before, after)


def test_frozen_backbone_keeps_weights_and_statistics():
    torch.manual_seed(0)
    model = ResNetClassifier("resnet18", 3, 2)
    opt = torch.optim.SGD([{"params": list(model.head.parameters())},
                           {"params": list(model.backbone.parameters())}], lr=0.1)
    backbone = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    head = {k: v.clone() for k, v in model.head.state_dict().items()}
    model.set_backbone_trainable(False)
    model.train()
    batch = (torch.randn(2, 2, 32, 32), torch.tensor([[1.0, 0, 1], [0, 1, 0]]))
    train_step(model, batch, torch.nn.BCEWithLogitsLoss(), opt, device=torch.device("cpu"))
    for k, v in model.backbone.state_dict().items():
        assert torch.equal(v, backbone[k]), k  # weights and BatchNorm running statistics
    assert any(not torch.equal(v, head[k]) for k, v in model.head.state_dict().items())
    model.set_backbone_trainable(True)
    model.train()
    train_step(model, batch, torch.nn.BCEWithLogitsLoss(), opt, device=torch.device("cpu"))
    assert not torch.equal(model.backbone.conv1.weight, backbone["conv1.weight"])


def test_one_channel_from_rgb_weights():
    """ImageNet-style RGB weights on a grey model: a grey image gives what an RGB model gives for
    the same image repeated in R, G and B."""
    from torchvision.models import resnet18

    torch.manual_seed(0)
    state = resnet18(weights=None).state_dict()  # torchvision layout, as in resnet18-f37072fd.pth
    rgb, grey = ResNetClassifier("resnet18", 4, 3), ResNetClassifier("resnet18", 4, 1)
    assert load_backbone_state(rgb, state) == load_backbone_state(grey, state) > 100
    grey.head.load_state_dict(rgb.head.state_dict())
    x = torch.rand(1, 1, 64, 64)
    rgb.eval(), grey.eval()
    with torch.no_grad():
        assert torch.allclose(grey(x), rgb(x.repeat(1, 3, 1, 1)), atol=1e-4)


def test_schedule_phases():
    cfg = parse_config({"task": "classify", "data": {"train": "x"},
                        "train": {"epochs": 4, "freeze_backbone_epochs": 1, "unfreeze_lr_factor": 0.1,
                                  "schedule": "onecycle", "min_lr_ratio": 0.01}})
    f = phase_schedule(cfg.train, iters=10)
    head = [f(i) for i in range(10)]
    whole = [f(i) for i in range(10, 40)]
    assert max(head) == pytest.approx(1.0, abs=0.05) and head[0] < 0.1
    assert max(whole) == pytest.approx(0.1, abs=0.005)  # the whole network at the lower rate
    assert whole[-1] < 0.01


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """2 epochs on HPA at 64 px from a local weights file: 1 head-only epoch, then all layers."""
    need_hpa()
    from torchvision.models import resnet18

    tmp = tmp_path_factory.mktemp("hpa")
    weights = tmp / "resnet18-local.pth"
    torch.manual_seed(1)
    torch.save(resnet18(weights=None).state_dict(), weights)  # stands in for resnet18-f37072fd.pth
    cfg = hpa_config(epochs=2, freeze_backbone_epochs=1, unfreeze_lr_factor=0.1)
    cfg["model"].update({"pretrained": "imagenet", "weights": str(weights)})
    from morphoscope.training.run import train

    return train(cfg, out=tmp / "run", progress=False)


def test_run_folder(tiny_run):
    from morphoscope.tasks import load_model

    for f in ("config.yaml", "checkpoint_last.pt", "model_best.pt", "history.jsonl", "split.json", "val.csv"):
        assert (tiny_run / f).is_file(), f
    history = [json.loads(ln) for ln in (tiny_run / "history.jsonl").read_text().splitlines()]
    assert [h["phase"] for h in history] == ["head", "all"]
    assert all("val" in h for h in history)
    split = json.loads((tiny_run / "split.json").read_text())
    assert len(split["train"]) + len(split["val"]) == 50 and not set(split["train"]) & set(split["val"])
    bundle = load_model(tiny_run)
    assert bundle.task.name == "classify" and len(bundle.class_names) == 28
    assert bundle.class_names[0] == "Nucleoplasm"
    thr = bundle.extra["thresholds"]
    assert len(thr) == 28 and all(0 < t < 1 for t in thr)
    assert bundle.normalize["source"] == "imagenet"  # ImageNet statistics with ImageNet weights
    assert bundle.metrics["val_images"] == len(split["val"])
    assert bundle.config["model"]["in_channels"] == 1
    # the architecture alone, as the registry builds it, never reads the weights file
    cfg = parse_config(bundle.config)
    assert isinstance(build_from_config(cfg, 28), ResNetClassifier)


def test_resume_continues_exactly(tmp_path, monkeypatch):
    """A run stopped after its first epoch and resumed ends with the weights of an uninterrupted run."""
    import morphoscope.engine.training as engine
    from morphoscope.training.run import train

    cfg = hpa_config(epochs=2, batch_size=2)
    cfg["data"]["image_size"] = 32
    whole = train(cfg, out=tmp_path / "whole", progress=False)

    real_epoch = engine._train_epoch

    def stop_in_second_epoch(*args, epoch, **kwargs):
        if epoch == 1:
            raise KeyboardInterrupt
        return real_epoch(*args, epoch=epoch, **kwargs)

    monkeypatch.setattr(engine, "_train_epoch", stop_in_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, out=tmp_path / "resumed", progress=False)
    monkeypatch.setattr(engine, "_train_epoch", real_epoch)
    train(cfg, out=tmp_path / "resumed", resume=True, progress=False)
    a = torch.load(whole / "checkpoint_last.pt", weights_only=False)
    b = torch.load(tmp_path / "resumed" / "checkpoint_last.pt", weights_only=False)
    assert a["epoch"] == b["epoch"] == 1
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k
    assert [h["train"]["loss"] for h in a["history"]] == [h["train"]["loss"] for h in b["history"]]


def test_predict_writes_classifications_csv(tiny_run, tmp_path):
    from morphoscope.tasks import load_model
    from morphoscope.prediction.predict import predict

    files = sorted((HPA / "images").glob("*_green.png"))[:3]
    out = predict(files, tmp_path / "pred", model=tiny_run, progress=False)
    df = pd.read_csv(out / "classifications.csv", keep_default_na=False, dtype={"labels": str})
    assert list(df["image"]) == [f.name[: -len("_green.png")] for f in files]
    bundle = load_model(tiny_run)
    probs = df[[f"prob_{n}" for n in bundle.class_names]].to_numpy()
    assert ((probs >= 0) & (probs <= 1)).all()
    thr = np.array(bundle.extra["thresholds"])
    for row, p in zip(df["labels"], probs):
        expected = [str(k) for k in np.flatnonzero(p >= thr)]
        assert str(row).split() == expected
    # one array, as the web app gives it: the same numbers; grey stored as RGB is grey
    from morphoscope.tasks.classify.task import classify_image
    from morphoscope.io.images import read_image

    img = read_image(files[0])
    one = classify_image(bundle, img)
    assert [one["probabilities"][n] for n in bundle.class_names] == pytest.approx(probs[0], abs=1e-5)
    assert one["labels"] == [bundle.class_names[int(k)] for k in str(df["labels"][0]).split()]
    rgb = classify_image(bundle, np.stack([img] * 3, axis=-1))
    assert rgb["probabilities"] == pytest.approx(one["probabilities"])
    info = json.loads((out / "classification_info.json").read_text())
    assert info["thresholds"] == pytest.approx(list(thr))
    from morphoscope.errors import OutputExistsError

    with pytest.raises(OutputExistsError):
        predict(files, tmp_path / "pred", model=tiny_run, progress=False)
