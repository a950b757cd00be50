"""Training on real BBBC039 crops: the loss goes down, resume continues identically, the
non-finite-loss stop and the config errors are clear."""

import numpy as np
import pytest
import torch
import yaml

from foundation_testdata import tiny_instance_config
from morphoscope.tasks import load_config, parse_config
from morphoscope.errors import ConfigError, OutputExistsError
from morphoscope.training.run import train


def test_a_few_steps_on_real_crops_lower_the_loss(shared_data):
    from morphoscope.formats import load_instance_dataset
    from morphoscope.tasks.instance.model import build_maskrcnn
    from morphoscope.tasks.instance.data import InstanceCropDataset, collate

    cfg = parse_config(tiny_instance_config(shared_data / "bbbc039" / "training"))
    ds = load_instance_dataset(cfg.data.train)
    crops = InstanceCropDataset(ds, crop_size=128, length=2, augment=None, normalize=cfg.data.normalize)
    images, targets = collate([crops[0], crops[1]])
    assert all(len(t["boxes"]) > 0 for t in targets)  # real nuclei in the crops
    torch.manual_seed(0)
    model = build_maskrcnn(cfg.model, 1)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(8):
        loss = sum(model(list(images), list(targets)).values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert np.mean(losses[-2:]) < 0.7 * losses[0], losses


def test_augmentation_keeps_masks_boxes_and_image_aligned(samples_dir):
    from morphoscope.config import AugmentConfig, NormalizeConfig
    from morphoscope.formats import load_instance_dataset
    from morphoscope.tasks.instance.data import InstanceCropDataset

    ds = load_instance_dataset(samples_dir)
    crops = InstanceCropDataset(ds, crop_size=128, length=6, augment=AugmentConfig(blur_prob=0, noise_std=0, intensity=0, gamma=(1, 1)),
                                normalize=NormalizeConfig(), min_area=1)
    for i in range(6):
        img, t = crops[i]
        assert img.dtype == torch.float32 and img.shape[0] == 3
        assert t["masks"].shape[1:] == img.shape[1:]
        for m, b in zip(t["masks"], t["boxes"]):
            ys, xs = torch.nonzero(m, as_tuple=True)
            assert b.tolist() == [xs.min().item(), ys.min().item(), xs.max().item() + 1, ys.max().item() + 1]
        if len(t["masks"]):
            # nuclei are bright: mean intensity inside masks above the background's
            fg = t["masks"].bool().any(0)
            assert img[0][fg].mean() > img[0][~fg].mean()


def test_resume_continues_identically(tmp_path, samples_dir, monkeypatch):
    """A run interrupted after epoch 0 and resumed ends with bit-identical weights."""
    import morphoscope.engine.training as engine

    cfg = tiny_instance_config(samples_dir, epochs=2, iters=2)
    straight = train(cfg, out=tmp_path / "a", progress=False)

    real = engine._train_epoch

    def interrupted(*args, epoch, **kwargs):
        if epoch == 1:
            raise KeyboardInterrupt  # the user stops the run during epoch 1
        return real(*args, epoch=epoch, **kwargs)

    monkeypatch.setattr(engine, "_train_epoch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, out=tmp_path / "b", progress=False)
    monkeypatch.setattr(engine, "_train_epoch", real)
    assert torch.load(tmp_path / "b" / "checkpoint_last.pt", weights_only=False)["epoch"] == 0
    train(cfg, out=tmp_path / "b", resume=True, progress=False)
    a = torch.load(straight / "checkpoint_last.pt", weights_only=False)
    b = torch.load(tmp_path / "b" / "checkpoint_last.pt", weights_only=False)
    assert a["epoch"] == b["epoch"] == 1
    assert a["model"].keys() == b["model"].keys()
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k


def test_run_folder_is_not_overwritten(tmp_path, samples_dir):
    cfg = tiny_instance_config(samples_dir, epochs=1, iters=1)
    train(cfg, out=tmp_path / "r", progress=False)
    with pytest.raises(OutputExistsError, match="--resume"):
        train(cfg, out=tmp_path / "r", progress=False)
    with pytest.raises(ConfigError, match="no checkpoint_last.pt"):
        train(cfg, out=tmp_path / "empty", resume=True, progress=False)


def test_non_finite_loss_stops_with_a_clear_message(tmp_path, samples_dir):
    from morphoscope.engine.training import NonFiniteLossError

    cfg = tiny_instance_config(samples_dir, epochs=1, iters=2)
    cfg["train"].update(lr=1e30, warmup_iters=0, grad_clip=None, optimizer="sgd")
    with pytest.raises(NonFiniteLossError, match="lower train.lr"):
        train(cfg, out=tmp_path / "nan", progress=False)


def test_config_errors_are_readable(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump({"task": "instance", "data": {"train": "x"}, "model": {"backbone": "vgg"},
                                 "train": {"lr": -1}}))
    with pytest.raises(ConfigError) as err:
        load_config(p)
    msg = str(err.value)
    assert "c.yaml" in msg and "model.backbone" in msg and "train.lr" in msg
    p.write_text("task: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(p)
    p.write_text(yaml.safe_dump({"task": "painting", "data": {}}))
    with pytest.raises(ConfigError, match="unknown task"):
        load_config(p)


def test_shipped_configs_validate():
    from pathlib import Path

    for p in sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml")):
        cfg = load_config(p)
        from morphoscope.tasks import task_names

        assert cfg.task in task_names(), p


def test_same_engine_runs_under_torchrun(tmp_path, samples_dir):
    """Two CPU processes (gloo) through the real CLI: the run folder is written once, complete."""
    import subprocess
    import sys

    cfg = tiny_instance_config(samples_dir, epochs=1, iters=1)
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(cfg))
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                        "-m", "morphoscope", "train", str(p), "--out", str(tmp_path / "ddp")],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.count("run folder:") == 1
    ck = torch.load(tmp_path / "ddp" / "checkpoint_last.pt", weights_only=False)
    assert ck["epoch"] == 0 and ck["config"]["train"]["iters_per_epoch"] == 1


def test_offline_weights_file_loads_backbone_and_bad_files_are_named(tmp_path):
    """`weights: FILE` (or `train --weights FILE`): a torchvision ResNet state dict goes into the
    Mask R-CNN backbone; an unreadable file is a clear error, not a torch traceback."""
    import torchvision

    from morphoscope.tasks.instance.config import MaskRCNNModelConfig
    from morphoscope.tasks.instance.model import build_maskrcnn

    torch.manual_seed(1)
    resnet = torchvision.models.resnet18()
    torch.save(resnet.state_dict(), tmp_path / "resnet18.pth")
    cfg = MaskRCNNModelConfig(fpn_channels=16, box_head_size=32, mask_head_layers=[16],
                              weights=tmp_path / "resnet18.pth")
    model = build_maskrcnn(cfg, 1)
    assert torch.equal(model.backbone.body.layer4[1].conv2.weight, resnet.layer4[1].conv2.weight)
    (tmp_path / "broken.pth").write_bytes(b"not a torch file")
    with pytest.raises(ConfigError, match="broken.pth.*cannot read weights file"):
        build_maskrcnn(cfg.model_copy(update={"weights": tmp_path / "broken.pth"}), 1)
    with pytest.raises(ConfigError, match="weights file not found"):
        build_maskrcnn(cfg.model_copy(update={"weights": tmp_path / "none.pth"}), 1)
