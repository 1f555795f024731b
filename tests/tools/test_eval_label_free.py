"""tools/eval_label_free.py end to end: RankMe and uniformity equal the formulas on features recomputed here with
torchvision's own transforms; a collapsed representation is reported, not a crash."""
import json
from pathlib import Path

import pytest
import torch
import torchvision
from PIL import Image
from torchvision import transforms
from torchvision.datasets import ImageFolder

from tests.eval.test_diagnostics import rankme_reference, uniformity_reference


def test_the_tools_numbers_are_the_formulas_on_the_chosen_images(tool, demo_root, tmp_path):
    code, out, err = tool("eval_label_free", "--weights", "random", "--arch", "resnet18", "--data", demo_root,
                          "--image-size", "32", "--samples", "24", "--seed", "3", "--workers", "0",
                          "--output", tmp_path / "lf.json")
    assert code == 0, err
    record = json.loads((tmp_path / "lf.json").read_text())["details"]["label_free"]
    folder = ImageFolder(str(Path(demo_root) / "imagenet" / "train"))
    chosen = sorted(torch.randperm(len(folder), generator=torch.Generator().manual_seed(3))[:24].tolist())
    transform = transforms.Compose([transforms.Resize(37), transforms.CenterCrop(32), transforms.ToTensor(),
                                    transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # --weights random draws its weights from seed 0
        model = torchvision.models.resnet18()
    model.fc = torch.nn.Identity()
    images = torch.stack([transform(Image.open(folder.samples[i][0]).convert("RGB")) for i in chosen])
    with torch.no_grad():
        features = model.eval()(images).double().numpy()
    assert record["samples"] == 24 and record["dim"] == 512
    assert record["rankme"] == pytest.approx(rankme_reference(features), rel=1e-5)
    assert record["uniformity"] == pytest.approx(uniformity_reference(features), rel=1e-5)
    assert "fewer than the paper's 25600" in out


def test_a_collapsed_representation_is_reported_with_alpha_undefined(tool, demo_root, tmp_path):
    code, out, err = tool("eval_label_free", "--weights", "random", "--arch", "resnet18", "--data", demo_root,
                          "--image-size", "32", "--samples", "2", "--workers", "0", "--output", tmp_path / "lf.json")
    assert code == 0, err
    record = json.loads((tmp_path / "lf.json").read_text())["details"]["label_free"]
    assert record["alpha"] is None and "1 non-zero eigenvalue" in record["alpha_note"]
    assert "alpha-ReQ not defined" in out
