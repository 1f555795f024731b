"""A detection trial as a submitit job (tools/train_det.py --launcher slurm): each trial of a run is its own job,
so the trials run in parallel; inside, detectron2's launch spreads the trial over the job's GPUs and nodes. The
job that finishes last assembles OUTPUT/metrics.json; a requeued job resumes its trial from its last checkpoint,
and a trial that is done (trial_<k>/result.json) or whose job still runs (OUTPUT/jobs.json) is not submitted
again."""
import json
import os
from pathlib import Path

import submitit
from detectron2.engine import launch

from sslt_core import cluster
from sslt_core.atomic import write_json_atomic
from sslt_core.errors import ConfigError
from sslt_core.fingerprint import file_digest
from transfer.trials import run_one_trial, setup_logging, summarize_run

JOBS_FILE = "jobs.json"  # {trial: {"launcher", "folder", "job_id"}}


def _worker(run, trial):
    setup_logging(run.output_dir, quiet=True, name_suffix=f".trial{trial}")
    run_one_trial(run, trial)


class TrialJob(submitit.helpers.Checkpointable):
    """Trial `trial` of a started DetectionRun (transfer/detection_run.py) as one job."""

    def __init__(self, run, trial):
        self.run, self.trial = run, trial

    def __call__(self):
        env = submitit.JobEnvironment()
        folder = self.run.folder(self.trial)
        recorded = json.loads((Path(self.run.output_dir) / "run.json").read_text())["weights_sha256"]
        if self.run.weights != "random" and file_digest(self.run.weights) != recorded:
            raise ConfigError(f"{self.run.weights} changed since the run started (sha256 {recorded[:12]}...); "
                              "start a new --output-dir")
        cluster.distributed_from_job()  # MASTER_ADDR / MASTER_PORT of the job, for detectron2's dist_url
        dist_url = f"tcp://{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']}"
        launch(_worker, max(1, self.run.gpus_per_node), num_machines=env.num_nodes, machine_rank=env.node,
               dist_url=dist_url if env.num_nodes > 1 else "auto", args=(self.run, self.trial))
        if env.node == 0:
            summarize_run(self.run)
            return str(folder / "result.json")
        return None

    def checkpoint(self, *args, **kwargs):
        """Requeue the same trial: detectron2 resumes it from the trial folder's last checkpoint."""
        return submitit.helpers.DelayedSubmission(TrialJob(self.run, self.trial))


def submit_trials(run, launcher, resources, job_folder):
    """{trial: what happened} for every trial of a started run: "done", "running <job id>" (a job of an earlier
    submission still runs: not submitted again), or the job just submitted."""
    output = Path(run.output_dir)
    records_file = output / JOBS_FILE
    records = cluster.read_job_records(records_file) or {}
    executor = cluster.executor(launcher, job_folder, resources, name="train-det",
                                one_task=True)  # one task per node: detectron2's launch starts one process per GPU
    outcome = {}
    for trial in range(run.trials):
        record = records.get(str(trial))
        if (output / f"trial_{trial}" / "result.json").is_file():
            outcome[trial] = "done"
        elif record and cluster.job_state(record["launcher"], record["folder"], record["job_id"]) in (
                "running", "unknown"):
            outcome[trial] = f"running {record['job_id']}"
        else:
            job = cluster.submit(executor, TrialJob(run, trial))
            records[str(trial)] = {"launcher": launcher, "folder": str(executor.folder), "job_id": str(job.job_id)}
            write_json_atomic(records_file, records)
            outcome[trial] = job
    return outcome
