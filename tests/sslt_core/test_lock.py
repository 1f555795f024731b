"""Output folders are owned by one run at a time; a dead owner's lock is taken over; orphaned temporary files of
killed writes are removed by the next run in the folder."""
import json
import os
import signal
import subprocess
import sys

import pytest

from sslt_core.atomic import remove_orphans, write_bytes_atomic
from sslt_core.errors import OutputError
from sslt_core.lock import OutputLock
from tests.conftest import REPO

HOLD = """
import sys, time
from sslt_core.lock import OutputLock
OutputLock(sys.argv[1]).acquire()
print("locked", flush=True)
time.sleep(60)
"""


def holder(folder):
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "locked"
    return process


def test_a_second_run_is_refused_with_the_owners_pid_and_host(tmp_path):
    process = holder(tmp_path / "out")
    try:
        with pytest.raises(OutputError, match=rf"is in use by PID {process.pid} on .*wait for that run"):
            OutputLock(tmp_path / "out").acquire()
    finally:
        process.kill()
        process.wait()


def test_a_dead_owners_lock_is_taken_over_and_said(tmp_path):
    process = holder(tmp_path / "out")
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    with OutputLock(tmp_path / "out") as lock:
        assert f"PID {process.pid}" in lock.note() and "is gone" in lock.note()
        owner = json.loads((tmp_path / "out" / ".lock").read_text())
        assert owner["pid"] == os.getpid()


def test_the_lock_is_free_again_after_the_run(tmp_path):
    with OutputLock(tmp_path / "out"):
        pass
    with OutputLock(tmp_path / "out") as lock:
        assert lock.note() is None


def test_a_killed_writes_temporary_file_is_removed_by_the_next_run(tmp_path):
    script = ("import sys, os\nfrom sslt_core.atomic import atomic_path\n"
              "with atomic_path(sys.argv[1]) as tmp:\n    tmp.write_bytes(b'x' * 100)\n    os.kill(os.getpid(), 9)\n")
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path / "out" / "big.bin")], cwd=REPO)
    assert result.returncode == -signal.SIGKILL
    leftovers = list((tmp_path / "out").glob(".big.tmp-*"))
    assert len(leftovers) == 1 and not (tmp_path / "out" / "big.bin").exists()
    with OutputLock(tmp_path / "out") as lock:
        assert "removed 1 temporary file" in lock.note()
    assert not list((tmp_path / "out").glob(".big.tmp-*"))


def test_orphans_of_live_writers_are_kept_outside_a_locked_folder(tmp_path):
    write_bytes_atomic(tmp_path / "done.json", b"{}")
    live = tmp_path / f".x.tmp-{os.uname().nodename}-{os.getpid()}.npz"  # this process: alive
    live.write_bytes(b"")
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()  # gone (and reaped)
    dead_pid = child.pid
    dead = tmp_path / f".y.tmp-{os.uname().nodename}-{dead_pid}.npz"
    dead.write_bytes(b"")
    assert remove_orphans(tmp_path) == [dead] and live.exists()
