"""Atomic writes: a reader sees the old file or the new one, never half of one.

A write goes to `.STEM.tmp-HOST-PID.RANDOM.SUFFIX` beside the target (the suffix kept: detectron2 tells formats
by it; STEM cut where the name would pass NAME_MAX) and is renamed over it. A process killed mid-write leaves
that temporary file behind; `remove_orphans` deletes the ones whose writer (a process of this host) is gone, and
every run that takes an output folder (sslt_core/lock.py) calls it there. Files written in place (a run's log, its
metrics, a lock) are opened with `open_output`, which never writes through a link.
"""
import errno
import json
import os
import socket
import stat
import uuid
from contextlib import contextmanager
from pathlib import Path

from sslt_core.errors import OutputError

TMP_MARK = ".tmp-"
NAME_MAX = 255  # bytes in one file name (Linux, macOS)


def check_replaceable(path, planted=False):
    """An output may replace a regular file, never a folder, a device, a pipe or a link."""
    path = Path(path)
    if planted or path.is_symlink() or path.exists() and not path.is_file():
        raise OutputError(f"{path} exists and is not a regular file (a folder, a device, a pipe or a link); choose "
                          "another output path")


def check_name_length(path):
    """A file name longer than NAME_MAX bytes cannot be created: say so before any work is done."""
    size = len(os.fsencode(Path(path).name))
    if size > NAME_MAX:
        raise OutputError(f"output file name {Path(path).name[:40]}... is {size} bytes long; file systems allow at "
                          f"most {NAME_MAX}: choose a shorter name")


# open(2) flags of open_output's modes; none creates through a link (O_NOFOLLOW) or blocks on a pipe (O_NONBLOCK)
_MODES = {"a": os.O_WRONLY | os.O_CREAT | os.O_APPEND, "w": os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
          "r+": os.O_RDWR | os.O_CREAT}


def open_output(path, mode="a"):
    """An output file opened for appending ("a"), writing from empty ("w") or reading and writing in place ("r+",
    created if missing, not truncated), never through a symbolic link: a link or a non-regular file planted
    where an output goes (the run's log, its metrics, a lock) is refused with one line instead of being written
    through. Text mode, UTF-8; binary with "b" in the mode ("ab", "wb", "r+b")."""
    path = Path(path)
    binary = "b" in mode
    flags = _MODES[mode.replace("b", "")]
    check_replaceable(path)
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0), 0o644)
    except OSError as error:
        if error.errno in (errno.ELOOP, errno.ENXIO):  # a link or a pipe put there since the check
            check_replaceable(path, planted=True)
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        check_replaceable(path, planted=True)
    os.set_blocking(fd, True)
    text = {} if binary else {"encoding": "utf-8"}
    return os.fdopen(fd, {"a": "a", "w": "w", "r+": "r+"}[mode.replace("b", "")] + ("b" if binary else ""), **text)


def check_output_folder(path):
    """A folder the run writes into (TensorBoard's, a job's) must not be a link to somewhere else."""
    path = Path(path)
    if path.is_symlink() or path.exists() and not path.is_dir():
        raise OutputError(f"{path} exists and is not a folder (a link or a file); remove it or choose another "
                          "output folder")
    return path


def check_no_links(folder):
    """For a folder a library writes into by names of its own (detectron2's log.txt, metrics.json, last_checkpoint,
    model_final.pth): no link below it, which the library would write through."""
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            if os.path.islink(os.path.join(root, name)):
                check_replaceable(Path(root) / name, planted=True)


def _temporary_name(path, unique):
    """`.STEM.tmp-HOST-PID.RANDOM.SUFFIX`, STEM cut so that the name fits NAME_MAX bytes."""
    tail = f"{TMP_MARK}{socket.gethostname()}-{os.getpid()}.{unique}{path.suffix}"
    room = NAME_MAX - 1 - len(os.fsencode(tail))
    stem = os.fsencode(path.stem)[:max(room, 1)].decode(errors="ignore") or "x"
    return path.with_name(f".{stem}{tail}")


@contextmanager
def atomic_path(path):
    """with atomic_path(target) as tmp: write tmp (and read it back if needed); on success it replaces target,
    on any error it is removed."""
    path = Path(path)
    check_replaceable(path)
    check_name_length(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary_name(path, uuid.uuid4().hex[:8])  # two threads of one process may write the same target
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes_atomic(path, data):
    with atomic_path(path) as tmp, open_output(tmp, "wb") as file:
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
