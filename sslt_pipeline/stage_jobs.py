"""Stages as submitit jobs (sslt_core/cluster.py): each submitted as soon as the stages it reads are done, at most
`max_parallel` at a time; the manifest records each job as it is submitted and each result as it ends, so a re-run
after the submitting process was killed adopts the jobs that still run or have finished instead of submitting
them again."""
import json
import time
from pathlib import Path

import submitit

from sslt_core import cluster
from sslt_core.atomic import write_json_atomic
from sslt_core.errors import ClusterError, OutputError
from sslt_pipeline.manifest import prepare_folder, settled

JOBS_FOLDER = ".jobs"  # OUTPUT/.jobs/<stage id>/: submitit's scripts, pickles and logs, apart from the stage's files


POLL_SECONDS = {"slurm": 60.0, "submitit-local": 2.0}  # one sacct call per job and poll on a cluster
UNKNOWN_GRACE_SECONDS = 15 * 60  # how long a job may be 'unknown' to sacct before the stage is given up
OUTPUTS_FILE = "stage_outputs.json"  # a job's outputs, as JSON in its stage folder (read back without a pickle)


class StageJob(submitit.helpers.Checkpointable):
    """A stage as a job's callable; requeued on preemption or time-out, the stage resumes from its own checkpoints.
    Its outputs go to the stage folder as JSON."""

    def __init__(self, stage_run, folder, inputs):
        self.stage_run, self.folder, self.inputs = stage_run, folder, inputs

    def __call__(self):
        env = submitit.JobEnvironment()
        if env.num_tasks > 1:  # a pretraining over several GPUs: one process per task
            cluster.distributed_from_job()
        outputs = self.stage_run(Path(self.folder), self.inputs) or {}
        if env.global_rank == 0:
            write_json_atomic(Path(self.folder) / OUTPUTS_FILE, outputs)
        return None

    def checkpoint(self, *args, **kwargs):
        return submitit.helpers.DelayedSubmission(StageJob(self.stage_run, self.folder, self.inputs))


def _job_record(entry, jobs_root):
    """(launcher, job folder, job id) of a manifest entry, checked: this toolkit's launchers, ids and folders only."""
    folder = Path(entry.get("job_folder", ""))
    if entry.get("launcher") not in cluster.JOB_LAUNCHERS or not folder.resolve().is_relative_to(jobs_root.resolve()):
        raise ClusterError(f"the manifest names job {entry.get('job_id')!r} in {folder}, which this pipeline did not "
                           "write; delete that entry of manifest.json or choose another --output-dir")
    return entry["launcher"], folder, entry["job_id"]


def _live_job(entry, jobs_root):
    """The job record of an entry whose job is still the scheduler's, else None."""
    if entry.get("status") != "running" or not entry.get("job_id"):
        return None
    record = _job_record(entry, jobs_root)
    return record if cluster.job_state(*record) in ("running", "unknown") else None


def _cancel(stage_id, record, log, wait_seconds=300):
    log(f"[cancel] {stage_id}: job {record[2]}, which would write where the stage runs again")
    cluster.cancel(*record)
    deadline = time.time() + wait_seconds
    while cluster.job_state(*record) in ("running", "unknown") and time.time() < deadline:
        time.sleep(2)


def refuse_live_jobs(manifest, output_dir):
    """A run in this process must not work beside jobs that still write into its stage folders."""
    live = {stage_id: entry["job_id"] for stage_id, entry in manifest.entries.items()
            if _live_job(entry, Path(output_dir) / JOBS_FOLDER)}
    if live:
        raise OutputError(f"stages {sorted(live)} run as jobs {sorted(set(live.values()))}; wait for them (run with "
                          "the same --launcher to pick them up) or cancel them first")


def run_as_jobs(stages, output_dir, manifest, log, launch, max_parallel, poll_seconds):
    jobs_root = output_dir / JOBS_FOLDER
    done, running, order, unknown_since = {}, {}, list(stages), {}

    def finish(stage_id, result):
        manifest.record(stage_id, result)
        done[stage_id] = result
        running.pop(stage_id, None)

    while order or running:
        for stage in list(order):
            if any(need not in done for need in stage.needs):
                continue  # waits for what it reads
            result = settled(stage, manifest, done, log)
            if result is not None:
                finish(stage.id, result)
                order.remove(stage)
                continue
            entry = manifest.entries.get(stage.id, {})
            try:
                live = _live_job(entry, jobs_root)
                if live and entry.get("hash") == stage.hash:  # submitted by an earlier run: picked up, not resubmitted
                    log(f"[adopt] {stage.id}: job {entry['job_id']}")
                    running[stage.id] = entry
                    order.remove(stage)
                    continue
                if entry.get("status") == "running" and entry.get("job_id") and entry.get("hash") == stage.hash:
                    state = cluster.job_state(*_job_record(entry, jobs_root))
                    if state in ("done", "failed"):  # it ended while nobody watched
                        running[stage.id] = entry
                        order.remove(stage)
                        continue
                if len(running) >= max_parallel:
                    continue
                if live:  # a job of an older spec still writes there
                    _cancel(stage.id, live, log)
                folder = output_dir / stage.id
                prepare_folder(stage, entry, folder, log)
                (folder / OUTPUTS_FILE).unlink(missing_ok=True)
                inputs = {k: done[k].get("outputs", {}) for k in stage.needs}
                launcher, job_folder, job_id = launch(stage, folder, inputs, jobs_root / stage.id)
            except ClusterError as error:  # a refusal or a foreign record fails this stage; the others go on
                log(f"[failed] {stage.id}: {error}")
                finish(stage.id, {"status": "failed", "hash": stage.hash, "reason": str(error)[:400]})
                order.remove(stage)
                continue
            entry = {"status": "running", "hash": stage.hash, "launcher": launcher, "job_folder": str(job_folder),
                     "job_id": str(job_id), "submitted": time.time()}
            manifest.record(stage.id, entry)
            running[stage.id] = entry
            order.remove(stage)
        for stage_id, entry in list(running.items()):
            record = _job_record(entry, jobs_root)
            state = cluster.job_state(*record)
            if state == "running":
                continue
            if state == "unknown":
                since = unknown_since.setdefault(stage_id, time.time())
                if time.time() - since < UNKNOWN_GRACE_SECONDS:
                    continue
            outputs_file = output_dir / stage_id / OUTPUTS_FILE
            if state == "done" and outputs_file.is_file():
                finish(stage_id, {"status": "done", "hash": entry["hash"],
                                  "outputs": json.loads(outputs_file.read_text()),
                                  "seconds": round(time.time() - entry.get("submitted", time.time()), 1),
                                  "job_id": entry["job_id"], "submitted": entry.get("submitted")})
                continue
            why = {"failed": "failed", "gone": "is gone", "unknown": "is unknown to the scheduler",
                   "done": "ended without outputs"}[state]
            reason = f"job {entry['job_id']} {why}: {cluster.job_failure(*record)}"
            log(f"[failed] {stage_id}: {reason}")
            finish(stage_id, {"status": "failed", "hash": entry["hash"], "reason": reason[:400],
                              "job_id": entry["job_id"]})
        if running or order:
            time.sleep(poll_seconds)
    return {stage.id: done[stage.id] for stage in stages}
