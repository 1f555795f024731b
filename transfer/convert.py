"""A torchvision ResNet-50 state dict in, detectron2's backbone names out, as MoCo's convert-pretrain-to-detectron2.py.

    conv1, bn1                      -> stem.conv1, stem.conv1.norm
    layerN.i.convK, layerN.i.bnK    -> res{N+1}.i.convK, res{N+1}.i.convK.norm
    layerN.0.downsample.0 / .1      -> res{N+1}.0.shortcut / shortcut.norm
    fc, num_batches_tracked         -> dropped

Only an ImageNet ResNet-50 converts: anything else is refused with what it is. detectron2 loads weights
non-strictly, so coverage is checked here: every conv weight and BN weight/bias/running_mean/running_var of
the stem and res2-res5, exactly once.
"""
import re
from functools import lru_cache

import torch
import torchvision

from sslt_core.errors import CheckpointError
from sslt_core.resnets import RESNETS, resnet_structure

RESNET50_BLOCKS = (3, 4, 6, 3)


class ArchitectureError(CheckpointError):
    """The weights are not those of an ImageNet ResNet-50."""


@lru_cache(maxsize=1)
def resnet50_shapes():
    """torchvision ResNet-50's tensor shapes without fc and num_batches_tracked (built on the meta device)."""
    with torch.device("meta"):
        model = torchvision.models.resnet50()
    return {k: tuple(v.shape) for k, v in model.state_dict().items()
            if not k.startswith("fc.") and not k.endswith("num_batches_tracked")}


def check_resnet50(state_dict):
    """Raise ArchitectureError naming what the weights are if they are not an ImageNet ResNet-50."""
    conv1 = state_dict.get("conv1.weight")
    if conv1 is not None and conv1.dim() != 4:
        raise ArchitectureError(f"conv1.weight has shape {tuple(conv1.shape)}, not a convolution's 4 dimensions; "
                                "only an ImageNet ResNet-50 converts to detectron2's R50")
    if conv1 is not None and tuple(conv1.shape[2:]) != (7, 7):
        raise ArchitectureError(f"found a CIFAR-style stem (conv1 is {tuple(conv1.shape[2:])}, ImageNet ResNet-50 "
                                "has 7x7 and a max-pool); only an ImageNet ResNet-50 converts to detectron2's R50")
    bottleneck, blocks = resnet_structure(state_dict)
    if (bottleneck, blocks) != (True, RESNET50_BLOCKS):
        name = RESNETS.get((bottleneck, blocks), "a ResNet").replace("resnet", "ResNet-")
        name += "" if bottleneck else " with basic blocks (no conv3)"
        raise ArchitectureError(f"found {name}, blocks per stage {blocks}; only an ImageNet ResNet-50 "
                                f"{RESNET50_BLOCKS} converts")
    expected = resnet50_shapes()
    missing = sorted(set(expected) - set(state_dict))
    if missing:
        raise ArchitectureError(f"incomplete ResNet-50: {len(missing)} tensors missing, e.g. {missing[:3]}")
    for key, shape in expected.items():
        if tuple(state_dict[key].shape) != shape:
            raise ArchitectureError(f"found another width: {key} is {tuple(state_dict[key].shape)}, ResNet-50 has "
                                    f"{shape}; only the standard-width ImageNet ResNet-50 converts")


def detectron2_name(torchvision_name):
    """torchvision ResNet name -> detectron2 ResNet name (None for what detectron2 does not hold)."""
    if torchvision_name.startswith("fc.") or torchvision_name.endswith("num_batches_tracked"):
        return None
    name = torchvision_name
    if name.startswith(("conv1.", "bn1.")):
        name = "stem." + name
    name = re.sub(r"^layer(\d)", lambda m: f"res{int(m.group(1)) + 1}", name)
    name = name.replace("downsample.0", "shortcut").replace("downsample.1", "shortcut.norm")
    name = re.sub(r"bn(\d)", r"conv\1.norm", name)
    return name


def detectron2_resnet50_names():
    """Every tensor name of detectron2's R50 backbone that a conversion must fill."""
    return set(detectron2_resnet50_shapes())


def detectron2_resnet50_shapes():
    """{detectron2 name: shape} of the R50 backbone (the conversion renames tensors, it does not reshape them)."""
    return {detectron2_name(k): shape for k, shape in resnet50_shapes().items()}


def to_detectron2(state_dict):
    """Checked ResNet-50 torchvision state dict -> {detectron2 name: numpy array} covering the whole backbone."""
    check_resnet50(state_dict)
    converted = {}
    for key, value in state_dict.items():
        name = detectron2_name(key)
        if name is None:
            continue
        if name in converted:
            raise ArchitectureError(f"two tensors map to {name}; the checkpoint holds {key} twice")
        converted[name] = value.detach().cpu().float().numpy()
    expected = detectron2_resnet50_names()
    if set(converted) != expected:
        missing, extra = sorted(expected - set(converted)), sorted(set(converted) - expected)
        raise ArchitectureError(f"conversion does not cover detectron2's R50: missing {missing[:3]}, "
                                f"unexpected {extra[:3]}")
    return converted


def detectron2_checkpoint(converted, author):
    """The dict detectron2 reads from a .pkl: numpy arrays, suffix matching on (detectron2's DetectionCheckpointer)."""
    return {"model": converted, "__author__": author, "matching_heuristics": True}
