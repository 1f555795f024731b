"""Jobs on a SLURM cluster, or as processes on this machine, through submitit (the library the official SwAV,
DINO, MoCo v3 and VISSL code submit with); this module writes no scheduler of its own.

- `executor(launcher, folder, resources)`: submitit's SlurmExecutor ("slurm") or LocalExecutor ("submitit-local":
  the same code path on this machine, processes instead of sbatch), with nodes, GPUs, time, partition, account.
- `submit(executor, fn)`: a job; a scheduler's refusal (unknown partition, over the time limit) becomes one line
  with sbatch's own message and the generated script's path.
- `distributed_from_job()`: inside a job, torch.distributed's environment (MASTER_ADDR/PORT, RANK, WORLD_SIZE,
  LOCAL_RANK) from SLURM's, through submitit's JobEnvironment.
- `job_state(launcher, folder, job_id)`: done / failed / running / unknown / gone, also from a new process (a
  re-run of the pipeline picks up the jobs a killed one submitted); `cancel` stops one.

Requeue: a job whose callable is a `submitit.helpers.Checkpointable` is requeued on preemption or time-out
(SIGUSR2 from SLURM, `signal_delay_s` before the limit) and calls itself again, where it resumes from its last
checkpoint.
"""
import contextlib
import io
import json
import os
import re
import shutil
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from sslt_core.atomic import check_output_folder
from sslt_core.config import PositiveInt, Range
from sslt_core.errors import CheckpointError, ClusterError, OutputError
from sslt_core.safe_load import load_plain_pickle

Launcher = Literal["local", "submitit-local", "slurm"]
JOB_LAUNCHERS = ("submitit-local", "slurm")
SIGNAL_DELAY_S = 120  # SLURM sends SIGUSR2 this long before the time limit: the job checkpoints and requeues


