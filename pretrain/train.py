"""The one pretraining loop, for every method in METHODS; one process or torchrun's many.

    OUTPUT/config.yaml          the resolved config
    OUTPUT/checkpoint.pth       everything an exact resume needs (written atomically; read back weights-only)
    OUTPUT/encoder.safetensors  the exported encoder: a torchvision state dict, metadata {"ssl_transfer": JSON}
    OUTPUT/metrics.jsonl        one JSON line per logged step and per epoch (loss, output std, kNN accuracy,
                                the label-free monitors diag_*)
    OUTPUT/spectra.jsonl        per monitored epoch, the covariance spectra of the backbone and projector outputs
    OUTPUT/log.txt              what the run decided on its own (precision, queue sizes, shuffle BN), warnings
    OUTPUT/tensorboard/         the same scalars for TensorBoard
    OUTPUT/.lock                held while the run lives (sslt_core/lock.py)
"""
import io
import json
import math
import os
import random
import shutil
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import safetensors.torch
import torch
import yaml
from tqdm import tqdm

from eval.diagnostics import dimensional_collapse_warning
from eval.features import split_features
from eval.knn import accuracy, knn_classify
from pretrain import distributed
from pretrain.augment import SeededViews, collate, to_device_views
from pretrain.label_free_monitor import ProbeSet, label_free_monitor, scalars
from pretrain.method import output_std
from pretrain.methods import build_method
from sslt_core.atomic import check_output_folder, check_replaceable, open_output, write_bytes_atomic
from sslt_core.datasets import dataset_path, image_folder
from sslt_core.errors import CheckpointError, ConfigError, DatasetError, OutputError, ToolkitError
from sslt_core.lock import LOCK_NAME, OutputLock
from sslt_core.optim import LARC, LARS
from sslt_core.rng import rng_scope
from sslt_core.safe_load import TRUST_FLAG, load_file


class TrainingDiverged(ToolkitError):
    """A non-finite loss: the run stops with the last good checkpoint kept."""


def lr_scale(train_cfg):
    """The factor of the lr rule at this batch size: batch/256 (linear), sqrt(batch) or 1."""
    rule = {"linear": train_cfg.batch_size / 256, "sqrt": math.sqrt(train_cfg.batch_size), "none": 1.0}
    return rule[train_cfg.lr_rule]  # one of these: checked with the config


def learning_rate(train_cfg):
    return train_cfg.base_lr * lr_scale(train_cfg)


def lr_at(train_cfg, step, steps_per_epoch):
    """Linear warm-up from warmup_start_lr, then cosine decay to final_lr, evaluated every step or (MoCo, SimSiam:
    `adjust_learning_rate` once per epoch) at the start of each epoch."""
    scale = lr_scale(train_cfg)
    peak, start, final = train_cfg.base_lr * scale, train_cfg.warmup_start_lr * scale, train_cfg.final_lr * scale
    warmup = train_cfg.warmup_epochs * steps_per_epoch
    total = train_cfg.epochs * steps_per_epoch
    if step < warmup:
        return start + (peak - start) * step / warmup
    if train_cfg.lr_schedule_unit == "epoch":
        step = step // steps_per_epoch * steps_per_epoch
    progress = (step - warmup) / max(total - warmup, 1)
    return final + (peak - final) * 0.5 * (1 + math.cos(math.pi * progress))


OPTIMIZERS = {"sgd": torch.optim.SGD, "lars": LARS, "larc": LARC}


def build_optimizer(method, train_cfg):
    groups = method.param_groups()
    peak = learning_rate(train_cfg)
    for group in groups:
        group["lr"] = group["initial_lr"] = peak
    extra = {"lr_in_momentum": train_cfg.lr_in_momentum} if train_cfg.optimizer != "sgd" else {}
    return OPTIMIZERS[train_cfg.optimizer](groups, lr=peak, weight_decay=train_cfg.weight_decay,
                                           momentum=train_cfg.momentum, **extra)


