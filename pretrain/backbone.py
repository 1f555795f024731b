"""The encoder: a torchvision ResNet without its classifier, so an exported encoder is a plain torchvision
state dict that tools/convert_to_d2.py and the eval tools read as it is."""
from typing import Literal, get_args

import torch
import torchvision

Arch = Literal["resnet50", "resnet18"]
ARCHS = get_args(Arch)


def build_backbone(arch="resnet50", zero_init_residual=False):
    """(backbone, feature dim): fc replaced by Identity; zero-init residual as SimSiam does (sec. A)."""
    if arch not in ARCHS:
        raise ValueError(f"unknown arch '{arch}'; choose one of {', '.join(ARCHS)}")
    model = getattr(torchvision.models, arch)(zero_init_residual=zero_init_residual)
    dim = model.fc.in_features
    model.fc = torch.nn.Identity()
    return model, dim
