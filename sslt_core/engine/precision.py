"""Mixed precision: bf16 autocast, with channels_last memory on a GPU."""
from contextlib import nullcontext

import torch


def precision_setup(device, precision):
    """(autocast context, channels_last?, what to say in the log) for precision auto | bf16 | fp32 on `device`."""
    if precision == "auto":
        if device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16), True, "precision auto: bf16 autocast with " \
                "channels_last on the GPU"
        return nullcontext(), False, "precision auto: fp32 on the CPU (train.precision=bf16 runs bf16 autocast there)"
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16), device.type == "cuda", \
            f"precision bf16: bf16 autocast on the {device.type.upper()}"
    return nullcontext(), False, "precision fp32"


def to_channels_last(tensors):
    """Image batches in channels_last memory (what cuDNN's bf16 convolutions are fastest on)."""
    return [t.contiguous(memory_format=torch.channels_last) for t in tensors]
