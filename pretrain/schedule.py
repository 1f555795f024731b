"""The pretraining recipe's optimizer and learning-rate schedule: the lr rule at a batch size, warm-up then
cosine, per step or per epoch."""
import math

import torch

from sslt_core.optim import LARC, LARS


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


def lr_note(cfg):
    """What the log says of the schedule."""
    return (f"lr: train.base_lr {cfg.base_lr:g} x {lr_scale(cfg):g} ({cfg.lr_rule} rule at batch "
            f"{cfg.batch_size}) = {learning_rate(cfg):g}, then cosine per {cfg.lr_schedule_unit} to "
            f"{cfg.final_lr * lr_scale(cfg):g}" + (f" after {cfg.warmup_epochs:g} warm-up epochs"
                                                     if cfg.warmup_epochs else ""))


OPTIMIZERS = {"sgd": torch.optim.SGD, "lars": LARS, "larc": LARC}


def build_optimizer(method, train_cfg):
    groups = method.param_groups()
    peak = learning_rate(train_cfg)
    for group in groups:
        group["lr"] = group["initial_lr"] = peak
    extra = {"lr_in_momentum": train_cfg.lr_in_momentum} if train_cfg.optimizer != "sgd" else {}
    return OPTIMIZERS[train_cfg.optimizer](groups, lr=peak, weight_decay=train_cfg.weight_decay,
                                           momentum=train_cfg.momentum, **extra)
