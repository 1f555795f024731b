"""The proof that a conversion is right: detectron2's backbone holding the converted weights computes the same
res4 and res5 features as torchvision's ResNet-50 holding the original ones, both in eval mode, each with its
own input preprocessing (detectron2's from the detection config, torchvision's ImageNet normalisation).
"""
from pathlib import Path

import torch
import torchvision
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import get_cfg
from detectron2.layers import ShapeSpec
from detectron2.modeling.backbone import build_resnet_backbone

DETECTION_BASE_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "Base-RCNN-C4-BN.yaml"
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def relative_error(found, expected):
    return float((found - expected).norm() / expected.norm().clamp_min(1e-12))


@torch.no_grad()
def compare_features(detectron2_pkl, torchvision_state_dict, config_file=DETECTION_BASE_CONFIG, size=160, seed=0):
    """{"res4": relative error, "res5": relative error} on a random RGB image of size x size pixels."""
    cfg = get_cfg()
    cfg.merge_from_file(str(config_file), allow_unsafe=False)
    cfg.MODEL.RESNETS.NORM = "BN"  # eval mode: BN uses the converted running statistics
    cfg.MODEL.RESNETS.OUT_FEATURES = ["res4", "res5"]
    backbone = build_resnet_backbone(cfg, ShapeSpec(channels=3)).eval()
    DetectionCheckpointer(backbone).load(str(detectron2_pkl))  # detectron2's own loading, heuristics included

    reference = torchvision.models.resnet50()
    missing, _ = reference.load_state_dict(
        {k: v for k, v in torchvision_state_dict.items() if not k.startswith("fc.")}, strict=False)
    assert all(k.startswith("fc.") or k.endswith("num_batches_tracked") for k in missing), missing
    reference.eval()

    image = torch.randint(0, 256, (1, 3, size, size), generator=torch.Generator().manual_seed(seed)).float()
    d2_input = image if cfg.INPUT.FORMAT == "RGB" else image.flip(1)
    mean, std = torch.tensor(cfg.MODEL.PIXEL_MEAN).view(1, 3, 1, 1), torch.tensor(cfg.MODEL.PIXEL_STD).view(1, 3, 1, 1)
    features = backbone((d2_input - mean) / std)

    x = (image / 255 - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    x = reference.maxpool(reference.relu(reference.bn1(reference.conv1(x))))
    res4 = reference.layer3(reference.layer2(reference.layer1(x)))
    res5 = reference.layer4(res4)
    return {"res4": relative_error(features["res4"], res4), "res5": relative_error(features["res5"], res5)}
