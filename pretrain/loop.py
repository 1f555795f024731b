"""The pretraining loop on the engine (sslt_core/engine): the hooks of every step and the loop itself, shared by
pretrain/train.py and benchmarks/pretrain_throughput.py (which times this very loop)."""
import torch

from pretrain.augment import collate, to_device_views
from pretrain.monitors import EpochStatistics
from pretrain.schedule import lr_at
from sslt_core.engine import ParamScheduler, StepCallbacks, TrainLoop, to_channels_last


def device_views(device, channels_last):
    """A (views, labels) batch -> the views on the device (channels_last on a GPU)."""
    def prepare(batch):
        views = to_device_views(batch[0], device)
        return to_channels_last(views) if channels_last else views

    return prepare


def pretrain_loop(method, model, optimizer, cfg, batches, steps_per_epoch, total_steps, device, channels_last,
                  autocast, start_step=0, statistics=None, hooks=(), diverged=None):
    """The loop of `method` (its DDP wrapper: `model`): the method's own step hooks, the lr schedule and the
    epoch's statistics (an EpochStatistics, carrying a resumed epoch's) first, then `hooks` (writers, monitors,
    checkpointer)."""
    statistics = statistics or EpochStatistics()
    step_hooks = [StepCallbacks(method.before_optimizer_step, lambda step: method.on_step_end(step, total_steps)),
                  ParamScheduler(optimizer, lr=lambda step: lr_at(cfg, step, steps_per_epoch)), statistics]
    extra = {"diverged": diverged} if diverged else {}
    loop = TrainLoop(model, optimizer, batches, cfg.epochs, hooks=[*step_hooks, *hooks],
                     steps_per_epoch=steps_per_epoch, start_step=start_step, max_steps=cfg.max_steps,
                     prepare=device_views(device, channels_last), model=model, autocast=autocast, **extra)
    return loop


def loader(dataset, sampler, cfg, world, device):
    """batches(epoch, skip) of the loop: the epoch's loader from the sampler's position, with its own seeded
    generator (so a resumed epoch draws what the uninterrupted one drew)."""
    def batches(epoch, skip):
        sampler.set_position(epoch, skip)
        dataset.epoch = epoch
        return torch.utils.data.DataLoader(dataset, batch_size=cfg.batch_size // world, sampler=sampler,
                                           num_workers=cfg.workers, drop_last=True, collate_fn=collate,
                                           pin_memory=device.type == "cuda",
                                           generator=torch.Generator().manual_seed(cfg.seed + epoch))

    return batches
