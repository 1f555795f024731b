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
import time
from pathlib import Path

from sslt_pipeline.manifest import Manifest, Stage, hash_and_check, prepare_folder, reason, settled, spec_hash
from sslt_pipeline.stage_jobs import JOBS_FOLDER, POLL_SECONDS, StageJob, refuse_live_jobs, run_as_jobs

__all__ = ["JOBS_FOLDER", "Manifest", "Stage", "StageJob", "run_stages", "spec_hash"]


def run_stages(stages, output_dir, log=print, launch=None, max_parallel=1, poll_seconds=None):
    """Run `stages` (in dependency order) under `output_dir`; return {id: manifest entry}.
    `launch(stage, folder, inputs, job_folder) -> (launcher, job folder, job id)` runs them as jobs."""
    output_dir = Path(output_dir)
    manifest = Manifest(output_dir / "manifest.json")
    hash_and_check(stages, output_dir)
    if launch is None:
        refuse_live_jobs(manifest, output_dir)
        return _run_here(stages, output_dir, manifest, log)
    return run_as_jobs(stages, output_dir, manifest, log, launch, max_parallel,
                        poll_seconds or POLL_SECONDS.get(getattr(launch, "launcher", ""), 5.0))


def _run_here(stages, output_dir, manifest, log):
    done = {}
    for stage in stages:
        result = settled(stage, manifest, done, log)
        if result is None:
            folder = output_dir / stage.id
            prepare_folder(stage, manifest.entries.get(stage.id, {}), folder, log)
            manifest.record(stage.id, {"status": "running", "hash": stage.hash})
            start = time.time()
            try:
                outputs = stage.run(folder, {k: done[k].get("outputs", {}) for k in stage.needs})
                result = {"status": "done", "hash": stage.hash, "outputs": outputs or {},
                          "seconds": round(time.time() - start, 1)}
            except Exception as error:  # a failed stage marks its row; the others go on
                log(f"[failed] {stage.id}: {reason(error)}")
                result = {"status": "failed", "hash": stage.hash, "reason": reason(error)}
        manifest.record(stage.id, result)
        done[stage.id] = result
    return done


