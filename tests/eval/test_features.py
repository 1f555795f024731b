"""Frozen-encoder features from any checkpoint layout, cached with a manifest; bad splits fail clearly."""
import shutil

import numpy as np
import pytest
import torch
import torchvision

from eval.features import build_encoder, eval_transform, split_features
from sslt_core.errors import CheckpointError, DatasetError
from tests.conftest import run_tool
from tests.sslt_core.layouts import make_layout, random_resnet


@pytest.fixture(scope="module")
def moco_checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "moco.pth.tar"
    torch.save(make_layout("moco", random_resnet(torchvision.models.resnet18, seed=3),
                           random_resnet(torchvision.models.resnet18, seed=4)), path)
    return path


def test_features_are_those_of_torchvision_holding_the_query_encoder(moco_checkpoint, demo_root, tmp_path):
    encoder, description = build_encoder(moco_checkpoint)
    assert description.startswith("resnet18, moco checkpoint")
    splits, classes, reused = split_features(encoder, description, moco_checkpoint, demo_root, crop_size=32,
                                             cache_dir=tmp_path)
    reference = torchvision.models.resnet18()
    reference.load_state_dict(random_resnet(torchvision.models.resnet18, seed=3))
    reference.fc = torch.nn.Identity()
    reference.eval()
    dataset = torchvision.datasets.ImageFolder(str(demo_root / "imagenet" / "val"), transform=eval_transform(32))
    with torch.no_grad():
        expected = reference(torch.stack([dataset[i][0] for i in range(5)]))
    features, labels = splits["val"]
    np.testing.assert_allclose(features[:5], expected.numpy(), rtol=1e-4, atol=1e-5)
    assert labels.tolist() == dataset.targets and classes == dataset.classes
    assert reused == {"train": False, "val": False}


