"""Resumable stages with a manifest: what the pipeline (sslt_pipeline/pipeline.py) is made of.

A stage has an id, a spec (everything its result depends on, by content: config texts, overrides, checkpoint
hashes, the hashes of the stages it reads) and a function that writes into the stage's own folder. The manifest
records each stage's spec hash and status. A stage whose hash is recorded as done is not run again; one whose spec
changed is cleared and re-run, and so is everything downstream (their specs hold its hash); one that was
interrupted runs again in its folder, where its own resume logic picks up. A stage that fails is recorded with
its reason, the stages that need it are recorded as skipped (with that reason), and the others go on.

Two ways to run them:
- in this process, one after another (`launch=None`);
- as jobs (`launch(stage, folder, inputs) -> (launcher, job folder, job id)`, sslt_core/cluster.py): each stage is
  submitted as soon as the stages it reads are done, at most `max_parallel` at a time. The manifest records each
  job as it is submitted and each result as it ends, so a re-run after the submitting process was killed picks up
  the jobs that still run or have finished instead of submitting them again.
"""
import hashlib
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import submitit

from sslt_core import cluster
from sslt_core.atomic import write_json_atomic
from sslt_core.errors import ClusterError, ConfigError, OutputError

JOBS_FOLDER = ".jobs"  # OUTPUT/.jobs/<stage id>/: submitit's scripts, pickles and logs, apart from the stage's files


@dataclass
class Stage:
    id: str  # e.g. "simsiam/pretrain"
    spec: dict  # JSON-serialisable: what the result depends on
    run: object  # callable(folder: Path, inputs: {needed stage id: its outputs}) -> dict (JSON-serialisable)
    needs: tuple = ()  # ids of the stages whose outputs this one reads
    hash: str = field(default="", init=False)

    @property
    def kind(self):
        """pretrain | convert | knn | linear | detection (its resources in the pipeline config)."""
        kind = self.id.rsplit("/", 1)[-1]
        return kind if kind in ("pretrain", "convert", "knn", "linear") else "detection"


class Manifest:
    def __init__(self, path):
        self.path = Path(path)
        try:
            self.entries = json.loads(self.path.read_text()) if self.path.is_file() else {}
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise OutputError(f"{self.path} is not valid JSON; delete it to run every stage again") from None
        if not isinstance(self.entries, dict):
            raise OutputError(f"{self.path} does not hold stage entries; delete it to run every stage again")

    def record(self, stage_id, entry):
        self.entries[stage_id] = entry
        write_json_atomic(self.path, self.entries)


def spec_hash(spec):
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _reason(error):
    text = str(error).splitlines()[0] if str(error) else ""
    return f"{type(error).__name__}: {text}"[:300]


def _prepare(stage, entry, folder, log):
    """Clear a stage folder whose inputs changed; say what is about to happen."""
    if entry.get("hash") not in (None, stage.hash) and folder.exists():
        log(f"[redo] {stage.id}: its inputs changed")
        shutil.rmtree(folder)
    elif entry:
        log(f"[{'retry' if entry.get('status') == 'failed' else 'resume'}] {stage.id}")
    else:
        log(f"[run] {stage.id}")
    folder.mkdir(parents=True, exist_ok=True)


def _hash_and_check(stages, output_dir):
    hashes = {}
    for stage in stages:
        stage.hash = spec_hash({"spec": stage.spec, "needs": {k: hashes[k] for k in stage.needs}})
        hashes[stage.id] = stage.hash
        folder = output_dir / stage.id
        if not folder.resolve().is_relative_to(output_dir.resolve()):  # never write (or remove) outside OUTPUT
            raise ConfigError(f"stage {stage.id!r} would live outside {output_dir}; model names must not hold "
                              "'..' or '/'")


def run_stages(stages, output_dir, log=print, launch=None, max_parallel=1, poll_seconds=None):
    """Run `stages` (in dependency order) under `output_dir`; return {id: manifest entry}.
    `launch(stage, folder, inputs, job_folder) -> (launcher, job folder, job id)` runs them as jobs."""
    output_dir = Path(output_dir)
    manifest = Manifest(output_dir / "manifest.json")
    _hash_and_check(stages, output_dir)
    if launch is None:
        refuse_live_jobs(manifest, output_dir)
        return _run_here(stages, output_dir, manifest, log)
    return _run_as_jobs(stages, output_dir, manifest, log, launch, max_parallel,
                        poll_seconds or POLL_SECONDS.get(getattr(launch, "launcher", ""), 5.0))


def _settled(stage, manifest, done, log):
    """The stage's entry if nothing needs running (done and unchanged, or skipped: a need did not finish), else
    None."""
    entry = manifest.entries.get(stage.id, {})
    unmet = [k for k in stage.needs if done[k]["status"] != "done"]
    if unmet:  # not run: what it reads failed (or was itself skipped)
        why = "failed" if done[unmet[0]]["status"] == "failed" else "was skipped"
        return {"status": "skipped", "reason": f"needs {unmet[0]}, which {why}", "hash": stage.hash}
    if entry.get("hash") == stage.hash and entry.get("status") == "done":
        log(f"[skip] {stage.id}: done, unchanged")
        return entry
    return None


def _run_here(stages, output_dir, manifest, log):
    done = {}
    for stage in stages:
        result = _settled(stage, manifest, done, log)
        if result is None:
            folder = output_dir / stage.id
            _prepare(stage, manifest.entries.get(stage.id, {}), folder, log)
            manifest.record(stage.id, {"status": "running", "hash": stage.hash})
            start = time.time()
            try:
                outputs = stage.run(folder, {k: done[k].get("outputs", {}) for k in stage.needs})
                result = {"status": "done", "hash": stage.hash, "outputs": outputs or {},
                          "seconds": round(time.time() - start, 1)}
            except Exception as error:  # a failed stage marks its row; the others go on
                log(f"[failed] {stage.id}: {_reason(error)}")
                result = {"status": "failed", "hash": stage.hash, "reason": _reason(error)}
        manifest.record(stage.id, result)
        done[stage.id] = result
    return done


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


def _run_as_jobs(stages, output_dir, manifest, log, launch, max_parallel, poll_seconds):
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
            result = _settled(stage, manifest, done, log)
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
                _prepare(stage, entry, folder, log)
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
