"""The tools' --launcher slurm on a real SLURM controller (tests/cluster/conftest.py): five detection trials
submitted in parallel with one made to fail, then --resume; the pipeline on the demo data as jobs, its submitter
killed and run again."""
import json
import os
import signal
import subprocess
import sys
from collections import Counter

import pytest
import yaml

from sslt_core.lock import OutputLock
from tests.cluster.conftest import task_pids
from tests.conftest import REPO, run_tool

pytestmark = pytest.mark.slurm

VOC = REPO / "configs" / "demo" / "voc07.yaml"
FAST = ["SOLVER.MAX_ITER", "2", "SOLVER.IMS_PER_BATCH", "2", "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "16",
        "TEST.PRECISE_BN.NUM_ITER", "1", "INPUT.MIN_SIZE_TRAIN", "(96,)", "INPUT.MIN_SIZE_TEST", "96"]


def read_json(path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):  # not written yet
        return {}


def test_five_trials_one_failing_are_reported_and_resume_submits_only_the_failed_one(slurm, demo_root, tmp_path):
    """The five trial jobs are held in the queue (partition down) until the test holds trial 3's folder lock, so
    that trial 3's job, and only it, fails (its folder is in use)."""
    out = tmp_path / "det"
    command = ["tools/train_det.py", "--config", VOC, "--weights", "random", "--data-root", demo_root, "--output-dir",
               out, "--trials", "5", "--launcher", "slurm", "--gpus-per-node", "0", "--cpus-per-task", "1",
               "--time", "10", "--wait"]
    slurm.run("scontrol", "update", "PartitionName=debug", "State=DOWN")
    holder = None
    try:
        submitter = subprocess.Popen([sys.executable, *map(str, command + FAST)], cwd=REPO, env=slurm.env(),
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        records = slurm.wait_for(lambda: len(r := read_json(out / "jobs.json")) == 5 and r, 300, "five trial jobs")
        queue = slurm.squeue()
        assert [queue[records[str(k)]["job_id"]] for k in range(5)] == ["PENDING"] * 5  # submitted together
        holder = OutputLock(out / "trial_3").acquire()
    finally:
        slurm.run("scontrol", "update", "PartitionName=debug", "State=UP")
    try:
        stdout, stderr = submitter.communicate(timeout=900)
    finally:
        if holder:
            holder.release()
    ids = {k: records[str(k)]["job_id"] for k in range(5)}
    assert submitter.returncode != 0
    # sacct may record a job's end a moment after the tool saw its result file
    assert [slurm.wait_ended(ids[k], 120)[-1] for k in range(5)] == ["COMPLETED"] * 3 + ["FAILED", "COMPLETED"]
    last = stderr.strip().splitlines()[-1]
    log = out / "slurm" / f"{ids[3]}_0_log.err"
    assert last.startswith(f"error: 1 of 5 trials failed (trial 3: job {ids[3]} failed (") and "is in use by" in last
    assert f"its log: {log})" in last and "is in use by" in log.read_text()
    assert stdout.count("submitted job") == 5 and not (out / "metrics.json").exists()

    again = run_tool(*command, "--resume", *FAST, env=slurm.env())
    assert again.returncode == 0, again.stderr[-2000:]
    assert again.stdout.count(": done") == 4 and again.stdout.count("submitted job") == 1
    assert "trial 3: submitted job" in again.stdout
    slurm.wait_ended(json.loads((out / "jobs.json").read_text())["3"]["job_id"], 120)
    jobs = slurm.sacct("--name=train-det")
    assert len(jobs) == 6 and Counter(job["State"] for job in jobs) == {"COMPLETED": 5, "FAILED": 1}
    metrics = json.loads((out / "metrics.json").read_text())
    assert [t["seed"] for t in metrics["trials"]] == [0, 1, 2, 3, 4] and set(metrics["mean"]) == {"bbox"}


def pipeline_config(tmp_path, data_root):
    tiny = ["train.epochs=1", "train.batch_size=16", "train.image_size=32", "model.proj_dim=64",
            "model.pred_hidden=16"]
    config = {
        "data_root": str(data_root), "image_size": 32,
        "methods": {"simsiam": {"config": str(REPO / "configs/pretrain/simsiam_demo.yaml"), "overrides": tiny}},
        "random_baseline": False,
        "knn": {"k": [5], "temperature": 0.07},
        "linear": {"protocol": "moco", "cached": True, "epochs": 3, "batch_size": 32},
        "detection": {"voc07": {"config": str(VOC), "opts": FAST}},
        "resources": {kind: {"gpus_per_node": 0, "cpus_per_task": 1, "time": 10}
                      for kind in ("pretrain", "convert", "knn", "linear", "detection")},
    }
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_the_pipeline_as_slurm_jobs_gives_the_in_process_tables_and_a_rerun_adopts_the_running_jobs(
        slurm, demo_root, tmp_path):
    """The submitter is killed while the pretraining job runs; the same command, run again, adopts that job (its
    task is stopped meanwhile, so that it still runs then on a machine of any speed) and submits the rest. Every
    stage ran as one job (sacct), and the tables are the in-process run's."""
    config = pipeline_config(tmp_path, demo_root)
    env = slurm.env(PYTHONUNBUFFERED="1")
    here_log = tmp_path / "here.log"
    with here_log.open("w") as log:  # the reference, meanwhile (its output to a file: nobody reads a pipe)
        here = subprocess.Popen([sys.executable, "tools/run_pipeline.py", "--config", str(config), "--output-dir",
                                 str(tmp_path / "here")], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    out = tmp_path / "jobs"
    command = [sys.executable, "tools/run_pipeline.py", "--config", str(config), "--output-dir", str(out),
               "--launcher", "slurm", "--max-parallel", "4", "--poll-seconds", "3"]
    first = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pretrain_job = slurm.wait_for(
        lambda: read_json(out / "manifest.json").get("simsiam/pretrain", {}).get("job_id"), 300,
        "the pretraining job in the manifest")
    job_folder = out / ".jobs" / "simsiam" / "pretrain"
    tasks = slurm.wait_for(lambda: task_pids(job_folder), 300, "the pretraining job's task", poll=0.05)
    for pid in tasks:
        os.kill(pid, signal.SIGSTOP)
    first.kill()  # SIGKILL: the submitter ends at once; its job goes on
    first.wait()
    assert slurm.squeue()[pretrain_job] == "RUNNING"
    again_log = tmp_path / "again.err"
    with again_log.open("w") as log:
        again = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=log, text=True)
    lines = []
    for line in again.stdout:
        lines.append(line)
        if line.startswith("[adopt] simsiam/pretrain"):
            break
    for pid in tasks:
        os.kill(pid, signal.SIGCONT)
    stdout, _ = again.communicate(timeout=900)
    lines += stdout.splitlines(keepends=True)
    assert again.returncode == 0, "".join(lines)[-2000:] + again_log.read_text()[-2000:]
    assert f"[adopt] simsiam/pretrain: job {pretrain_job}\n" in lines
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest) == {"simsiam/pretrain", "simsiam/knn", "simsiam/linear", "simsiam/convert", "simsiam/voc07"}
    jobs = slurm.sacct("--name=" + ",".join(stage.replace("/", "-") for stage in manifest))
    assert Counter(job["JobName"] for job in jobs) == {stage.replace("/", "-"): 1 for stage in manifest}
    assert {job["JobName"]: job["JobID"] for job in jobs} == {
        stage.replace("/", "-"): entry["job_id"] for stage, entry in manifest.items()}
    assert all(job["State"] == "COMPLETED" for job in jobs)
    assert here.wait(timeout=900) == 0, here_log.read_text()[-2000:]
    for fmt in ("md", "csv", "json"):
        assert (out / f"tables.{fmt}").read_text() == (tmp_path / "here" / f"tables.{fmt}").read_text()