class EpochSampler(torch.utils.data.Sampler):
    """This rank's share of a seeded shuffle of epoch `epoch`, from batch `skip_batches` on (exact resume)."""

    def __init__(self, size, batch_per_rank, seed):
        self.size, self.batch, self.seed, self.epoch, self.skip_batches = size, batch_per_rank, seed, 0, 0
        self.world, self.rank = distributed.world_size(), distributed.rank()

    def batches_per_epoch(self):
        return self.size // (self.batch * self.world)

    def __iter__(self):
        order = torch.randperm(self.size, generator=torch.Generator().manual_seed(self.seed * 10007 + self.epoch))
        used = order[: self.batches_per_epoch() * self.batch * self.world].view(-1, self.world, self.batch)
        return iter(used[self.skip_batches:, self.rank].reshape(-1).tolist())

    def __len__(self):
        return (self.batches_per_epoch() - self.skip_batches) * self.batch


def _rng_state():
    return {"torch": torch.random.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def _set_rng_state(state):
    torch.random.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if state["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _save(path, obj):
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    write_bytes_atomic(path, buffer.getvalue())


def export_encoder(path, encoder, metadata):
    """The encoder as safetensors: tensors and a JSON string, nothing that needs a pickle to read."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in encoder.state_dict().items()}
    write_bytes_atomic(path, safetensors.torch.save(tensors, metadata={"ssl_transfer": json.dumps(metadata)}))


def _metadata(run, step, epoch):
    return {"method": run.method, "arch": run.model.arch, "epochs": run.train.epochs, "epochs_done": epoch,
            "steps": step, "config": run.to_dict()}


@torch.no_grad()
def knn_monitor(encoder, data, image_size, k, temperature, device):
    """kNN top-1 of the backbone's features, train split as bank and val split as queries (None without val)."""
    if not (dataset_path("imagenet", data) / "val").is_dir():
        return None
    was_training = encoder.training
    splits, classes, _ = split_features(encoder, "pretraining monitor", None, data, image_size, batch_size=256,
                                        device=device)
    encoder.train(was_training)
    (bank_x, bank_y), (query_x, query_y) = splits["train"], splits["val"]
    rankings = knn_classify(bank_x, bank_y, query_x, (k,), temperature, len(classes), backend="torch")
    return accuracy(rankings[k], query_y)["top1"]


def precision_setup(device, precision):
    """(autocast context, channels_last?, what to say in the log) for train.precision on this device."""
    if precision == "auto":
        if device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16), True, "precision auto: bf16 autocast with " \
                "channels_last on the GPU"
        return nullcontext(), False, "precision auto: fp32 on the CPU (train.precision=bf16 runs bf16 autocast there)"
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16), device.type == "cuda", \
            f"precision bf16: bf16 autocast on the {device.type.upper()}"
    return nullcontext(), False, "precision fp32"


def sync_bn_group(train_cfg, world):
    """The process group of SyncBN: all processes, or consecutive groups of train.sync_bn_group_size (as apex's
    create_syncbn_process_group, which SwAV's batch-4096 run uses with 8 GPUs per group)."""
    size = train_cfg.sync_bn_group_size
    if size in (0, world):
        return None
    if world % size:
        raise ConfigError(f"train.sync_bn_group_size {size} must divide the {world} processes")
    group, _ = torch.distributed.new_subgroups(size)
    return group


def setup_distributed():
    """(device, local rank): torchrun's environment if present, else one process."""
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)  # before the process group: NCCL's barriers use the current device
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device, local_rank


def _logged_by_step(line, step):
    try:
        return json.loads(line)["step"] <= step
    except (ValueError, KeyError, TypeError):  # a line cut short by a kill
        return False


