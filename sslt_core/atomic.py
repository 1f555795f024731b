"""Atomic writes: a reader sees the old file or the new one, never half of one.

A write goes to `.STEM.tmp-HOST-PID.RANDOM.SUFFIX` beside the target (the suffix kept: detectron2 tells formats
by it) and is renamed over it. A process killed mid-write leaves that temporary file behind; `remove_orphans`
deletes the ones whose writer (a process of this host) is gone, and every run that takes an output folder
(sslt_core/lock.py) calls it there.
"""
import json
import os
import socket
import uuid
from contextlib import contextmanager
from pathlib import Path

from sslt_core.errors import OutputError

TMP_MARK = ".tmp-"


def check_replaceable(path):
    """An output may replace a regular file, never a folder, a device, a pipe or a link."""
    if path.is_symlink() or path.exists() and not path.is_file():
        raise OutputError(f"{path} exists and is not a regular file (a folder, a device, a pipe or a link); choose "
                          "another output path")


@contextmanager
def atomic_path(path):
    """with atomic_path(target) as tmp: write tmp (and read it back if needed); on success it replaces target,
    on any error it is removed."""
    path = Path(path)
    check_replaceable(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    unique = uuid.uuid4().hex[:8]  # two threads of one process may write the same target
    tmp = path.with_name(f".{path.stem}{TMP_MARK}{socket.gethostname()}-{os.getpid()}.{unique}{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes_atomic(path, data):
    with atomic_path(path) as tmp, open(tmp, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())


def write_json_atomic(path, data):
    write_bytes_atomic(path, (json.dumps(data, indent=2) + "\n").encode())


def _writer_is_gone(name):
    """True when the temporary file `name` was written by a process of this host that no longer runs."""
    owner = name.rsplit(TMP_MARK, 1)[-1]
    host, _, pid = owner.rpartition("-")
    pid = pid.split(".")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def remove_orphans(folder):
    """Delete the temporary files of killed writes under `folder` (their writer, a process of this host, is gone);
    return their paths. A temporary file of a live writer (a job still at work below a folder whose lock someone
    else takes) or of another host is left alone."""
    removed = []
    for tmp in Path(folder).rglob(f".*{TMP_MARK}*"):
        if tmp.is_file() and _writer_is_gone(tmp.name):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed
