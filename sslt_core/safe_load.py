"""Loading a checkpoint file without running any code from it, unless the user says they trust it.

A pickle (every .pth / .pt / .ckpt / .pkl) can name any Python callable and call it while loading: a checkpoint
downloaded from the internet must not get that chance. So by default:

- torch files load with torch's weights_only unpickler: tensors and plain containers, plus the few harmless
  types real checkpoints hold (SAFE_GLOBALS: argparse.Namespace as in DINO's, numpy arrays and scalars);
- detectron2 .pkl files load with an unpickler that admits numpy arrays and builtins only;
- .safetensors files hold tensors and string metadata and no code at all (our exported encoders use them).

Anything else is refused with one line naming the type found and `--trust-checkpoint`, the opt-in for a file the
user trusts (then Python's pickle runs in full).
"""
import json
import os
import pickle
import re
import stat
import warnings
import zipfile
import zlib
from argparse import Namespace
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from sslt_core.errors import CheckpointError

TRUST_FLAG = "--trust-checkpoint"


def _numpy_globals():
    try:  # numpy >= 2
        from numpy._core import multiarray
    except ImportError:
        from numpy.core import multiarray
    found = [multiarray._reconstruct, multiarray.scalar, np.ndarray, np.dtype]
    dtypes = getattr(np, "dtypes", None)  # numpy >= 1.25: dtype classes such as numpy.dtypes.Float32DType
    if dtypes is not None:
        found += [getattr(dtypes, name) for name in dir(dtypes) if name.endswith("DType")]
    return found


SAFE_GLOBALS = [Namespace, *_numpy_globals()]
# (module, name) a detectron2 .pkl may name: numpy arrays, dtypes and scalars, and how pickle rebuilds bytes.
_PKL_ALLOWED = {(g.__module__, g.__name__) for g in _numpy_globals()} | {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"), ("numpy", "dtype"),
    ("numpy", "ndarray"), ("_codecs", "encode"), ("collections", "OrderedDict"), ("builtins", "set"),
    ("builtins", "frozenset"), ("builtins", "bytearray"), ("builtins", "complex")}


MIN_ALLOCATION_BOUND = 1 << 20  # bytes an allocating constructor in a pickle may ask for: this or the file's size


class _Bounded:
    """An allow-listed constructor that allocates (bytearray(n), numpy's empty array of a shape), its request checked
    first: a real pickle rebuilds its data from the file's own bytes, so asking for more than the file holds (a few
    bytes asking for bytearray(2**45)) is refused instead of exhausting memory."""

    def __init__(self, function, requested, path, limit):
        self.function, self.requested, self.path, self.limit = function, requested, path, limit

    def __call__(self, *args, **kwargs):
        args = [a.function if isinstance(a, _Bounded) else a for a in args]  # _reconstruct(ndarray, ...) takes the type
        try:
            size = self.requested(*args, **kwargs)
        except (TypeError, ValueError, OverflowError):
            size = 0  # not a size: the constructor itself refuses it
        if size > self.limit:
            raise CheckpointError(f"{self.path} asks for {size} bytes while loading ({self.function.__name__}), more "
                                  f"than its {Path(self.path).stat().st_size} bytes can hold; it is damaged or hostile:"
                                  " use another copy")
        return self.function(*args, **kwargs)


def _bytearray_size(source=0, *args):
    return source if isinstance(source, int) else 0


def _array_size(_subtype=None, shape=0, dtype=None, *args):
    """Bytes of numpy's _reconstruct(subtype, shape, dtype)."""
    count = 1
    for extent in (shape,) if isinstance(shape, int) else shape:
        count *= max(int(extent), 0)
    return count * (np.dtype(dtype).itemsize if dtype not in (None, 0) else 8)


def _ndarray_size(shape=0, dtype=float, *args, **kwargs):
    """Bytes of numpy.ndarray(shape, dtype, ...) called directly. A view of a buffer read from the file counts too:
    with zero strides 4 bytes can stand for 4 GB, which every later check would then touch."""
    return _array_size(None, shape, dtype)