def _metrics_lines(path):
    """The lines of a run's metrics.jsonl or spectra.jsonl; json.dumps writes ASCII, so a line that is not UTF-8
    was not ours."""
    check_replaceable(path)  # a link planted there is neither read nor written through
    lines = path.read_bytes().splitlines()
    for number, line in enumerate(lines, 1):
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            raise CheckpointError(f"{path} line {number} is not UTF-8 text, so this toolkit did not write it; "
                                  "choose another --output-dir") from None
    return [line.decode() for line in lines]


def _say(output_dir, message):
    """A line for the console and OUTPUT/log.txt (rank 0)."""
    tqdm.write(message)
    with open_output(output_dir / "log.txt", "a") as file:
        file.write(message + "\n")


# What a resumed run may change: where the data lives and how the run is watched, never the recipe.
RESUMABLE_CHANGES = ("data", "workers", "knn_every", "knn_k", "knn_temperature", "checkpoint_every", "max_steps",
                     "log_every", "diagnostics_every", "diagnostics_samples", "diagnostics_seed")


def _load_checkpoint(path, run, method, optimizer, world, total_steps):
    """Restore model, optimizer, this rank's state and RNG; return (step, partial-epoch monitors).
    The checkpoint is read weights-only: a file planted in the output folder cannot run code."""
    try:
        state = load_file(path)
    except CheckpointError as error:  # our own checkpoints hold nothing to trust: no --trust-checkpoint here
        raise CheckpointError(str(error).replace(f"if you trust this file, pass {TRUST_FLAG}", "this toolkit did "
                                                 "not write it; choose another --output-dir")) from None
    keys = ("ssl_transfer", "model", "optimizer", "step", "ranks", "partial_epoch")
    if not isinstance(state, dict) or any(k not in state for k in keys):
        raise CheckpointError(f"{path} is not a pretraining checkpoint of this toolkit (it lacks "
                              f"{[k for k in keys if k not in state] if isinstance(state, dict) else keys}); "
                              "choose another --output-dir")
    recorded = state["ssl_transfer"].get("config") if isinstance(state["ssl_transfer"], dict) else None
    if not isinstance(recorded, dict) or recorded.get("method") != run.method:
        found = recorded.get("method") if isinstance(recorded, dict) else "an unknown"
        raise CheckpointError(f"{path} is {found} checkpoint; this run is {run.method}: choose another --output-dir")
    current = run.to_dict()
    was = {part: recorded.get(part) if isinstance(recorded.get(part), dict) else {} for part in ("model", "train")}
    changed = [f"model.{k}" for k in current["model"] if was["model"].get(k) != current["model"][k]]
    changed += [f"train.{k}" for k in current["train"]
                if k not in RESUMABLE_CHANGES and was["train"].get(k) != current["train"][k]]
    if changed:
        raise CheckpointError(f"{path} was written with other {', '.join(changed)}; resume with the config that wrote "
                              "it (its config.yaml), or choose another --output-dir")
    step, partial = state["step"], state["partial_epoch"]
    if isinstance(step, bool) or not isinstance(step, int) or not 0 <= step <= total_steps:
        raise CheckpointError(f"{path} records step {step!r}; a run of {total_steps} steps has steps 0 to "
                              f"{total_steps}: choose another --output-dir")
    if not (isinstance(partial, (list, tuple)) and len(partial) == 2 and all(
            isinstance(part, list) and all(isinstance(v, (int, float)) for v in part) for part in partial)):
        raise CheckpointError(f"{path}: its partial_epoch is not two lists of numbers; choose another --output-dir")
    ranks = state["ranks"]
    if not isinstance(ranks, (list, tuple)) or not all(
            isinstance(r, dict) and {"method", "rng"} <= set(r) and isinstance(r["rng"], dict) and
            {"torch", "numpy", "python", "cuda"} <= set(r["rng"]) for r in ranks):
        raise CheckpointError(f"{path}: its per-process state (ranks) lacks the method's or the RNG's state; this "
                              "toolkit did not write it: choose another --output-dir")
    if len(ranks) != world:
        raise CheckpointError(f"{path} was written by {len(ranks)} processes; this run has {world}: resume with the "
                              "same number of processes, or start a new --output-dir")
    try:
        method.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
    except (RuntimeError, ValueError, KeyError) as error:
        detail = next((line.strip() for line in str(error).splitlines() if line.strip()), "")[:200]
        raise CheckpointError(f"{path} does not fit this run's model or optimizer ({detail}); resume with the "
                              "config that wrote it, or choose another --output-dir") from None
    mine = ranks[distributed.rank()]
    try:
        method.load_rank_state(mine["method"])
        _set_rng_state(mine["rng"])
    except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as error:
        raise CheckpointError(f"{path}: the state of process {distributed.rank()} is damaged ({type(error).__name__}: "
                              f"{str(error)[:100]}); choose another --output-dir") from None
    return state["step"], state["partial_epoch"]


