"""The one pretraining run, for every method in METHODS; one process or torchrun's many: the entry point, the output
folder's lock, and the run assembled from the engine's loop (sslt_core/engine) and pretrain's hooks.

    OUTPUT/config.yaml          the resolved config
    OUTPUT/checkpoint.pth       everything an exact resume needs (written atomically; read back weights-only)
    OUTPUT/encoder.safetensors  the exported encoder: a torchvision state dict, metadata {"ssl_transfer": JSON}
    OUTPUT/metrics.jsonl        one JSON line per logged step and per epoch (loss, output std, kNN accuracy,
                                the label-free monitors diag_*)
    OUTPUT/spectra.jsonl        per monitored epoch, the covariance spectra of the backbone and projector outputs
    OUTPUT/log.txt              what the run decided on its own (precision, queue sizes, shuffle BN), warnings
    OUTPUT/tensorboard/         the same scalars for TensorBoard
    OUTPUT/.lock                held while the run lives (sslt_core/lock.py)

The parts: pretrain/schedule.py (optimizer, lr), pretrain/checkpoint.py (the checkpoint's checks on a resume),
pretrain/loop.py (the loop's step hooks), pretrain/monitors.py (epoch-end monitors), pretrain/outputs.py (the
output folder), pretrain/export.py (the encoder).
"""
import random
from functools import partial
from pathlib import Path

import numpy as np
import torch
import yaml

from pretrain import distributed
from pretrain.augment import SeededViews
from pretrain.checkpoint import RESUMABLE_CHANGES, has_checkpoint, load_checkpoint, metadata
from pretrain.export import export_encoder
from pretrain.label_free_monitor import ProbeSet
from pretrain.loop import loader, pretrain_loop
from pretrain.methods import build_method
from pretrain.monitors import EpochStatistics, collapse_hook, knn_hook, knn_monitor, label_free_hook
from pretrain.outputs import check_outputs, keep, remove_new, say
from pretrain.schedule import OPTIMIZERS, build_optimizer, learning_rate, lr_at, lr_note, lr_scale
from sslt_core.atomic import write_bytes_atomic
from sslt_core.datasets import dataset_path, image_folder
from sslt_core.engine import (
    Checkpointer,
    EpochSampler,
    MetricsWriter,
    ProgressBar,
    TrainingDiverged,
    precision_setup,
    setup_distributed,
)
from sslt_core.engine.checkpoint import save_atomic as _save
from sslt_core.errors import ConfigError, DatasetError, OutputError, ToolkitError
from sslt_core.lock import OutputLock
from sslt_core.rng import rng_scope

# The names other modules and tests import from here.
__all__ = ["OPTIMIZERS", "RESUMABLE_CHANGES", "EpochSampler", "TrainingDiverged", "build_optimizer",
           "export_encoder", "knn_monitor", "learning_rate", "lr_at", "lr_scale", "precision_setup",
           "setup_distributed", "train"]


def train(run, output_dir, resume=False, progress=True):
    """Pretrain `run` (a RunConfig) into `output_dir`, which it locks; return the last epoch's metrics."""
    dataset_path("imagenet", run.train.data)  # a wrong data root fails before the output folder is touched
    device, local_rank = setup_distributed()
    lock, refusal, before = None, None, set()
    if distributed.rank() == 0:  # the output folder is rank 0's: the other ranks learn whether it got it
        try:
            lock = OutputLock(output_dir).acquire()
            before = {p.name for p in Path(output_dir).iterdir()}
            if has_checkpoint(output_dir) and not resume:
                raise OutputError(f"{Path(output_dir) / 'checkpoint.pth'} exists: pass --resume to continue it, or "
                                  "choose another --output-dir")
        except ToolkitError as error:
            refusal = error
    if not distributed.all_ranks_agree(refusal is None):
        if lock:
            lock.release()
        raise refusal or OutputError(f"rank 0 could not take the output folder {output_dir}; see its error")
    try:
        if lock and lock.note():
            say(Path(output_dir), lock.note())
        with rng_scope():  # the run seeds the global generators; the caller gets its own state back
            return _train(run, Path(output_dir), resume, progress, device, local_rank)
    except DatasetError:  # bad data (an image that does not decode) before any checkpoint: no partial output
        if lock and not has_checkpoint(output_dir):
            remove_new(Path(output_dir), before)
        raise
    finally:
        if lock:
            lock.release()


def _notes(run, cfg, device):
    """What the log says of the run's own decisions, before the method's."""
    notes = [precision_setup(device, cfg.precision)[2], f"data_pipeline {cfg.data_pipeline}: " + (
        f"JPEGs decoded and views augmented in batches on the {device.type.upper()}" if cfg.data_pipeline == "tensor"
        else f"PIL decoding and augmentation in {cfg.workers or 'the main'} worker process(es)")]
    return [*notes, lr_note(cfg)]


