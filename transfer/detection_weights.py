"""The weights a detection run starts from, checked before anything is written: detectron2's .pkl of a ResNet-50
(tools/convert_to_d2.py), or 'random'."""
from pathlib import Path

import numpy as np
import torch

from sslt_core.checkpoints import check_finite, is_detectron2_checkpoint
from sslt_core.errors import CheckpointError
from sslt_core.safe_load import load_file
from transfer.convert import detectron2_resnet50_shapes


def check_weights(weights, trust=False):
    """'' for random init, else the path of a detectron2 .pkl that covers the whole ResNet-50 backbone with finite
    values; read without running code from it unless `trust`."""
    if weights == "random":
        return ""
    path = Path(weights)
    if path.suffix != ".pkl":
        raise CheckpointError(f"--weights {weights}: detectron2 needs a converted .pkl; run "
                              f"python tools/convert_to_d2.py {weights}")
    checkpoint = load_file(path, trust)
    if not is_detectron2_checkpoint(checkpoint):
        raise CheckpointError(f"--weights {weights} is not a detectron2 checkpoint (no 'model'/'__author__'); "
                              "convert it with python tools/convert_to_d2.py")
    model = checkpoint["model"]
    if not isinstance(model, dict) or not all(isinstance(v, np.ndarray) for v in model.values()):
        raise CheckpointError(f"--weights {weights}: its 'model' must map names to numpy arrays, found a "
                              f"{type(model).__name__}; re-convert it with python tools/convert_to_d2.py")
    expected = detectron2_resnet50_shapes()
    missing = set(expected) - set(model)
    if missing:
        raise CheckpointError(f"--weights {weights} covers {len(expected) - len(missing)} of detectron2's "
                              f"{len(expected)} R50 tensors (missing e.g. {sorted(missing)[:2]}); re-convert it "
                              "with python tools/convert_to_d2.py")
    wrong = [(name, np.shape(model[name]), shape) for name, shape in sorted(expected.items())
             if tuple(np.shape(model[name])) != shape]
    if wrong:  # detectron2 skips a tensor of another shape with a warning: the run would train from random init
        name, found, shape = wrong[0]
        raise CheckpointError(f"--weights {weights}: {len(wrong)} tensors have another shape than detectron2's R50 "
                              f"(e.g. {name}: {found}, expected {shape}); re-convert it with python "
                              "tools/convert_to_d2.py")
    try:
        check_finite({k: torch.from_numpy(np.asarray(v)) for k, v in model.items() if np.asarray(v).dtype.kind == "f"})
    except CheckpointError as error:
        raise CheckpointError(f"--weights {weights}: {error}") from None
    if checkpoint.get("matching_heuristics") is not True:  # without it detectron2 matches none of these names
        raise CheckpointError(f"--weights {weights} lacks 'matching_heuristics': True, without which detectron2 "
                              "loads none of its backbone names and trains from random init; re-convert it with "
                              "python tools/convert_to_d2.py")
    return str(path)
