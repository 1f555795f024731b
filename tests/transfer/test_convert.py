"""Every checkpoint layout converts, and detectron2 holding the result computes torchvision's features."""
import pickle

import pytest
import torch
import torchvision
from detectron2.checkpoint import DetectionCheckpointer

from sslt_core.checkpoints import read_encoder
from tests.conftest import REPO, run_tool
from tests.sslt_core.layouts import LAYOUTS, make_layout, random_resnet
from transfer.convert import detectron2_name, to_detectron2
from transfer.verify import compare_features


@pytest.fixture(scope="module")
def encoders():
    return random_resnet(seed=0), random_resnet(seed=1)  # online / query / teacher; momentum / student


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_every_layout_converts_and_matches_torchvision_features_through_detectron2(layout, encoders, tmp_path):
    online, other = encoders
    checkpoint = tmp_path / "checkpoint.pth"
    torch.save(make_layout(layout, online, other), checkpoint)

    encoder = read_encoder(checkpoint)
    assert encoder.source == LAYOUTS[layout]
    pkl = tmp_path / "converted.pkl"
    with open(pkl, "wb") as file:
        pickle.dump({"model": to_detectron2(encoder.state_dict), "__author__": "test", "matching_heuristics": True},
                    file)
    errors = compare_features(pkl, online)  # against the original encoder: the right one was kept
    assert max(errors.values()) <= 1e-4, errors


def test_the_tool_writes_a_detectron2_pickle_and_reports_what_it_kept_and_dropped(encoders, tmp_path):
    online, other = encoders
    checkpoint = tmp_path / "moco_v2_800ep_pretrain.pth.tar"
    torch.save(make_layout("moco", online, other), checkpoint)
    result = run_tool("tools/convert_to_d2.py", checkpoint, "--verify")
    assert result.returncode == 0, result.stderr
    assert "detected: moco" in result.stdout
    assert "module.encoder_k (320)" in result.stdout and "module.queue (1)" in result.stdout
    assert "kept:     265 tensors" in result.stdout and "verify:   relative error res4" in result.stdout
    output = tmp_path / "moco_v2_800ep_pretrain.pkl"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([checkpoint.name, output.name])
    with open(output, "rb") as file:
        data = pickle.load(file, encoding="latin1")
    assert data["matching_heuristics"] is True and data["__author__"]
    for tv_name, value in online.items():
        name = detectron2_name(tv_name)
        if name is not None:
            assert (torch.from_numpy(data["model"][name]) == value).all(), name


def test_detectron2_loads_the_converted_weights_into_the_c4_backbone_and_roi_head(encoders, tmp_path):
    from detectron2.config import get_cfg
    from detectron2.modeling import build_model

    import transfer.detection  # noqa: F401  registers Res5ROIHeadsExtraNorm

    checkpoint = tmp_path / "simsiam.pth"
    torch.save(make_layout("simsiam", *encoders), checkpoint)
    assert run_tool("tools/convert_to_d2.py", checkpoint).returncode == 0
    cfg = get_cfg()
    cfg.merge_from_file(str(REPO / "configs" / "voc07.yaml"))
    cfg.MODEL.DEVICE, cfg.MODEL.RESNETS.NORM = "cpu", "BN"
    model = build_model(cfg)
    DetectionCheckpointer(model).load(str(tmp_path / "simsiam.pkl"))
    online = encoders[0]
    assert torch.equal(model.backbone.stem.conv1.weight, online["conv1.weight"])
    assert torch.equal(model.backbone.res4[5].conv3.norm.running_var, online["layer3.5.bn3.running_var"])
    assert torch.equal(model.roi_heads.res5[0].shortcut.weight, online["layer4.0.downsample.0.weight"])
    assert isinstance(model.roi_heads.res5.norm, torch.nn.BatchNorm2d)  # MoCo's extra norm after res5


def refused(tmp_path, obj=None, name="bad.pth", raw=None):
    path = tmp_path / name
    if raw is not None:
        path.write_bytes(raw)
    else:
        torch.save(obj, path)
    before = sorted(tmp_path.iterdir())
    result = run_tool("tools/convert_to_d2.py", path)
    assert result.returncode != 0
    assert sorted(tmp_path.iterdir()) == before  # no output, no leftovers
    assert result.stdout == "" and result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    return result.stderr


@pytest.mark.parametrize("builder, expected", [
    (torchvision.models.resnet18, "found ResNet-18 with basic blocks"),
    (torchvision.models.resnet101, "found ResNet-101"),
    (torchvision.models.wide_resnet50_2, "found another width"),
])
def test_other_architectures_are_refused_with_what_they_are(tmp_path, builder, expected):
    message = refused(tmp_path, {"state_dict": {"module.encoder_q." + k: v for k, v in builder().state_dict().items()}})
    assert expected in message


def test_a_cifar_stem_is_refused(tmp_path):
    model = torchvision.models.resnet50()
    model.conv1 = torch.nn.Conv2d(3, 64, 3, 1, 1, bias=False)  # solo-learn's CIFAR stem
    backbone = {"backbone." + k: v for k, v in model.state_dict().items()}
    checkpoint = {"pytorch-lightning_version": "2.1", "state_dict": backbone}
    assert "CIFAR-style stem" in refused(tmp_path, checkpoint)


def test_an_unknown_layout_is_refused_with_its_keys(tmp_path):
    message = refused(tmp_path, {"net": {"features.0.weight": torch.zeros(3)}, "step": 3})
    assert "unknown checkpoint layout" in message and "'net'" in message and "--source" in message


def test_a_file_that_is_not_a_checkpoint_is_refused(tmp_path):
    assert "is not a PyTorch checkpoint" in refused(tmp_path, raw=b"hello, not a checkpoint")


def test_a_torch_saved_pkl_is_refused(tmp_path):
    message = refused(tmp_path, {"state_dict": random_resnet()}, name="weights.pkl")
    assert "written with torch.save" in message and "weights.pth" in message


def test_an_already_converted_pickle_is_refused(tmp_path):
    raw = pickle.dumps({"model": {}, "__author__": "someone"})
    assert "already a detectron2 checkpoint" in refused(tmp_path, name="done.pkl", raw=raw)
