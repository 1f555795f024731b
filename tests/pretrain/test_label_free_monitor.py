"""The label-free monitors of pretraining: a fixed probe set, and numbers equal to the formulas on embeddings
recomputed here from the checkpoint with torchvision's own transforms."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms
from torchvision.datasets import ImageFolder

from eval.label_free import probe_indices
from pretrain.methods import build_method
from pretrain.train import train
from sslt_core.safe_load import load_file
from tests.eval.test_diagnostics import rankme_reference
from tests.pretrain.tiny import tiny_config


def test_probe_indices_are_fixed_by_the_seed():
    assert probe_indices(100, 10, 3) == probe_indices(100, 10, 3)
    assert probe_indices(100, 10, 3) != probe_indices(100, 10, 4)
    assert probe_indices(7, 10, 0) == list(range(7))  # fewer images than asked: all of them
    assert len(set(probe_indices(100, 10, 3))) == 10


@pytest.fixture(scope="module")
def monitored(demo_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("monitored")
    run = tiny_config("simsiam", demo_root, extra=["train.epochs=2", "train.diagnostics_every=1",
                                                   "train.diagnostics_samples=24", "train.diagnostics_seed=5"])
    train(run, out, progress=False)
    return run, out


def test_every_epoch_line_carries_the_monitors_and_a_spectrum(monitored):
    run, out = monitored
    epochs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if "lr" not in line]
    spectra = [json.loads(line) for line in (out / "spectra.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in epochs] == [1, 2] == [s["epoch"] for s in spectra]
    for line in epochs:
        assert line["diag_samples"] == 24
        assert 1 <= line["diag_backbone_rankme"] <= 24 and 1 <= line["diag_projector_rankme"] <= 24
        assert 0 <= line["diag_alignment"] <= 4 and line["diag_uniformity"] <= 0
    assert len(spectra[0]["backbone"]) == 24  # min(N, D) eigenvalues, sorted
    assert spectra[0]["backbone"] == sorted(spectra[0]["backbone"], reverse=True)
    assert "label-free monitors:" in (out / "log.txt").read_text()


def test_the_last_monitor_equals_the_formula_on_the_checkpoints_embeddings(monitored):
    run, out = monitored
    method = build_method(run)
    method.load_state_dict(load_file(out / "checkpoint.pth")["model"])
    method.eval()
    # The probe images written out plainly: train images in ImageFolder order, a seeded permutation's first 24.
    folder = ImageFolder(str(Path(run.train.data) / "imagenet" / "train"))
    chosen = sorted(torch.randperm(len(folder), generator=torch.Generator().manual_seed(5))[:24].tolist())
    transform = transforms.Compose([transforms.Resize(round(32 / 0.875)), transforms.CenterCrop(32),
                                    transforms.ToTensor(),
                                    transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    images = torch.stack([transform(Image.open(folder.samples[i][0]).convert("RGB")) for i in chosen])
    with torch.no_grad():
        backbone = method.encoder(images).double().numpy()
        projector = method.projector(method.encoder(images)).double().numpy()
    last = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()][-1]
    assert last["diag_backbone_rankme"] == pytest.approx(rankme_reference(backbone), rel=1e-5)
    assert last["diag_projector_rankme"] == pytest.approx(rankme_reference(projector), rel=1e-5)
    centred = projector - projector.mean(axis=0)
    eigen = np.sort(np.linalg.eigvalsh(centred.T @ centred / (len(centred) - 1)))[::-1][:24]
    spectrum = json.loads((out / "spectra.jsonl").read_text().splitlines()[-1])["projector"]
    np.testing.assert_allclose(spectrum, np.clip(eigen, 0, None), rtol=1e-4, atol=1e-6 * eigen[0])