def test_a_second_evaluation_reuses_the_cache_and_a_changed_split_does_not(demo_root, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(demo_root / "imagenet", data / "imagenet")
    encoder, description = build_encoder("random", "resnet18")
    first, _, _ = split_features(encoder, description, "random", data, 32, tmp_path / "cache")
    second, _, reused = split_features(encoder, description, "random", data, 32, tmp_path / "cache")
    assert reused == {"train": True, "val": True}
    np.testing.assert_array_equal(first["val"][0], second["val"][0])
    (data / "imagenet" / "val" / "star" / "star_00000.jpg").unlink()
    third, _, reused = split_features(encoder, description, "random", data, 32, tmp_path / "cache")
    assert reused == {"train": True, "val": False} and len(third["val"][1]) == len(first["val"][1]) - 1


def test_a_test_split_missing_classes_keeps_the_training_class_indices(demo_root, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(demo_root / "imagenet", data / "imagenet")
    shutil.rmtree(data / "imagenet" / "val" / "arrow")  # the first class: every later index would shift
    encoder, description = build_encoder("random", "resnet18")
    splits, classes, _ = split_features(encoder, description, "random", data, 32)
    assert "arrow" in classes
    assert classes.index("arrow") not in set(splits["val"][1].tolist())
    assert set(splits["val"][1].tolist()) == set(range(len(classes))) - {classes.index("arrow")}


def test_mismatched_class_lists_and_an_empty_split_fail_clearly(demo_root, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(demo_root / "imagenet", data / "imagenet")
    shutil.copytree(data / "imagenet" / "val" / "star", data / "imagenet" / "val" / "unicorn")
    encoder, description = build_encoder("random", "resnet18")
    with pytest.raises(DatasetError, match=r"mismatched class lists: .* has classes \['unicorn'\]"):
        split_features(encoder, description, "random", data, 32)
    result = run_tool("tools/eval_knn.py", "--weights", "random", "--arch", "resnet18", "--data", data,
                      "--image-size", "32", "--workers", "0", "--cache-dir", tmp_path / "cache")
    assert result.returncode != 0 and "mismatched class lists" in result.stderr.splitlines()[-1]

    shutil.rmtree(data / "imagenet" / "val")
    for name in demo_root.joinpath("imagenet", "train").iterdir():
        (data / "imagenet" / "val" / name.name).mkdir(parents=True)
    with pytest.raises(DatasetError, match="empty"):
        split_features(encoder, description, "random", data, 32)


def test_the_knn_and_linear_tools_run_end_to_end(moco_checkpoint, demo_root, tmp_path):
    knn = run_tool("tools/eval_knn.py", "--weights", moco_checkpoint, "--data", demo_root, "--image-size", "32",
                   "--k", "5", "20", "--workers", "0", "--cache-dir", tmp_path, "--output", tmp_path / "knn.json")
    assert knn.returncode == 0, knn.stderr
    assert "kNN k=   5 T=0.07: top-1" in knn.stdout and (tmp_path / "knn.json").is_file()
    linear = run_tool("tools/eval_linear.py", "--weights", moco_checkpoint, "--data", demo_root, "--image-size", "32",
                      "--cached", "--epochs", "3", "--batch-size", "32", "--workers", "0", "--cache-dir", tmp_path)
    assert linear.returncode == 0, linear.stderr
    assert "linear probe (moco protocol, cached center-crop features (fast)): top-1" in linear.stdout


def test_an_encoder_that_gives_nan_features_is_refused_not_scored(demo_root, tmp_path):
    encoder, description = build_encoder("random", "resnet18")
    with torch.no_grad():
        encoder.layer4[1].bn2.running_var[0] = -1.0  # sqrt of a negative variance: NaN in one feature channel
    with pytest.raises(CheckpointError, match=r"NaN or infinite features for \d+ of \d+ images"):
        split_features(encoder, description, "random", demo_root, 32, tmp_path / "cache")
    assert not any((tmp_path / "cache").glob("*.npz"))  # nothing cached that a later run would reuse


# The evaluation protocol of every published kNN / linear probe (MoCo's main_lincls.py, SimSiam's, DINO's
# eval_knn.py): Resize(256) then CenterCrop(224) at ImageNet size, i.e. the shorter side resized to 256/224 of the
# crop. Written here from those numbers, not from the module's constant.
def protocol_resize(crop):
    return round(crop * 256 / 224)


def demo_crop():
    import yaml

    from tests.conftest import REPO

    return yaml.safe_load((REPO / "configs" / "pipeline" / "demo.yaml").read_text())["image_size"]


def test_the_evaluation_transform_resizes_and_crops_as_the_protocol(demo_root, tmp_path):
    from PIL import Image
    from torchvision import transforms

    assert protocol_resize(224) == 256 and demo_crop() == 64 and protocol_resize(64) == 73
    rng = np.random.default_rng(0)
    wide = tmp_path / "wide.png"  # not square: the shorter side is the one resized
    Image.fromarray(rng.integers(0, 256, (300, 451, 3), dtype=np.uint8)).save(wide)
    demo_image = next((demo_root / "imagenet" / "val").rglob("*.jpg"))
    for crop in (224, demo_crop(), 32):
        steps = {type(t).__name__: t for t in eval_transform(crop).transforms}
        assert steps["Resize"].size == protocol_resize(crop) and tuple(steps["CenterCrop"].size) == (crop, crop)
        reference = transforms.Compose([transforms.Resize(protocol_resize(crop)), transforms.CenterCrop(crop),
                                        transforms.ToTensor(),
                                        transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
        for path in (wide, demo_image):
            image = Image.open(path).convert("RGB")
            ours = eval_transform(crop)(image)
            assert ours.shape == (3, crop, crop)
            torch.testing.assert_close(ours, reference(image), rtol=0, atol=0)


def test_a_changed_crop_ratio_changes_the_feature_cache_key(demo_root, tmp_path, monkeypatch):
    import eval.features

    encoder, description = build_encoder("random", "resnet18")
    split_features(encoder, description, "random", demo_root, 32, tmp_path, splits=("val",))
    monkeypatch.setattr(eval.features, "CROP_RATIO", eval.features.CROP_RATIO * 0.8)  # another ratio
    _, _, reused = split_features(encoder, description, "random", demo_root, 32, tmp_path, splits=("val",))
    assert reused == {"val": False} and len(list(tmp_path.glob("val-*.npz"))) == 2
