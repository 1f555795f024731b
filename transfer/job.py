"""A detection trial as a submitit job (tools/train_det.py --launcher slurm): each trial of a run is its own job,
so the trials run in parallel; inside, detectron2's launch spreads the trial over the job's GPUs and nodes. The
job that finishes last assembles OUTPUT/metrics.json; a requeued job resumes its trial from its last checkpoint,
and a trial that is done (trial_<k>/result.json) is never run again."""
from dataclasses import dataclass
from pathlib import Path

import submitit
from detectron2.engine import launch

from sslt_core.lock import OutputLock
from transfer.finetune import run_one_trial, setup_logging, summarize_run


@dataclass
class TrialRun:
    """What every trial job of one run shares (picklable)."""

    config: str
    weights: str
    output_dir: str
    trials: int
    seed: int = 0
    opts: tuple = ()
    data_root: str = None
    gpus_per_node: int = 0


def _worker(run, trial):
    setup_logging(Path(run.output_dir), quiet=True, name_suffix=f".trial{trial}")
    run_one_trial(run.config, run.weights, run.output_dir, trial, run.seed, run.opts, run.data_root)


class TrialJob(submitit.helpers.Checkpointable):
    def __init__(self, run, trial):
        self.run, self.trial = run, trial

    def __call__(self):
        env = submitit.JobEnvironment()
        folder = Path(self.run.output_dir) / f"trial_{self.trial}"
        lock = OutputLock(folder).acquire() if env.node == 0 else None
        try:
            port = 20000 + int(env.job_id.split("_")[0]) % 20000
            launch(_worker, max(1, self.run.gpus_per_node), num_machines=env.num_nodes, machine_rank=env.node,
                   dist_url=f"tcp://{env.hostnames[0]}:{port}" if env.num_nodes > 1 else "auto",
                   args=(self.run, self.trial))
        finally:
            if lock:
                lock.release()
        if env.node == 0:
            summarize_run(self.run.config, self.run.weights, self.run.output_dir, self.run.trials, self.run.seed,
                          self.run.opts)
            return str(folder / "result.json")
        return None

    def checkpoint(self, *args, **kwargs):
        """Requeue the same trial: detectron2 resumes it from the trial folder's last checkpoint."""
        return submitit.helpers.DelayedSubmission(TrialJob(self.run, self.trial))