def _allocation_limit(path):
    return max(Path(path).stat().st_size, MIN_ALLOCATION_BOUND)


def _bounded(path):
    """{allocating allow-listed constructor: its bounded stand-in} for loading `path`."""
    limit = _allocation_limit(path)
    reconstruct = _numpy_globals()[0]  # numpy's _reconstruct(ndarray, shape, dtype): an array of that shape
    return {bytearray: _Bounded(bytearray, _bytearray_size, path, limit),
            reconstruct: _Bounded(reconstruct, _array_size, path, limit),
            np.ndarray: _Bounded(np.ndarray, _ndarray_size, path, limit)}


@contextmanager
def _bounded_torch_allowlist(path):
    """torch's weights_only unpickler with its allow-listed bytearray bounded as above (its allow-list is a cached
    dict: the entry is swapped for this load and put back). numpy arrays are left to numpy: it allocates them
    without touching the memory, and a shape beyond the machine's memory is a MemoryError, reported in one line."""
    try:
        from torch._weights_only_unpickler import _get_allowed_globals
        allowed = _get_allowed_globals()
    except (ImportError, AttributeError):
        yield
        return
    original = allowed.get("builtins.bytearray")
    if original is bytearray:
        allowed["builtins.bytearray"] = _bounded(path)[bytearray]
    try:
        yield
    finally:
        if original is bytearray:
            allowed["builtins.bytearray"] = original


def _refusal(path, what):
    return CheckpointError(f"{path} holds {what}, which loading would import and could run code; if you trust this "
                           f"file, pass {TRUST_FLAG}")


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, path):
        super().__init__(file, encoding="latin1")
        self.path, self.bounded = path, _bounded(path)

    def find_class(self, module, name):
        if (module, name) in _PKL_ALLOWED:
            found = super().find_class(module, name)
            return self.bounded.get(found, found)
        raise _refusal(self.path, f"a {module}.{name} object")


def load_plain_pickle(path):
    """A pickle of builtins and numpy data only (e.g. a job's result: an outcome and a traceback); anything else is
    refused, whoever wrote the file."""
    with open(path, "rb") as file:
        return _RestrictedUnpickler(file, path).load()


def check_checkpoint_file(path):
    """Raise CheckpointError unless `path` is a non-empty regular file this process can read."""
    path = Path(path)
    kinds = ".pth, .pth.tar, .ckpt, .pkl or .safetensors"
    try:
        status = path.stat()
    except FileNotFoundError:
        what = "a broken symlink" if path.is_symlink() else "no such file"
        raise CheckpointError(f"{path}: {what}; give the path of a checkpoint ({kinds})") from None
    except OSError as error:  # a symlink loop, a name too long
        raise CheckpointError(f"{path}: {error.strerror}; give the path of a checkpoint ({kinds})") from None
    if stat.S_ISDIR(status.st_mode):
        raise CheckpointError(f"{path} is a folder, not a checkpoint file; give the path of a {kinds} file")
    if not stat.S_ISREG(status.st_mode):
        raise CheckpointError(f"{path} is not a regular file (a device, a pipe or a socket); give the path of a "
                              f"{kinds} file")
    if status.st_size == 0:
        raise CheckpointError(f"{path} is empty (0 bytes); the download or the save did not complete")
    if not os.access(path, os.R_OK):
        raise CheckpointError(f"{path}: permission denied; make the file readable by this user")


def _load_pickle(path, trust):
    if zipfile.is_zipfile(path):
        raise CheckpointError(f"{path} was written with torch.save, which detectron2 cannot unpickle; rename it to "
                              f"{path.with_suffix('.pth').name} and convert it with tools/convert_to_d2.py")
    try:
        with open(path, "rb") as file:
            return pickle.load(file, encoding="latin1") if trust else _RestrictedUnpickler(file, path).load()
    except CheckpointError:
        raise
    except Exception as error:
        raise CheckpointError(f"{path} is not a readable pickle ({type(error).__name__}: {_first_line(error)}); is "
                              "the file complete?") from None


