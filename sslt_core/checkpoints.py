"""Finding the encoder in a published self-supervised checkpoint, whatever its layout.

`read_encoder(path, source="auto")` returns the online / query / teacher ResNet encoder in torchvision's
names (conv1, bn1, layer1..4, fc), with what was detected and what was left out. The converter to
detectron2 and the feature extractor for kNN / linear probe both start here. Files are read without running
code (sslt_core/safe_load.py), and every weight is checked to be finite and of a plausible size: a corrupt file
is refused instead of converted.

Layouts (the key prefixes of the encoder, and what is left out):
    torchvision          conv1, bn1, layer1..4                          fc
    MoCo v1/v2           [module.]encoder_q.                            encoder_k, queue, encoder_q.fc
    MoCo v3              module.base_encoder.                           momentum_encoder, predictor
    SimSiam              module.encoder.                                encoder.fc, predictor
    SwAV                 module.                                        projection_head, prototypes
    DINO (ResNet-50)     teacher: module.backbone. / plain backbone     head, student
    VISSL                classy_state_dict...trunk._feature_blocks.     heads
    solo-learn           Lightning state_dict, backbone.                momentum_backbone, projector
    mmselfsup            state_dict, backbone.                          neck, head
    lightly              backbone.0 (conv1), .1 (bn1), .4-.7 (layer1-4)  projection head
"""
from collections import Counter
from dataclasses import dataclass, field

import torch

from sslt_core.errors import CheckpointError
from sslt_core.safe_load import load_file

# Trained ResNet weights and BN statistics stay far below this; random bytes read as float32 do not.
MAX_ABS_WEIGHT = 1e8


@dataclass(frozen=True)
class Source:
    name: str
    containers: tuple  # nested keys leading to the state dict; () is the top level
    prefixes: tuple  # encoder key prefixes, online / query / teacher encoder first
    sequential: bool = False  # lightly's nn.Sequential(*resnet.children()[:-1]): 0, 1, 4..7
    marker: str = ""  # in auto-detection, a top-level key that must be present, to tell alike layouts apart


# Auto-detection tries these in order: the more specific layouts first.
SOURCES = (
    Source("ours", (("encoder",), ("model",)), ("", "encoder."), marker="ssl_transfer"),
    Source("moco", (("state_dict",), ()), ("module.encoder_q.", "encoder_q.")),
    Source("mocov3", (("state_dict",), ()), ("module.base_encoder.", "base_encoder.")),
    Source("simsiam", (("state_dict",), ()), ("module.encoder.", "encoder.")),
    Source("dino", (("teacher",), ("state_dict",), ()), ("module.backbone.", "backbone.", ""), marker="teacher"),
    Source("vissl", (("classy_state_dict", "base_model", "model", "trunk"), ("model_state_dict",), ()),
           ("_feature_blocks.", "trunk._feature_blocks.")),
    Source("lightly", (("state_dict",), ("model",), ()), ("backbone.",), sequential=True),
    Source("solo", (("state_dict",), ()), ("backbone.",), marker="pytorch-lightning_version"),
    Source("mmselfsup", (("state_dict",), ()), ("backbone.",)),
    Source("swav", (("state_dict",), ()), ("module.",)),
    Source("torchvision", (("state_dict",), ("model",), ()), ("",)),
)
SOURCE_NAMES = tuple(s.name for s in SOURCES)
_SEQUENTIAL = {"0": "conv1", "1": "bn1", "4": "layer1", "5": "layer2", "6": "layer3", "7": "layer4"}
_RESNET_PARTS = {"conv1", "bn1", "layer1", "layer2", "layer3", "layer4", "fc"}


@dataclass
class EncoderWeights:
    source: str
    container: str  # where the state dict was, e.g. "state_dict" or "(top level)"
    prefix: str
    state_dict: dict  # torchvision names -> tensors, fc included if the checkpoint had one
    dropped: Counter = field(default_factory=Counter)  # key group -> number of tensors left out


def is_detectron2_checkpoint(obj):
    """detectron2's own .pkl format: a dict with 'model' and '__author__' (DetectionCheckpointer._load_file)."""
    return isinstance(obj, dict) and "model" in obj and "__author__" in obj


def _container(obj, keys):
    for key in keys:
        if not isinstance(obj, dict) or key not in obj:
            return None
        obj = obj[key]
    if isinstance(obj, dict) and obj and all(torch.is_tensor(v) for v in obj.values()):
        return obj
    return None


def _has_encoder(state_dict, prefix, sequential):
    first, deep = ("0.weight", "7.0.conv1.weight") if sequential else ("conv1.weight", "layer4.0.conv1.weight")
    return prefix + first in state_dict and prefix + deep in state_dict


def _group(key, prefix):
    if prefix and key.startswith(prefix):
        return prefix + key[len(prefix):].split(".")[0]
    parts = key.split(".")
    return ".".join(parts[:2]) if parts[0] == "module" and len(parts) > 1 else parts[0]