def _has_checkpoint(output_dir):
    """Whether output_dir holds a checkpoint.pth, a broken link included (refused when read, never skipped)."""
    path = Path(output_dir) / "checkpoint.pth"
    return path.exists() or path.is_symlink()


def _remove_new(output_dir, before):
    """Remove what this run created in output_dir (config.yaml, log.txt, metrics.jsonl, tensorboard/), the lock
    file aside."""
    for path in output_dir.iterdir():
        if path.name not in before and path.name != LOCK_NAME:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()


def train(run, output_dir, resume=False, progress=True):
    """Pretrain `run` (a RunConfig) into `output_dir`, which it locks; return the last epoch's metrics."""
    dataset_path("imagenet", run.train.data)  # a wrong data root fails before the output folder is touched
    device, local_rank = setup_distributed()
    lock, refusal, before = None, None, set()
    if distributed.rank() == 0:  # the output folder is rank 0's: the other ranks learn whether it got it
        try:
            lock = OutputLock(output_dir).acquire()
            before = {p.name for p in Path(output_dir).iterdir()}
            if _has_checkpoint(output_dir) and not resume:
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
            _say(Path(output_dir), lock.note())
        with rng_scope():  # the run seeds the global generators; the caller gets its own state back
            return _train(run, Path(output_dir), resume, progress, device, local_rank)
    except DatasetError:  # bad data (an image that does not decode) before any checkpoint: no partial output
        if lock and not _has_checkpoint(output_dir):
            _remove_new(Path(output_dir), before)
        raise
    finally:
        if lock:
            lock.release()


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
    autocast, channels_last, precision_note = precision_setup(device, cfg.precision)
    notes = [precision_note, f"data_pipeline {cfg.data_pipeline}: " + (
        f"JPEGs decoded and views augmented in batches on the {device.type.upper()}" if cfg.data_pipeline == "tensor"
        else f"PIL decoding and augmentation in {cfg.workers or 'the main'} worker process(es)")]
    notes.append(f"lr: train.base_lr {cfg.base_lr:g} x {lr_scale(cfg):g} ({cfg.lr_rule} rule at batch "
                 f"{cfg.batch_size}) = {learning_rate(cfg):g}, then cosine per {cfg.lr_schedule_unit} to "
                 f"{cfg.final_lr * lr_scale(cfg):g}" + (f" after {cfg.warmup_epochs:g} warm-up epochs"
                                                          if cfg.warmup_epochs else ""))
    notes += method.prepare(cfg, steps_per_epoch)
    notes += run.warnings
    if cfg.sync_bn and world == 1:
        notes.append("train.sync_bn: plain BN on one process")
    total_steps = cfg.epochs * steps_per_epoch
    method = method.to(device, memory_format=torch.channels_last if channels_last else torch.preserve_format)
    if cfg.sync_bn and world > 1:
        method = torch.nn.SyncBatchNorm.convert_sync_batchnorm(method, process_group=sync_bn_group(cfg, world))
    optimizer = build_optimizer(method, cfg)
    step, partial_epoch = 0, ([], [])
    if resume and _has_checkpoint(output_dir):
        step, partial_epoch = _load_checkpoint(checkpoint_path, run, method, optimizer, world, total_steps)
        notes.append(f"resumed from {checkpoint_path} at step {step}")
    elif resume:
        notes.append(f"--resume: no {checkpoint_path} yet, starting from step 0")
    metrics_path, spectra_path, refusal = output_dir / "metrics.jsonl", output_dir / "spectra.jsonl", None
    kept = {}  # path -> its lines up to the checkpoint's step: what came after (or was cut by a kill) is dropped
    if is_main:  # links planted where the run writes are refused before it writes anything
        try:
            check_output_folder(output_dir / "tensorboard")
            for name in ("log.txt", "config.yaml", "encoder.safetensors"):  # written through, or replaced at the end
                check_replaceable(output_dir / name)
            for path in (metrics_path, spectra_path):
                if path.exists() or path.is_symlink():
                    kept[path] = [line for line in _metrics_lines(path) if _logged_by_step(line, step)]
        except ToolkitError as error:
            refusal = error
    if not distributed.all_ranks_agree(refusal is None):
        raise refusal or OutputError(f"rank 0 could not use the output folder {output_dir}; see its error")
    if is_main:  # written once the checkpoint (if any) is known to fit
        write_bytes_atomic(output_dir / "config.yaml", yaml.safe_dump(run.to_dict(), sort_keys=False).encode())
        for note in notes:
            _say(output_dir, note)
    model = method
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(
            method, device_ids=[local_rank] if device.type == "cuda" else None)
    writer = None
    if is_main:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(check_output_folder(output_dir / "tensorboard")), purge_step=step)
    for path, lines in kept.items():
        write_bytes_atomic(path, "".join(line + "\n" for line in lines).encode())
    metrics_file = open_output(metrics_path, "a") if is_main else None  # noqa: SIM115 (closed in the finally below)

    def log(record):
        if is_main:
            metrics_file.write(json.dumps(record) + "\n")
            metrics_file.flush()
            for key, value in record.items():
                if key not in ("step", "epoch") and isinstance(value, (int, float)):
                    writer.add_scalar(key, value, record.get("step", step))

    probe = None
    if is_main and cfg.diagnostics_every:  # the same images at every epoch and after a resume
        probe = ProbeSet(cfg.data, cfg.diagnostics_samples, cfg.diagnostics_seed, cfg.image_size,
                         method.view_recipes)

    def diagnose(epoch_number):
        """The label-free monitors into `last` (scalars) and spectra.jsonl (the two spectra), on rank 0."""
        record = label_free_monitor(method, probe, device, autocast, workers=min(cfg.workers, 4))
        if epoch_number == cfg.diagnostics_every:  # its cost, once
            _say(output_dir, f"label-free monitors: {record['seconds']:.1f} s on {record['samples']} probe images "
                             f"(train.diagnostics_samples {cfg.diagnostics_samples}, seed {cfg.diagnostics_seed})")
        with open_output(spectra_path, "a") as file:
            file.write(json.dumps({"epoch": epoch_number, "step": step, "backbone": record["backbone_spectrum"],
                                   "projector": record["projector_spectrum"]}) + "\n")
        return record

    losses, stds = [], []

    def save_checkpoint(epoch_done):
        # Every rank's own state (RNG, SwAV's queue) goes into the one checkpoint that rank 0 writes.
        ranks = distributed.gather_to_main({"rng": _rng_state(), "method": method.rank_state()})
        if is_main:
            _save(checkpoint_path, {"ssl_transfer": _metadata(run, step, epoch_done), "model": method.state_dict(),
                                    "optimizer": optimizer.state_dict(), "step": step, "ranks": ranks,
                                    "partial_epoch": (losses, stds) if step % steps_per_epoch else ([], [])})

    try:
        last = {}
        for epoch in range(step // steps_per_epoch, cfg.epochs):
            sampler.epoch = dataset.epoch = epoch
            sampler.skip_batches = step - epoch * steps_per_epoch
            loader = torch.utils.data.DataLoader(dataset, batch_size=cfg.batch_size // world, sampler=sampler,
                                                 num_workers=cfg.workers, drop_last=True, collate_fn=collate,
                                                 pin_memory=device.type == "cuda",
                                                 generator=torch.Generator().manual_seed(cfg.seed + epoch))
            model.train()
            losses, stds = partial_epoch  # the monitors of an epoch interrupted part way
            partial_epoch = ([], [])
            bar = tqdm(loader, desc=f"{run.method} epoch {epoch + 1}/{cfg.epochs}", disable=not (is_main and progress),
                       leave=False)
            for views, _ in bar:
                views = to_device_views(views, device)
                if channels_last:
                    views = [v.contiguous(memory_format=torch.channels_last) for v in views]
                lr = lr_at(cfg, step, steps_per_epoch)
                for group in optimizer.param_groups:
                    group["lr"] = group["initial_lr"] if group.get("fixed_lr") else lr
                with autocast:
                    out = model(views)
                loss = distributed.mean_over_ranks(out["loss"].item())  # non-finite on every rank if on any
                if not math.isfinite(loss):
                    raise TrainingDiverged(f"{run.method}: loss is {loss} at step {step} (epoch {epoch + 1}); "
                                           f"the last good checkpoint is {checkpoint_path}; lower train.base_lr")
                optimizer.zero_grad(set_to_none=True)
                out["loss"].backward()
                method.before_optimizer_step(step)
                optimizer.step()
                method.on_step_end(step, total_steps)
                step += 1
                losses.append(loss)
                stds.append(output_std(out["embedding"]))
                bar.set_postfix(loss=f"{losses[-1]:.4f}", lr=f"{lr:.3g}")
                if step % cfg.log_every == 0:
                    log({"step": step, "epoch": epoch + 1, "loss": losses[-1], "lr": lr, "output_std": stds[-1]})
                if cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and step % steps_per_epoch:
                    save_checkpoint(epoch)  # at an epoch's end: below, once the epoch's summary line is logged
                if cfg.max_steps and step >= cfg.max_steps:
                    break
            dim = out["embedding"].shape[1]
            epoch_done = step % steps_per_epoch == 0
            if not epoch_done:  # stopped by max_steps inside the epoch
                save_checkpoint(epoch)
                return last
            last = {"epoch": epoch + 1, "step": step, "loss": sum(losses) / len(losses),
                    "output_std": sum(stds) / len(stds), "output_std_reference": 1 / math.sqrt(dim), "knn_top1": None}
            if cfg.knn_every and (epoch + 1) % cfg.knn_every == 0 and is_main:
                last["knn_top1"] = knn_monitor(method.encoder, cfg.data, cfg.image_size, cfg.knn_k, cfg.knn_temperature,
                                               device)
            if probe is not None and (epoch + 1) % cfg.diagnostics_every == 0:
                record = diagnose(epoch + 1)
                last.update(scalars(record))
                dimensional = dimensional_collapse_warning(record["projector_rankme"], record["samples"], dim,
                                                           last["output_std"])
                if dimensional:
                    _say(output_dir, f"warning: epoch {epoch + 1}: projector output: {dimensional}")
            warning = method.collapse_warning(last["loss"], last["output_std"], dim)
            last["collapse_warning"] = warning
            if warning and is_main:
                _say(output_dir, f"warning: epoch {epoch + 1}: {warning}")
            log({k: v for k, v in last.items() if k != "collapse_warning"})
            save_checkpoint(epoch + 1)
            if cfg.max_steps and step >= cfg.max_steps:
                return last
        if is_main:
            export_encoder(output_dir / "encoder.safetensors", method.encoder, _metadata(run, step, cfg.epochs))
        return last
    finally:
        if is_main:
            writer.close()
            metrics_file.close()