def _train(run, output_dir, resume, progress, device, local_rank):
    cfg = run.train
    world, is_main = distributed.world_size(), distributed.rank() == 0
    checkpoint_path = output_dir / "checkpoint.pth"
    if cfg.batch_size % world:
        raise ConfigError(f"train.batch_size {cfg.batch_size} must divide among {world} processes")

    torch.manual_seed(cfg.seed)  # identical initial weights on every rank
    np.random.seed(cfg.seed)  # the run's other generators too, so that every rank's RNG state is reproducible
    random.seed(cfg.seed)
    method = build_method(run)
    images = image_folder("imagenet", "train", cfg.data)
    dataset = SeededViews(images, method.view_recipes, cfg.image_size, seed=cfg.seed, pipeline=cfg.data_pipeline)
    sampler = EpochSampler(len(dataset), cfg.batch_size // world, cfg.seed)
    steps_per_epoch = sampler.batches_per_epoch()
    if steps_per_epoch == 0:
        raise ConfigError(f"{len(dataset)} training images make no full batch of {cfg.batch_size}; lower "
                          "train.batch_size")
    autocast, channels_last, _ = precision_setup(device, cfg.precision)
    notes = _notes(run, cfg, device) + method.prepare(cfg, steps_per_epoch) + list(run.warnings)
    if cfg.sync_bn and world == 1:
        notes.append("train.sync_bn: plain BN on one process")
    total_steps = cfg.epochs * steps_per_epoch
    method = method.to(device, memory_format=torch.channels_last if channels_last else torch.preserve_format)
    if cfg.sync_bn and world > 1:
        method = torch.nn.SyncBatchNorm.convert_sync_batchnorm(
            method, process_group=distributed.sync_bn_group(cfg, world))
    optimizer = build_optimizer(method, cfg)
    step, partial_epoch = 0, ([], [])
    if resume and has_checkpoint(output_dir):
        step, partial_epoch = load_checkpoint(checkpoint_path, run, method, optimizer, world, total_steps)
        notes.append(f"resumed from {checkpoint_path} at step {step}")
    elif resume:
        notes.append(f"--resume: no {checkpoint_path} yet, starting from step 0")
    kept, refusal = {}, None
    if is_main:  # links planted where the run writes are refused before it writes anything
        try:
            kept = check_outputs(output_dir, step)
        except ToolkitError as error:
            refusal = error
    if not distributed.all_ranks_agree(refusal is None):
        raise refusal or OutputError(f"rank 0 could not use the output folder {output_dir}; see its error")
    if is_main:  # written once the checkpoint (if any) is known to fit
        write_bytes_atomic(output_dir / "config.yaml", yaml.safe_dump(run.to_dict(), sort_keys=False).encode())
        for note in notes:
            say(output_dir, note)
    model = method
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(
            method, device_ids=[local_rank] if device.type == "cuda" else None)
    probe = None
    if is_main and cfg.diagnostics_every:  # the same images at every epoch and after a resume
        probe = ProbeSet(cfg.data, cfg.diagnostics_samples, cfg.diagnostics_seed, cfg.image_size,
                         method.view_recipes)
    keep(kept)  # before the writer appends to them
    writer = MetricsWriter(output_dir / "metrics.jsonl", output_dir / "tensorboard", every=cfg.log_every,
                           purge_step=step, leave_out=("collapse_warning",), enabled=is_main)
    log = partial(say, output_dir)
    statistics = EpochStatistics(partial_epoch)
    # knn_monitor and _save are looked up in this module when called, so that tests can wrap them
    # (tests/pretrain/test_resume_kills.py kills the run inside them)
    knn = knn_hook(lambda: knn_monitor(method.encoder, cfg.data, cfg.image_size, cfg.knn_k, cfg.knn_temperature,
                                       device), cfg.knn_every, is_main)
    checkpointer = Checkpointer(
        checkpoint_path, method, optimizer, period=cfg.checkpoint_every,
        rank_state=lambda: {"method": method.rank_state()}, save=lambda path, obj: _save(path, obj),
        extra=lambda loop, epochs_done: {"ssl_transfer": metadata(run, loop.step, epochs_done),
                                         "partial_epoch": statistics.partial_epoch(loop)})
    hooks = [knn, label_free_hook(method, probe, device, autocast, cfg, output_dir, log),
             collapse_hook(method, log, is_main),
             ProgressBar(lambda loop: f"{run.method} epoch {loop.epoch + 1}/{cfg.epochs}",
                         postfix={"loss": ".4f", "lr": ".3g"}, enabled=is_main and progress),
             writer, checkpointer]

    def diverged(loop, loss):
        return TrainingDiverged(f"{run.method}: loss is {loss} at step {loop.step} (epoch {loop.epoch + 1}); the "
                                f"last good checkpoint is {checkpoint_path}; lower train.base_lr")

    loop = pretrain_loop(method, model, optimizer, cfg, loader(dataset, sampler, cfg, world, device), steps_per_epoch,
                         total_steps, device, channels_last, autocast, start_step=step, statistics=statistics,
                         hooks=hooks, diverged=diverged)
    try:
        last = loop.run()
    finally:
        writer.close()  # also where the loop never started
    if loop.completed and is_main:
        export_encoder(output_dir / "encoder.safetensors", method.encoder, metadata(run, loop.step, cfg.epochs))
    return last
