"""Every registered method trains on generated data and exports an encoder that torchvision and the converter read."""
import json
import math

import pytest
import torch
import torchvision
from safetensors import safe_open

from pretrain.methods import METHODS
from pretrain.train import TrainingDiverged, train
from sslt_core.errors import CheckpointError
from tests.conftest import run_tool
from tests.pretrain.tiny import tiny_config


def tiny_run(method, data, arch="resnet18", extra=()):
    return tiny_config(method, data, arch, extra)


def step_losses(output_dir):
    lines = [json.loads(line) for line in (output_dir / "metrics.jsonl").read_text().splitlines()]
    return [(line["step"], line["loss"]) for line in lines if "lr" in line]


@pytest.mark.parametrize("method", sorted(METHODS))
def test_method_trains_and_exports_a_torchvision_resnet50(method, demo_root, tmp_path):
    run = tiny_run(method, demo_root, arch="resnet50", extra=["train.epochs=1"])
    summary = train(run, tmp_path, progress=False)
    assert math.isfinite(summary["loss"]) and summary["step"] == 5  # 80 images, batch 16
    with safe_open(str(tmp_path / "encoder.safetensors"), framework="pt") as file:  # no pickle involved
        metadata = json.loads(file.metadata()["ssl_transfer"])
        encoder = {key: file.get_tensor(key) for key in file.keys()}  # noqa: SIM118 (safe_open is no dict)
    assert metadata["method"] == method and metadata["arch"] == "resnet50"
    model = torchvision.models.resnet50()
    missing, unexpected = model.load_state_dict(encoder, strict=False)
    assert sorted(missing) == ["fc.bias", "fc.weight"] and unexpected == []
    converted = run_tool("tools/convert_to_d2.py", tmp_path / "encoder.safetensors")
    assert converted.returncode == 0 and "detected: ours" in converted.stdout, converted.stderr


@pytest.mark.parametrize("method", sorted(METHODS))
def test_resuming_after_an_interruption_reproduces_the_losses_exactly(method, demo_root, tmp_path):
    monitors = ["train.diagnostics_every=1", "train.diagnostics_samples=16"]  # the label-free monitors too
    run = tiny_run(method, demo_root, extra=monitors)
    train(run, tmp_path / "straight", progress=False)
    interrupted = tiny_run(method, demo_root, extra=[*monitors, "train.max_steps=7"])  # inside the second epoch
    train(interrupted, tmp_path / "resumed", progress=False)
    assert [s for s, _ in step_losses(tmp_path / "resumed")] == list(range(1, 8))
    train(run, tmp_path / "resumed", resume=True, progress=False)
    assert len(step_losses(tmp_path / "straight")) == 15
    # every step's loss and every epoch's monitors, to the last digit
    for record in ("metrics.jsonl", "spectra.jsonl"):
        assert (tmp_path / "resumed" / record).read_text() == (tmp_path / "straight" / record).read_text()


def test_a_resume_refuses_another_recipe_and_accepts_run_control_changes(demo_root, tmp_path):
    train(tiny_run("simsiam", demo_root, extra=["train.max_steps=2"]), tmp_path, progress=False)
    written = (tmp_path / "config.yaml").read_text()
    for change in ("train.base_lr=0.1", "train.epochs=4", "train.weight_decay=0", "model.predictor=none"):
        with pytest.raises(CheckpointError, match=f"written with other {change.split('=')[0]};"):
            train(tiny_run("simsiam", demo_root, extra=["train.max_steps=3", change]), tmp_path, resume=True,
                  progress=False)
        assert (tmp_path / "config.yaml").read_text() == written  # the record still says what was trained
    train(tiny_run("simsiam", demo_root, extra=["train.max_steps=3", "train.checkpoint_every=5", "train.knn_every=2"]),
          tmp_path, resume=True, progress=False)
    assert [s for s, _ in step_losses(tmp_path)][-1] == 3
    assert "resumed from" in (tmp_path / "log.txt").read_text()


def test_a_nan_loss_stops_with_a_clear_error_and_keeps_the_last_good_checkpoint(demo_root, tmp_path, monkeypatch):
    from pretrain.simsiam import SimSiam

    forward = SimSiam.forward
    calls = {"n": 0}

    def poisoned(self, views):
        calls["n"] += 1
        out = forward(self, views)
        return {**out, "loss": out["loss"] * float("nan")} if calls["n"] == 8 else out

    monkeypatch.setattr(SimSiam, "forward", poisoned)
    with pytest.raises(TrainingDiverged, match="loss is nan at step 7 .*last good checkpoint"):
        train(tiny_run("simsiam", demo_root), tmp_path, progress=False)
    state = torch.load(tmp_path / "checkpoint.pth", map_location="cpu", weights_only=False)
    assert state["step"] == 5 and not (tmp_path / "encoder.safetensors").exists()
