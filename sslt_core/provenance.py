"""Where a number came from: the toolkit's version and commit, the library versions, the device (recorded with
every evaluation record, evaluations/record.py)."""
import functools
import importlib
import importlib.metadata
import platform
import subprocess
from pathlib import Path

import torch

from sslt_core.fingerprint import file_digest

REPOSITORY = Path(__file__).resolve().parents[1]


def _version(*distributions, module=None):
    """The version of the first installed distribution, or the module's __version__ (detectron2 installs as
    sal-detectron2 here, or from a user's own build under any name)."""
    for name in distributions:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    if module is not None:
        try:
            return importlib.import_module(module).__version__
        except (ImportError, AttributeError):
            return None
    return None


@functools.lru_cache(maxsize=1)
def git_commit():
    """The checkout's commit (with '+dirty' when files differ from it), or None outside a git checkout."""
    if not (REPOSITORY / ".git").exists():
        return None
    try:
        commit = subprocess.run(["git", "-C", str(REPOSITORY), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPOSITORY), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty else "")


def environment(device=None):
    """Versions and hardware as this process sees them; `device` the torch device the work ran on."""
    device = torch.device(device) if device is not None else torch.device(
        "cuda" if torch.cuda.is_available() else "cpu")
    cuda = device.type == "cuda"
    return {
        "toolkit": _version("ssl-transfer"), "git_commit": git_commit(), "python": platform.python_version(),
        "torch": torch.__version__, "torchvision": _version("torchvision"),
        "detectron2": _version("detectron2", "sal-detectron2", module="detectron2"),
        "faiss": _version("faiss-cpu", "faiss-gpu", "faiss", module="faiss"), "cuda": torch.version.cuda,
        "device": device.type, "device_count": torch.cuda.device_count() if cuda else 1,
        "device_name": torch.cuda.get_device_name(device) if cuda else platform.processor() or platform.machine(),
    }


def weights_digest(path):
    """sha256 of a checkpoint file, or "random" for random init."""
    return "random" if str(path) == "random" else file_digest(path)
