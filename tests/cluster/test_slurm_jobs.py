"""Jobs on a real SLURM controller (the one-node cluster of tests/cluster/conftest.py), through submitit's own
SlurmExecutor and the tools' --launcher slurm: job states from sacct, a refused submission as one line with
sbatch's message, a 2-task pretraining requeued by `scontrol requeue` that resumes to the losses of an uninterrupted
run, and a job that reaches its time limit, is signalled by SLURM, checkpoints, requeues itself and finishes."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sslt_core import cluster
from tests.cluster.conftest import job_id, task_pids
from tests.conftest import REPO, run_tool

pytestmark = pytest.mark.slurm

SIMSIAM = REPO / "configs" / "pretrain" / "simsiam_demo.yaml"
TINY = ["model.arch=resnet18", "train.image_size=32", "train.batch_size=16", "train.epochs=4", "train.workers=0",
        "train.knn_every=0", "train.log_every=1", "train.checkpoint_every=2", "train.diagnostics_every=0"]
ONE_CPU = ["--gpus-per-node", "0", "--cpus-per-task", "1"]
# What job_state should say for what sacct says (SLURM's job state codes, `man sacct`)
FROM_SACCT = {"COMPLETED": "done", "FAILED": "failed", "CANCELLED": "failed", "TIMEOUT": "failed",
              "PENDING": "running", "RUNNING": "running", "REQUEUED": "running"}


def pretrain(demo_root, output_dir, *extra):
    return ["tools/pretrain_net.py", "--config", SIMSIAM, "--data", demo_root, "--output-dir", output_dir, *extra,
            *TINY]


def metrics(folder):
    return [json.loads(line) for line in (Path(folder) / "metrics.jsonl").read_text().splitlines()]


def job_log(folder, job, task=0):
    return "".join((Path(folder) / f"{job}_{task}_log.{ext}").read_text() for ext in ("out", "err"))


def test_job_states_come_from_sacct(slurm, tmp_path):
    folder = tmp_path / "jobs"
    ex = cluster.executor("slurm", folder, cluster.Resources(gpus_per_node=0, cpus_per_task=1, time=5))
    ok, bad, long = (cluster.submit(ex, sum, [1, 2]), cluster.submit(ex, int, "not a number"),
                     cluster.submit(ex, time.sleep, 600))
    slurm.wait_ended(ok.job_id, 300)
    slurm.wait_ended(bad.job_id, 300)
    slurm.wait_for(lambda: slurm.states(long.job_id)[-1:] == ["RUNNING"], 300, "the long job to run")
    slurm.run("scontrol", "update", "PartitionName=tiny", "State=DOWN")  # queued, and held there
    try:
        held = cluster.submit(cluster.executor("slurm", folder, cluster.Resources(
            gpus_per_node=0, cpus_per_task=1, time=1, partition="tiny")), sum, [1])
        slurm.wait_for(lambda: slurm.states(held.job_id)[-1:] == ["PENDING"], 60, "the held job in sacct")
        assert slurm.squeue()[held.job_id] == "PENDING"
        jobs = {"ok": ok, "bad": bad, "long": long, "held": held}
        seen = {name: slurm.states(job.job_id)[-1] for name, job in jobs.items()}
        assert seen == {"ok": "COMPLETED", "bad": "FAILED", "long": "RUNNING", "held": "PENDING"}
        for name, job in jobs.items():
            assert cluster.job_state("slurm", folder, job.job_id) == FROM_SACCT[seen[name]], name
        for job in (long, held):
            cluster.cancel("slurm", folder, job.job_id)
            assert slurm.wait_ended(job.job_id, 120)[-1] == "CANCELLED"
            assert cluster.job_state("slurm", folder, job.job_id) == "failed"
    finally:
        slurm.run("scontrol", "update", "PartitionName=tiny", "State=UP")
    reason = cluster.job_failure("slurm", folder, bad.job_id)
    assert "ValueError: invalid literal for int()" in reason and reason.endswith(f"log: {bad.paths.stderr}")
    assert cluster.wait(ok) == 3


@pytest.mark.parametrize("extra, message", [
    (["--partition", "nowhere", "--time", "5"], "invalid partition specified: nowhere"),
    (["--time", "20"], "Requested time limit is invalid (missing or exceeds some limit)"),  # debug: MaxTime=10
], ids=["unknown-partition", "time-above-the-limit"])
def test_a_refused_submission_is_one_line_with_sbatchs_message(slurm, tool, demo_root, tmp_path, extra, message):
    out = tmp_path / "out"
    code, _, stderr = tool("pretrain_net", *pretrain(demo_root, out, "--launcher", "slurm", *ONE_CPU, *extra)[1:])
    lines = stderr.strip().splitlines()
    assert code != 0 and len(lines) == 1, stderr
    assert lines[0].startswith("error: the scheduler refused the job: sbatch: error:") and message in lines[0]
    script = Path(lines[0].rsplit("(script: ", 1)[1].rstrip(")"))
    assert f"#SBATCH --{extra[0][2:]}={extra[1]}" in script.read_text()  # what sbatch was given
    assert not (out / "job.json").exists()


def test_a_two_task_pretraining_requeued_by_scontrol_resumes_to_the_uninterrupted_losses(slurm, demo_root,
                                                                                         tmp_path):
    """Two tasks of one job on the node (gloo on the CPU; the two stand-in GPUs make --gpus-per-node 2 a
    schedulable request). `scontrol requeue` kills the job mid-run and puts it back in the queue; it starts again
    (the cluster has JobRequeue=0: only a job submitted with --requeue may be requeued) and resumes from its
    checkpoint. The reference: the same run, uninterrupted, as 2 torchrun processes."""
    env = slurm.env()
    reference_log = tmp_path / "straight.log"
    with reference_log.open("w") as log:  # a file, not a pipe that nobody reads while the job runs
        reference = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone",
                                      "--nproc_per_node=2", *map(str, pretrain(demo_root, tmp_path / "straight"))],
                                     cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    out = tmp_path / "requeued"
    submitted = run_tool(*pretrain(demo_root, out, "--launcher", "slurm", "--gpus-per-node", "2", "--cpus-per-task",
                                   "1", "--time", "5"), env=env)
    assert submitted.returncode == 0, submitted.stderr[-2000:]
    job = job_id(out)
    slurm.wait_for(lambda: (out / "checkpoint.pth").exists(), 300, "the first checkpoint", poll=0.05)
    for pid in task_pids(out / "slurm"):  # mid-run on a machine of any speed; requeue kills stopped tasks too
        os.kill(pid, signal.SIGSTOP)
    slurm.run("scontrol", "requeue", job)
    states = slurm.wait_ended(job, 600)
    assert states[0] == "REQUEUED" and states[-1] == "COMPLETED", states
    assert cluster.job_state("slurm", out / "slurm", job) == "done"
    log = job_log(out / "slurm", job)
    assert log.count("Starting with JobEnvironment") == 2 and "resumed from" in log and "global_rank=0(2)" in log
    assert "global_rank=1(2)" in job_log(out / "slurm", job, task=1)
    assert reference.wait(timeout=600) == 0, reference_log.read_text()[-2000:]
    assert metrics(out) == metrics(tmp_path / "straight")
    assert len([m for m in metrics(out) if "lr" in m]) == 20 and (out / "encoder.safetensors").is_file()


def test_a_job_at_its_time_limit_is_signalled_checkpoints_requeues_itself_and_finishes(slurm, demo_root, tmp_path):
    """--time 2: SLURM signals the job (USR2, the --signal submitit's script asks for) before the limit; submitit
    calls the job's checkpoint() and requeues it (`scontrol requeue`), and the job starts again and resumes. So that
    the job is still running at its limit on a machine of any speed, its task is stopped (SIGSTOP) after its
    first checkpoint; SLURM's own SIGCONT and USR2 wake it. The submitter waits (--wait) through the requeue."""
    env = slurm.env()
    out = tmp_path / "limited"
    submitter = subprocess.Popen([sys.executable, *map(str, pretrain(demo_root, out, "--launcher", "slurm", *ONE_CPU,
                                                                       "--time", "2", "--wait"))],
                                 cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    slurm.wait_for(lambda: (out / "checkpoint.pth").exists(), 300, "the first checkpoint", poll=0.05)
    job = job_id(out)
    for pid in task_pids(out / "slurm"):
        os.kill(pid, signal.SIGSTOP)
    straight = run_tool(*pretrain(demo_root, tmp_path / "straight"), env=env)  # meanwhile, the reference
    assert straight.returncode == 0, straight.stderr[-2000:]
    stdout, stderr = submitter.communicate(timeout=600)
    assert submitter.returncode == 0, stderr[-2000:]
    assert f"job {job} done" in stdout
    states = slurm.wait_ended(job, 120)  # sacct may record the end a moment after the submitter saw the result
    assert states[0] == "REQUEUED" and states[-1] == "COMPLETED", states
    log = job_log(out / "slurm", job)
    assert "Caught signal SIGUSR2" in log and "this job is timed-out" in log and f"Requeued job {job}" in log
    assert "#SBATCH --signal=USR2@30" in (out / "slurm" / f"{job}_submission.sh").read_text()
    assert metrics(out) == metrics(tmp_path / "straight")
