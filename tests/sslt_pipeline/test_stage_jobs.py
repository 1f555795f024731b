"""Stages as jobs (submitit's local executor): each submitted as soon as what it reads is done, at most max_parallel
at a time; a failure marks the stages that need it and the others go on; a run killed after submitting leaves
its jobs to the next run, which adopts them instead of submitting them again."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from sslt_core import cluster
from sslt_pipeline.stages import JOBS_FOLDER, Stage, StageJob, run_stages
from tests.conftest import REPO
from tests.sslt_pipeline.job_stages import timed


def local_launch(stage, folder, inputs, job_folder):
    ex = cluster.executor("submitit-local", job_folder, cluster.Resources(cpus_per_task=1, time=10))
    job = cluster.submit(ex, StageJob(stage.run, str(folder), inputs))
    return "submitit-local", ex.folder, job.job_id


local_launch.launcher = "submitit-local"


def graph(fail=()):
    return [Stage("a/pretrain", {"n": 1}, timed(3, "a/pretrain" in fail)),
            Stage("b/pretrain", {"n": 2}, timed(3)),
            Stage("a/knn", {"n": 3}, timed(0.1), ("a/pretrain",)),
            Stage("b/knn", {"n": 4}, timed(0.1), ("b/pretrain",))]


@pytest.mark.slow
def test_stages_run_as_jobs_in_parallel_and_in_dependency_order(tmp_path):
    lines = []
    entries = run_stages(graph(), tmp_path, log=lines.append, launch=local_launch, max_parallel=2, poll_seconds=0.2)
    assert all(entry["status"] == "done" for entry in entries.values()), entries
    out = {k: v["outputs"] for k, v in entries.items()}
    a, b = out["a/pretrain"], out["b/pretrain"]
    assert a["start"] < b["end"] and b["start"] < a["end"]  # both pretrainings at once
    assert out["a/knn"]["start"] >= out["a/pretrain"]["end"] and out["b/knn"]["start"] >= out["b/pretrain"]["end"]
    assert out["a/knn"]["inputs"]["a/pretrain"]["end"] == out["a/pretrain"]["end"]  # what the stage read
    assert (tmp_path / JOBS_FOLDER / "a" / "pretrain").is_dir()  # job files apart from the stage's own
    again = []
    run_stages(graph(), tmp_path, log=again.append, launch=local_launch, max_parallel=2, poll_seconds=0.2)
    assert len([line for line in again if line.startswith("[skip]")]) == 4


@pytest.mark.slow
def test_one_parallel_job_at_a_time_when_asked(tmp_path):
    entries = run_stages(graph(), tmp_path, log=lambda m: None, launch=local_launch, max_parallel=1,
                         poll_seconds=0.2)
    spans = sorted((e["outputs"]["start"], e["outputs"]["end"]) for e in entries.values())
    assert all(earlier[1] <= later[0] for earlier, later in zip(spans, spans[1:]))


@pytest.mark.slow
def test_a_failed_job_marks_what_needs_it_and_the_others_go_on(tmp_path):
    lines = []
    entries = run_stages(graph(fail=("a/pretrain",)), tmp_path, log=lines.append, launch=local_launch,
                         max_parallel=2, poll_seconds=0.2)
    assert entries["a/pretrain"]["status"] == "failed" and "pretrain broke on purpose" in \
        entries["a/pretrain"]["reason"] and "log: " in entries["a/pretrain"]["reason"]
    assert entries["a/knn"] == {"status": "skipped", "reason": "needs a/pretrain, which failed",
                                "hash": entries["a/knn"]["hash"]}
    assert entries["b/knn"]["status"] == "done"


SUBMIT_AND_WAIT = """
import sys
from tests.sslt_pipeline.test_stage_jobs import graph, local_launch
from sslt_pipeline.stages import run_stages
run_stages(graph(), sys.argv[1], log=print, launch=local_launch, max_parallel=2, poll_seconds=0.2)
"""


@pytest.mark.slow
def test_a_killed_submitter_leaves_its_jobs_to_the_next_run(tmp_path):
    submitter = subprocess.Popen([sys.executable, "-c", SUBMIT_AND_WAIT, str(tmp_path)], cwd=REPO,
                                 stdout=subprocess.DEVNULL)
    manifest = tmp_path / "manifest.json"
    deadline = time.time() + 120
    while time.time() < deadline:
        entries = json.loads(manifest.read_text()) if manifest.is_file() else {}
        if sum(entry.get("job_id") is not None for entry in entries.values()) >= 2:
            break
        time.sleep(0.1)
    os.kill(submitter.pid, signal.SIGKILL)  # its jobs go on
    submitter.wait()
    lines = []
    entries = run_stages(graph(), tmp_path, log=lines.append, launch=local_launch, max_parallel=2, poll_seconds=0.2)
    assert all(entry["status"] == "done" for entry in entries.values())
    adopted = [line for line in lines if line.startswith("[adopt]")]
    assert len(adopted) >= 1
    for stage in ("a/pretrain", "b/pretrain"):  # each pretraining ran once: by the job the first run submitted
        assert len(list((tmp_path / JOBS_FOLDER / stage).glob("*_submitted.pkl"))) == 1