def _first_line(error):
    lines = [line for line in str(error).splitlines() if line.strip()]
    return lines[0][:160] if lines else ""


def _damaged_zip(path, error):
    """A file in torch.save's zip format that torch's zip reader (miniz) could not read: cut short or damaged."""
    with open(path, "rb") as file:
        head = file.read(4)
    text = str(error)
    return head == b"PK\x03\x04" and ("PytorchStreamReader" in text or "zip" in text.lower())


def _unreadable(path, error):
    if _damaged_zip(path, error):
        return CheckpointError(f"{path} is not a PyTorch checkpoint: it is a damaged or truncated zip archive "
                               "(torch.save's format); download or save it again")
    return CheckpointError(f"{path} is not a PyTorch checkpoint ({type(error).__name__}: "
                           f"{_first_line(error) or 'unreadable'}); is the file complete?")


def _check_zip(path):
    """torch.load does not check the CRC-32 that torch.save writes for every record: a file damaged in the middle
    would load with other numbers. zipfile checks them."""
    if not zipfile.is_zipfile(path):
        return
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, zlib.error) as error:
        bad = f"({type(error).__name__})"
    if bad:
        raise CheckpointError(f"{path} is not a PyTorch checkpoint: it is a damaged zip archive (torch.save's "
                              f"format; record {bad} fails its checksum); download or save it again")


def _load_torch(path, trust):
    _check_zip(path)
    if trust:
        try:
            return torch.load(path, map_location="cpu", weights_only=False)
        except Exception as error:
            raise _unreadable(path, error) from None
    try:
        with _bounded_torch_allowlist(path), torch.serialization.safe_globals(SAFE_GLOBALS), \
                warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # torch's note on a plain pickle: refused below instead
            return torch.load(path, map_location="cpu", weights_only=True)
    except CheckpointError:
        raise
    except MemoryError:
        raise CheckpointError(f"{path}: not enough memory to load it ({_allocation_limit(path)} bytes on disk); "
                              "free memory, or load it on a larger machine") from None
    except Exception as error:
        text = str(error)
        found = re.search(r"GLOBAL ([\w.]+)", text)
        if found:
            raise _refusal(path, f"a {found.group(1)} object") from None
        if not zipfile.is_zipfile(path):
            with open(path, "rb") as file:
                head = file.read(2)
            if head[:1] == b"\x80" and head[1:2] in (b"\x04", b"\x05"):
                raise CheckpointError(f"{path} is a plain pickle, not a torch.save checkpoint; if it is a detectron2 "
                                      "checkpoint, name it .pkl") from None
        raise _unreadable(path, error) from None


def _load_safetensors(path):
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as file:
            tensors = {key: file.get_tensor(key) for key in file.keys()}  # noqa: SIM118 (safe_open is no dict)
            metadata = file.metadata() or {}
    except (SafetensorError, OSError, ValueError) as error:
        reason = re.sub(r", expected one of .*? at line", " at line", str(error))  # not the list of every dtype
        raise CheckpointError(f"{path} is not a readable safetensors file ({_first_line(reason)})") from None
    if "ssl_transfer" in metadata:  # an encoder exported by pretrain/train.py
        try:
            return {"ssl_transfer": json.loads(metadata["ssl_transfer"]), "encoder": tensors}
        except json.JSONDecodeError:
            raise CheckpointError(f"{path}: its ssl_transfer metadata is not JSON; re-export the encoder") from None
    return tensors


def load_file(path, trust=False):
    """The object saved in `path`, read without running code from it unless `trust`.

    .safetensors: tensors (and our export's metadata); .pkl: pickle as detectron2 reads it (numpy arrays and
    builtins only); anything else (.pth, .pth.tar, .pt, .ckpt, ...): torch.load with weights_only."""
    path = Path(path)
    check_checkpoint_file(path)
    if path.suffix == ".safetensors":
        return _load_safetensors(path)
    if path.suffix == ".pkl":
        return _load_pickle(path, trust)
    return _load_torch(path, trust)
