"""Pretraining as a submitit job (tools/pretrain_net.py --launcher slurm): every task of the job is one process
of the run, its distributed environment set from SLURM's; on preemption or time-out submitit calls checkpoint()
and requeues the job, which resumes from OUTPUT/checkpoint.pth (losing at most train.checkpoint_every steps)."""
import submitit

from pretrain.train import train
from sslt_core.cluster import distributed_from_job


class PretrainJob(submitit.helpers.Checkpointable):
    def __init__(self, run, output_dir):
        self.run, self.output_dir = run, str(output_dir)

    def __call__(self):
        distributed_from_job()
        return train(self.run, self.output_dir, resume=True, progress=False)

    def checkpoint(self, *args, **kwargs):
        """Requeue the same job: it resumes from the last checkpoint that train() wrote."""
        return submitit.helpers.DelayedSubmission(PretrainJob(self.run, self.output_dir))
