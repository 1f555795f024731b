"""Output folders owned by one run at a time: an advisory lock file with the owner's PID and host.

`OUTPUT/.lock` is held with flock(2) for as long as the run lives, and holds `{"pid", "host", "started",
"command"}`. A second run on the folder fails with one line naming the owner. The kernel releases the lock when
the owner dies, however it dies (kill -9 included), so a stale lock is taken over by the next run, which says
so. The file is never deleted (deleting it would let two runs lock two different files of one name). On NFS,
flock is emulated with POSIX locks by Linux clients, which covers the nodes of a cluster.
"""
import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path

from sslt_core.atomic import open_output, remove_orphans
from sslt_core.errors import OutputError

LOCK_NAME = ".lock"


def _describe(owner):
    if not owner:
        return "another run"
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(owner.get("started", 0)))
    return f"PID {owner.get('pid')} on {owner.get('host')} (started {started}: {owner.get('command', '?')})"


class OutputLock:
    """with OutputLock(folder) as lock: ...   (lock.previous: the dead owner it took over from, if any)"""

    def __init__(self, folder, lock_path=None):
        self.folder = Path(folder)
        self.path = Path(lock_path) if lock_path else self.folder / LOCK_NAME
        self.fd, self.previous, self.orphans = None, None, []

    def _read(self):
        try:
            return json.loads(os.pread(self.fd, 65536, 0).decode() or "null")
        except (ValueError, OSError):
            return None

    def acquire(self):
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open_output(self.path, "r+b") as file:  # a link planted as .lock is refused, its target untouched
                self.fd = os.dup(file.fileno())  # a plain descriptor: the lock lives until released or the process ends
        except OSError as error:
            raise OutputError(f"cannot create output folder {self.folder} ({error.strerror}); choose a folder you "
                              "can write to") from None
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = self._read()
            self._close()
            raise OutputError(f"{self.folder} is in use by {_describe(owner)}; wait for that run to end or choose "
                              "another output folder") from None
        self.previous = self._read()  # left by a run that died while holding the lock
        owner = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(),
                 "command": " ".join(sys.argv)[:300]}
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, json.dumps(owner).encode(), 0)
        os.fsync(self.fd)
        if self.path.parent == self.folder:
            self.orphans = remove_orphans(self.folder)
        return self

    def release(self):
        if self.fd is not None:
            os.ftruncate(self.fd, 0)
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            self._close()

    def _close(self):
        os.close(self.fd)
        self.fd = None

    def note(self):
        """What taking the folder found, for the log (None if nothing)."""
        parts = []
        if self.previous:
            parts.append(f"took over the lock of a run that is gone: {_describe(self.previous)}")
        if self.orphans:
            parts.append(f"removed {len(self.orphans)} temporary file(s) left by killed writes")
        return "; ".join(parts) or None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
