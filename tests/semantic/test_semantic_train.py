"""Training on real BBBC039 crops: the loss goes down, the run folder follows the shared
conventions, and a resumed run ends with the same weights as an uninterrupted one."""

from __future__ import annotations

import json

import torch

from semantic_testdata import tiny_config
from morphoscope.tasks import parse_config


def test_few_steps_lower_the_loss(small_set):
    from morphoscope.tasks.semantic.data import SemanticCropDataset, collate
    from morphoscope.tasks.semantic.model import build_model, semantic_loss
    from morphoscope.tasks.semantic.task import load_split

    cfg = parse_config(tiny_config(small_set, augment={"scale": [1.0, 1.0], "noise_std": 0.0, "blur_prob": 0.0}))
    planes = load_split(cfg.data.train, cfg)
    ds = SemanticCropDataset(planes, crop_size=64, length=4, augment=cfg.augment, seed=1, aux="boundary")
    fixed = collate([ds[i] for i in range(4)])
    torch.manual_seed(0)
    model = build_model(cfg.model, 1)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)

    def loss_of(batch):
        terms = semantic_loss(model(batch[0]), batch[1], cfg.model, cfg.loss, 1)
        return sum(terms.values()), terms

    # losses in train mode (batch statistics): BatchNorm running averages need many steps to settle
    with torch.no_grad():
        before = float(loss_of(fixed)[0])
    train_ds = SemanticCropDataset(planes, crop_size=64, length=4, augment=cfg.augment, seed=2, aux="boundary")
    for epoch in range(8):
        train_ds.set_epoch(epoch)
        batch = collate([train_ds[i] for i in range(4)])
        loss, terms = loss_of(batch)
        assert set(terms) == {"ce", "dice", "aux"}
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        after = float(loss_of(fixed)[0])
    assert after < 0.85 * before, (before, after)


def test_train_run_folder_and_exact_resume(small_set, tmp_path):
    from morphoscope.tasks import load_model
    from morphoscope.training.run import train

    d = tiny_config(small_set, small_set, train__epochs=2, train__iters_per_epoch=1)
    full = train(d, out=tmp_path / "full", progress=False)
    for f in ("config.yaml", "checkpoint_last.pt", "model_best.pt", "history.jsonl", "tb"):
        assert (full / f).exists(), f
    hist = [json.loads(x) for x in (full / "history.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in hist] == [0, 1]
    assert {"iou", "dice", "miou", "pixel_accuracy", "f1@0.5"} <= set(hist[-1]["val"])
    bundle = load_model(full)
    assert bundle.task.name == "semantic" and bundle.class_names == ["nucleus"]
    assert bundle.extra["threshold"] == 0.5

    part = train(d, out=tmp_path / "part", progress=False, max_steps=1)  # stops after epoch 0
    assert json.loads((part / "history.jsonl").read_text().splitlines()[-1])["epoch"] == 0
    train(d, out=part, resume=True, progress=False)
    a = torch.load(full / "checkpoint_last.pt", weights_only=False)["model"]
    b = torch.load(part / "checkpoint_last.pt", weights_only=False)["model"]
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_architectures_encoders_channels_and_heads():
    from morphoscope.tasks.semantic.config import SemanticModelConfig
    from morphoscope.tasks.semantic.model import build_model, split_outputs

    x = torch.zeros(1, 2, 64, 64)
    for arch, enc, output, k in (("unet", "resnet34", "distance", 3), ("fpn", "resnet18", "mask", 1)):
        mc = SemanticModelConfig(architecture=arch, encoder=enc, output=output, in_channels=2, decoder_channels=32)
        net = build_model(mc, k).eval()
        with torch.no_grad():
            logits = net(x)
        assert logits.shape == (1, k + 1 + (output != "mask"), 64, 64)
        probs, aux = split_outputs(logits, mc, k)
        assert probs.shape == (1, k + 1, 64, 64) and (aux is None) == (output == "mask")