def signal_delay_s(minutes):
    """How long before a job's time limit SLURM is asked to signal it. SLURM may send the signal up to 60 s early
    (the resolution of its event handling; it checks the limits every 30 s), so a job of under 5 minutes gets half
    of what is left after those 60 s, and at least 30 s: with the full SIGNAL_DELAY_S a job of 2 or 3 minutes is
    signalled at the first check after each start (within 30 s) and requeues itself every 30 s, at most
    max_num_timeout times. (A 1-minute job cannot be signalled reliably.)"""
    return min(SIGNAL_DELAY_S, max(30, (minutes * 60 - 60) // 2))


@dataclass
class Resources:
    """What one job asks the scheduler for."""

    nodes: Annotated[int, Range(min=1, max=4096)] = 1
    gpus_per_node: Annotated[int, Range(min=0, max=64)] = 0  # one task per GPU (or one task when 0)
    cpus_per_task: Annotated[int, Range(min=1, max=1024)] = 8
    time: PositiveInt = 60 * 24  # minutes
    partition: str | None = None
    account: str | None = None
    mem_gb: PositiveInt | None = None

    @property
    def tasks_per_node(self):
        return max(1, self.gpus_per_node)


def check_launcher(launcher):
    """Fail at once, with one line, where the launcher cannot run."""
    missing = [command for command in ("sbatch", "srun", "sacct") if shutil.which(command) is None]
    if launcher == "slurm" and missing:
        raise ClusterError(f"--launcher slurm needs SLURM's {', '.join(missing)}, which "
                           f"{'is' if len(missing) == 1 else 'are'} not on this machine's PATH; run on a SLURM login "
                           "node, or use --launcher local")


def executor(launcher, folder, resources, name="ssl-transfer", one_task=False):
    """A submitit executor writing its scripts and logs to `folder`: one task per GPU, or with `one_task` one task
    per node that starts its own processes (detectron2's launch)."""
    import submitit

    check_launcher(launcher)
    folder = check_output_folder(folder)  # submitit writes scripts and logs there: not through a planted link
    tasks = 1 if one_task else resources.tasks_per_node
    if launcher == "slurm":
        ex = submitit.SlurmExecutor(folder=folder, max_num_timeout=30)
        extra = {"account": resources.account} if resources.account else {}
        # --requeue: submitit does not ask for it, and where a site sets JobRequeue=0 both submitit's own
        # `scontrol requeue` on time-out and SLURM's requeue on preemption are refused without it
        ex.update_parameters(job_name=name, nodes=resources.nodes, ntasks_per_node=tasks,
                             gpus_per_node=resources.gpus_per_node or None, cpus_per_task=resources.cpus_per_task,
                             time=resources.time, partition=resources.partition,
                             signal_delay_s=signal_delay_s(resources.time),
                             mem=f"{resources.mem_gb}GB" if resources.mem_gb else None,
                             additional_parameters={"requeue": True}, **extra)
        return ex
    if launcher == "submitit-local":
        if resources.nodes > 1:
            raise ClusterError("--launcher submitit-local runs on this machine: nodes must be 1")
        ex = submitit.LocalExecutor(folder=folder, max_num_timeout=30)
        ex.update_parameters(tasks_per_node=tasks, timeout_min=resources.time,
                             signal_delay_s=signal_delay_s(resources.time),
                             visible_gpus=list(range(resources.gpus_per_node)))
        return ex
    raise ClusterError(f"launcher {launcher!r} submits no jobs; choose submitit-local or slurm")


def submit(ex, fn, *args):
    """ex.submit(fn, *args), with a scheduler's refusal as one ClusterError line. submitit's SlurmExecutor leaves
    its temporary script name as a link to <job id>_submission.sh; the link is removed (the tools refuse links
    below their output folders, which hold the job folder: a --resume would stop at it)."""
    from submitit.core.utils import FailedJobError, FailedSubmissionError

    before = set(Path(ex.folder).glob(".submission_file_*.sh")) | set(Path(ex.folder).glob("*_submission.sh"))
    try:
        with contextlib.redirect_stderr(io.StringIO()):  # submitit prints sbatch's refusal too: it is in our line
            job = ex.submit(fn, *args)
    except (FailedSubmissionError, FailedJobError, OSError) as error:
        scripts = sorted((set(Path(ex.folder).glob(".submission_file_*.sh")) |
                          set(Path(ex.folder).glob("*_submission.sh"))) - before)
        where = f" (script: {scripts[-1]})" if scripts else f" (scripts in {ex.folder})"
        message = " ".join(line.strip() for line in str(error).splitlines() if line.strip())[:400]
        raise ClusterError(f"the scheduler refused the job: {message}{where}") from None
    for link in Path(ex.folder).glob(".submission_file_*.sh"):
        if link.is_symlink():
            link.unlink(missing_ok=True)
    return job


def distributed_from_job(port=None):
    """Inside a submitit job: set torch.distributed's environment variables from SLURM's (one task per GPU)."""
    import submitit

    env = submitit.JobEnvironment()
    port = port or 20000 + zlib.crc32(str(env.job_id).encode()) % 20000  # array jobs' ids hold a '_'
    os.environ.update(MASTER_ADDR=env.hostnames[0], MASTER_PORT=str(port),
                      RANK=str(env.global_rank), WORLD_SIZE=str(env.num_tasks), LOCAL_RANK=str(env.local_rank),
                      LOCAL_WORLD_SIZE=str(env.num_tasks // max(1, env.num_nodes)))
    return env


def read_job_records(path, single=False):
    """The job records in `path` (OUTPUT/job.json: one record with `single`, else {key: record}), each
    {"launcher", "folder", "job_id"} as this toolkit writes them; None when the file does not exist."""
    path = Path(path)
    if not (path.exists() or path.is_symlink()):
        return None
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError) as error:  # ValueError: not UTF-8, or not JSON
        raise OutputError(f"{path} is not a readable job record ({type(error).__name__}); delete it if no job runs "
                          "for this folder") from None
    records = {"": data} if single else data
    if not isinstance(records, dict) or not all(
            isinstance(r, dict) and {"launcher", "folder", "job_id"} <= set(r) and isinstance(r["folder"], str)
            for r in records.values()):
        raise OutputError(f"{path} is not a job record of this toolkit (each needs launcher, folder and job_id); "
                          "delete it if no job runs for this folder")
    return records[""] if single else records


def _job(launcher, folder, job_id):
    import submitit

    if launcher not in JOB_LAUNCHERS or not re.fullmatch(r"[0-9_]+", str(job_id)):
        raise ClusterError(f"a job record names launcher {launcher!r} and job {job_id!r}, which this toolkit never "
                           "writes; is the manifest from elsewhere?")
    cls = submitit.SlurmJob if launcher == "slurm" else submitit.LocalJob
    return cls(folder=Path(folder), job_id=str(job_id))


def job_failure(launcher, folder, job_id):
    """One line on why a job failed: the last line of its error (read without running code), and its log's path."""
    job = _job(launcher, folder, job_id)
    reason = "no result (killed, or cancelled)"
    if job.paths.result_pickle.exists():
        try:
            _, trace = load_plain_pickle(job.paths.result_pickle)
            lines = [line.strip() for line in str(trace).splitlines() if line.strip()]
            reason = lines[-1][:250] if lines else "failed"
        except (CheckpointError, ValueError, TypeError):
            reason = "its result file holds more than plain data"
    return f"{reason}; log: {job.paths.stderr}"


# SLURM states (sacct) of a job that is still the scheduler's: it will run, or run again.
SLURM_ACTIVE = ("PENDING", "RUNNING", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD", "RESIZING", "COMPLETING",
                "CONFIGURING", "SIGNALING", "STAGE_OUT", "SUSPENDED", "RESV_DEL_HOLD")


def job_state(launcher, folder, job_id):
    """'done' | 'failed' | 'running' | 'unknown' | 'gone' of a job submitted earlier, perhaps by another process.
    'unknown': sacct cannot say (unreachable, or a preempted job that SLURM may yet requeue): the caller waits a
    while before it gives up on the job."""
    job = _job(launcher, folder, job_id)
    if launcher == "slurm":
        state = job.state.upper().split()[0] if job.state else "UNKNOWN"
        if state in ("COMPLETED", "FINISHED"):
            return "done" if job.paths.result_pickle.exists() and _succeeded(job) else "failed"
        if state in SLURM_ACTIVE:
            return "running"
        if state in ("UNKNOWN", "PREEMPTED"):
            return "unknown"
        return "failed"  # FAILED, CANCELLED, TIMEOUT, OUT_OF_MEMORY, NODE_FAIL, BOOT_FAIL, DEADLINE, ...
    if _alive(int(job_id)):  # a local job's id is its controller's PID (submitit-local runs where it submits)
        return "running"
    if job.paths.result_pickle.exists():  # complete once the job has exited
        return "done" if _succeeded(job) else "failed"
    return "gone"


def _succeeded(job):
    try:
        return load_plain_pickle(job.paths.result_pickle)[0] == "success"
    except (CheckpointError, ValueError, TypeError, IndexError):
        return False


def cancel(launcher, folder, job_id):
    """Cancel a job (scancel, or SIGINT to a local job's controller)."""
    _job(launcher, folder, job_id).cancel(check=False)


def _alive(pid):
    """Whether process `pid` still runs; a child of this process that has ended is reaped (not a zombie)."""
    if pid <= 0:
        return False
    try:
        ended, _ = os.waitpid(pid, os.WNOHANG)
        return ended == 0
    except ChildProcessError:  # not our child: ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


RESULT_TIMEOUT_S = 15  # as submitit's: a shared file system may show the result file a little after the job ends


def wait(job):
    """Wait for a job this process submitted and return what it returned; a failure becomes one ClusterError line
    naming the job's log (nothing is resubmitted). The result file is read as plain data (load_plain_pickle), not
    with submitit's full unpickle: a file planted under the job folder cannot run code."""
    job.wait()
    start = time.monotonic()
    while not job.paths.result_pickle.exists() and time.monotonic() - start < RESULT_TIMEOUT_S:
        time.sleep(1)
    if not job.paths.result_pickle.exists():
        raise ClusterError(f"job {job.job_id} ended without a result (killed, cancelled or out of memory); its log: "
                           f"{job.paths.stderr}")
    try:
        outcome, value = load_plain_pickle(job.paths.result_pickle)
    except (CheckpointError, ValueError, TypeError) as error:
        raise ClusterError(f"job {job.job_id}: its result file {job.paths.result_pickle} is not plain data "
                           f"({_first_line(error)}); its log: {job.paths.stderr}") from None
    if outcome != "success":
        lines = [line.strip() for line in str(value).splitlines() if line.strip()]
        reason = next((line for line in reversed(lines) if "Error" in line), lines[-1] if lines else "failed")
        raise ClusterError(f"job {job.job_id} failed ({reason[:300]}); its log: {job.paths.stderr}")
    return value


def _first_line(error):
    return str(error).splitlines()[0][:200] if str(error) else type(error).__name__
