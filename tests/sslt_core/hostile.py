"""Hostile files for the tests: checkpoints whose unpickling would run a command, corrupt ones, odd images."""
import argparse
import io
import os
import pickle

import numpy as np
import torch
from PIL import Image

from tests.sslt_core.layouts import make_layout, random_resnet


class Payload:
    """Unpickling this runs `touch MARKER`: if MARKER exists after a load, the load ran code from the file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def malicious_pth(path, marker):
    """A MoCo-layout checkpoint (it would convert) with a payload beside the state dict."""
    checkpoint = make_layout("moco", random_resnet(seed=0), random_resnet(seed=1))
    checkpoint["payload"] = Payload(marker)
    torch.save(checkpoint, path)
    return path


def malicious_pkl(path, marker):
    """A detectron2-format pickle with a payload."""
    from transfer.convert import to_detectron2

    data = {"model": to_detectron2(random_resnet()), "__author__": "x", "payload": Payload(marker)}
    path.write_bytes(pickle.dumps(data))
    return path


class AttributeDict(dict):
    """Like Lightning's AttributeDict of hyper-parameters: a class no allow-list admits."""


def lightning_like(path):
    """A solo-learn-like checkpoint holding an object of a type no allow-list admits."""
    checkpoint = make_layout("solo", random_resnet(seed=0), random_resnet(seed=1))
    checkpoint["hyper_parameters"] = AttributeDict(lr=1)
    torch.save(checkpoint, path)
    return path


def dino_with_args(path):
    """DINO's full checkpoint: the teacher and student, and `args`, an argparse.Namespace (allow-listed)."""
    checkpoint = make_layout("dino", random_resnet(seed=0), random_resnet(seed=1))
    checkpoint["args"] = argparse.Namespace(arch="resnet50", lr=0.03, out_dim=60000)
    checkpoint["numpy_stats"] = np.arange(3, dtype=np.float32)
    torch.save(checkpoint, path)
    return path


def with_random_bytes(path, seed=0):
    """A torchvision checkpoint whose layer3 weights had 4 KiB overwritten by random bytes (NaN, 3e38...)."""
    state = random_resnet()
    weight = state["layer3.0.conv1.weight"].flatten()
    noise = np.random.default_rng(seed).integers(0, 256, 4096, dtype=np.uint8).view(np.float32)
    weight[:1024] = torch.from_numpy(noise.copy())
    state["layer3.0.conv1.weight"] = weight.view_as(state["layer3.0.conv1.weight"])
    torch.save(state, path)
    return path


def truncated(path, source):
    data = source.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def plain_pickle(path):
    path.write_bytes(pickle.dumps({"state_dict": {"conv1.weight": np.zeros(3)}}))
    return path


def png16(path, values):
    """A 16-bit grayscale PNG holding `values` (uint16 array)."""
    buffer = io.BytesIO()
    height, width = values.shape
    Image.frombytes("I;16", (width, height), values.astype("<u2").tobytes()).save(buffer, format="PNG")
    path.write_bytes(buffer.getvalue())
    return path


def rendered(line):
    """A line as a terminal shows it: each carriage return goes back to column 0 and overwrites (tqdm's bars)."""
    shown = []
    for part in line.split("\r"):
        shown[: len(part)] = part
    return "".join(shown).rstrip()


def assert_one_line_error(code, stderr, expected):
    """A tool's refusal: a non-zero exit, its last stderr line `error: ...` holding `expected` (on a line of its
    own, as a terminal shows it: no progress bar's remains before or after it), no traceback."""
    lines = stderr.strip().splitlines()
    assert code != 0 and lines and lines[-1].startswith("error: "), stderr[-2000:]
    assert expected in lines[-1], lines[-1]
    assert rendered(stderr.rstrip("\n").split("\n")[-1]) == lines[-1].rstrip(), repr(stderr[-400:])
    assert "Traceback" not in stderr, stderr[-2000:]
