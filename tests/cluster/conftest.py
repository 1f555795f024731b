"""A real one-node SLURM cluster (tests/cluster/slurm_up.sh) for the tests of this folder: started once per test
session on free ports, with SLURM_CONF set for the session, and stopped at its end by the PIDs it started
(slurm_down.sh). Where it cannot start (not root, no apt-get) the tests skip with that reason; with
SSLT_REQUIRE_SLURM=1 (.ci/run sets it) they fail instead."""
import json
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REQUIRE = "SSLT_REQUIRE_SLURM"


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


class Slurm:
    """The running test cluster: its state folder and SLURM's own commands (run with its SLURM_CONF)."""

    def __init__(self, state):
        self.state = Path(state)
        self.conf = self.state / "slurm.conf"

    def env(self, **extra):
        return {**os.environ, "SLURM_CONF": str(self.conf), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                **extra}

    def run(self, *command):
        result = subprocess.run(command, env=self.env(), capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, f"{' '.join(command)}: {result.stderr.strip()}"
        return result.stdout

    def sacct(self, *args):
        """[{JobID, JobName, State}] of the jobs (not their steps) sacct reports, every requeued run with -D."""
        out = self.run("sacct", "-X", "-n", "-P", "-S", "2000-01-01", "-o", "JobID,JobName,State", *args)
        return [dict(zip(("JobID", "JobName", "State"), line.split("|"))) for line in out.splitlines() if line]

    def states(self, job_id):
        """sacct's state of every run of a job, first to last (a requeued job has one record per run)."""
        return [row["State"].split()[0] for row in self.sacct("-D", "-j", str(job_id))]

    def squeue(self):
        """{job id: state} of the jobs the controller holds."""
        out = self.run("squeue", "-h", "-o", "%i %T")
        return dict(line.split() for line in out.splitlines() if line.strip())

    def wait_for(self, check, timeout, what, poll=1.0):
        deadline = time.time() + timeout
        while time.time() < deadline:
            value = check()
            if value:
                return value
            time.sleep(poll)
        raise AssertionError(f"{what}: not within {timeout} s; squeue {self.squeue()}")

    def wait_ended(self, job_id, timeout=600):
        """Wait until sacct reports the job's last run as ended; return its states."""
        ended = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL")
        return self.wait_for(lambda: (s := self.states(job_id)) and s[-1] in ended and s, timeout,
                             f"job {job_id} to end")


def job_id(output_dir):
    """The id of the job a tool recorded for OUTPUT (OUTPUT/job.json)."""
    return json.loads((Path(output_dir) / "job.json").read_text())["job_id"]


def task_pids(job_folder):
    """The PIDs of a submitit job's tasks on this node (python -m submitit.core._submit FOLDER; not srun)."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if proc.name.isdigit() and "python" in Path(argv[0].decode()).name and \
                argv[1:5] == [b"-u", b"-m", b"submitit.core._submit", str(job_folder).encode()]:
            pids.append(int(proc.name))
    return pids


@pytest.fixture(scope="session")
def slurm(tmp_path_factory):
    state = tmp_path_factory.mktemp("slurm")
    env = {**os.environ, "SSLT_SLURM_PORTS": " ".join(map(str, _free_ports(4)))}
    up = subprocess.run(["bash", str(HERE / "slurm_up.sh"), str(state)], env=env, capture_output=True, text=True,
                        timeout=1200)
    if up.returncode == 77:
        reason = (up.stderr.strip().splitlines() or ["cannot start"])[-1]
        if os.environ.get(REQUIRE):
            pytest.fail(f"{REQUIRE} is set, and the test SLURM cluster cannot start: {reason}")
        pytest.skip(f"no test SLURM cluster: {reason}")
    if up.returncode != 0:
        subprocess.run(["bash", str(HERE / "slurm_down.sh"), str(state)], timeout=300)
        pytest.fail(f"tests/cluster/slurm_up.sh failed: {up.stderr.strip()[-1500:]} (logs in {state / 'log'})")
    previous = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(state / "slurm.conf")  # for the tools run in this process and the jobs they submit
    try:
        yield Slurm(state)
    finally:
        if previous is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = previous
        subprocess.run(["bash", str(HERE / "slurm_down.sh"), str(state)], timeout=300)
