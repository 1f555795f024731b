"""The training engine under pretraining and evaluation (after detectron2's engine/): one step function, a loop
with hooks, and the hooks a run is made of.

    step.py        train_step: forward under autocast, NaN guard across ranks, backward, clipping, optimizer step
    loop.py        TrainLoop, HookBase
    hooks.py       ParamScheduler (lr per group, weight decay), GradientClipper, EpochMonitor, StepCallbacks
    writer.py      MetricsWriter (metrics.jsonl, TensorBoard), ProgressBar (tqdm)
    checkpoint.py  Checkpointer (atomic, every rank's RNG and state), load_checkpoint
    schedules.py   cosine_schedule (DINO's cosine_scheduler)
    sampler.py     EpochSampler (seeded, per rank, resumable part way)
    precision.py   precision_setup (bf16 autocast, channels_last)
    distributed.py setup_distributed and the collectives
"""
from sslt_core.engine.checkpoint import Checkpointer, load_checkpoint, save_atomic
from sslt_core.engine.distributed import setup_distributed
from sslt_core.engine.hooks import EpochMonitor, GradientClipper, ParamScheduler, StepCallbacks
from sslt_core.engine.loop import HookBase, TrainLoop
from sslt_core.engine.precision import precision_setup, to_channels_last
from sslt_core.engine.sampler import EpochSampler
from sslt_core.engine.schedules import cosine_schedule
from sslt_core.engine.step import TrainingDiverged, clip_grad_norm, clip_grad_per_parameter, train_step
from sslt_core.engine.writer import MetricsWriter, ProgressBar

__all__ = ["Checkpointer", "EpochMonitor", "EpochSampler", "GradientClipper", "HookBase", "MetricsWriter",
           "ParamScheduler", "ProgressBar", "StepCallbacks", "TrainLoop", "TrainingDiverged", "clip_grad_norm",
           "clip_grad_per_parameter", "cosine_schedule", "load_checkpoint", "precision_setup", "save_atomic",
           "setup_distributed", "to_channels_last", "train_step"]