def find_encoder(checkpoint, source="auto"):
    """The encoder inside a loaded checkpoint, as EncoderWeights in torchvision names."""
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"found a {type(checkpoint).__name__}, not a checkpoint dict; "
                              "save the model's state_dict() instead")
    if is_detectron2_checkpoint(checkpoint):
        raise CheckpointError("this is already a detectron2 checkpoint (it has 'model' and '__author__'); "
                              "give it to tools/train_det.py --weights as it is")
    if source != "auto" and source not in SOURCE_NAMES:
        raise CheckpointError(f"unknown --source '{source}'; choose auto or one of {', '.join(SOURCE_NAMES)}")
    candidates = [s for s in SOURCES if source in ("auto", s.name)]
    for spec in candidates:
        if source == "auto" and spec.marker and spec.marker not in checkpoint:
            continue
        for keys in spec.containers:
            state_dict = _container(checkpoint, keys)
            if state_dict is None:
                continue
            for prefix in spec.prefixes:
                if _has_encoder(state_dict, prefix, spec.sequential):
                    return _extract(spec, ".".join(keys) or "(top level)", prefix, state_dict)
    return _explain_unknown(checkpoint, source)


def _extract(spec, container, prefix, state_dict):
    kept, dropped = {}, Counter()
    if not all(isinstance(key, str) for key in state_dict):
        raise CheckpointError(f"the state dict at {container} has keys that are not names (e.g. "
                              f"{next(k for k in state_dict if not isinstance(k, str))!r}); save model.state_dict()")
    for key, value in state_dict.items():
        if not key.startswith(prefix):
            dropped[_group(key, prefix)] += 1
            continue
        name = key[len(prefix):]
        if spec.sequential:
            head, _, rest = name.partition(".")
            if head not in _SEQUENTIAL:
                dropped[_group(key, prefix)] += 1
                continue
            name = f"{_SEQUENTIAL[head]}.{rest}"
        if name.split(".")[0] not in _RESNET_PARTS:  # e.g. SwAV's module.projection_head, module.prototypes
            dropped[_group(key, prefix)] += 1
            continue
        kept[name] = value
    check_finite({k: v for k, v in kept.items() if not k.startswith("fc.")})  # fc is replaced downstream
    return EncoderWeights(spec.name, container, prefix, kept, dropped)


def check_finite(state_dict):
    """Raise CheckpointError naming the first floating-point tensor with a NaN, an inf or |value| > MAX_ABS_WEIGHT,
    or BN statistics with a negative variance (which turn every feature into NaN)."""
    for name, value in state_dict.items():
        if not torch.is_tensor(value):
            continue
        if value.layout != torch.strided or value.device.type == "meta":
            raise CheckpointError(f"tensor {name} is a {value.layout} tensor on {value.device.type}, not a dense "
                                  "tensor of values; save the model's state_dict() from a real model")
        if not name.endswith("num_batches_tracked") and not value.is_floating_point():
            raise CheckpointError(f"tensor {name} holds {value.dtype} values, not floating-point weights: the file is "
                                  "corrupt; download or export it again")
        if value.numel() == 0:
            continue
        if name.endswith("running_var") and bool((value < 0).any()):
            raise CheckpointError(f"tensor {name} holds {int((value < 0).sum())} negative variances of "
                                  f"{value.numel()}: the file is corrupt; download or export it again")
        bad = ~torch.isfinite(value)
        if bad.any():
            raise CheckpointError(f"tensor {name} holds {int(bad.sum())} NaN or infinite values of {value.numel()}: "
                                  "the file is corrupt; download or export it again")
        largest = float(value.abs().max())
        if largest > MAX_ABS_WEIGHT:
            raise CheckpointError(f"tensor {name} holds a value of {largest:.3g}, implausible for trained weights "
                                  f"(> {MAX_ABS_WEIGHT:g}): the file is corrupt; download or export it again")


def _explain_unknown(checkpoint, source):
    top = sorted(map(str, checkpoint))[:6]
    tensors = next((d for d in [checkpoint] + [v for v in checkpoint.values() if isinstance(v, dict)]
                    if d and all(torch.is_tensor(x) for x in d.values())), {})
    sample = sorted(tensors)[:3]
    what = f"--source {source}" if source != "auto" else "any known layout"
    raise CheckpointError(
        f"unknown checkpoint layout: no ResNet encoder matching {what} (top-level keys {top}, "
        f"e.g. tensors {sample}); pass --source with one of {', '.join(SOURCE_NAMES)} or save a torchvision "
        "ResNet state_dict")


def read_encoder(path, source="auto", trust=False):
    """EncoderWeights of the checkpoint file `path` (loaded without running its code unless `trust`)."""
    try:
        return find_encoder(load_file(path, trust), source)
    except CheckpointError as error:
        raise CheckpointError(f"{path}: {error}" if not str(error).startswith(str(path)) else str(error)) from None
