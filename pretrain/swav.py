"""SwAV (Caron et al. 2020): swapped prediction of Sinkhorn-Knopp codes over prototypes, with multi-crop, a
feature queue from a configured epoch, prototypes re-normalised every step and frozen for the first steps."""
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from pretrain.augment import SWAV_LARGE, SWAV_SMALL
from pretrain.backbone import build_backbone
from pretrain.heads import mlp
from pretrain.losses import collapse_level, sinkhorn, swapped_prediction
from pretrain.method import Method


@dataclass
class SwAVConfig:
    arch: str = "resnet50"
    proj_hidden: int = 2048  # 2048-BN-ReLU-128, l2-normalised
    proj_dim: int = 128
    prototypes: int = 3000
    temperature: float = 0.1
    epsilon: float = 0.05
    sinkhorn_iterations: int = 3
    small_crops: int = 6  # 2 x 224 + 6 x 96
    queue_length: int = 0  # per rank; 3840 at batch 256, none at 4096 (0: no queue)
    queue_start_epoch: int = 15  # the queue fills and is used from this epoch on
    freeze_prototypes_epochs: float = 1.0  # prototypes get no update during the first epoch


class SwAV(Method):
    def __init__(self, cfg: SwAVConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder, dim = build_backbone(cfg.arch)
        self.projector = mlp([dim, cfg.proj_hidden, cfg.proj_dim])
        self.prototypes = nn.Linear(cfg.proj_dim, cfg.prototypes, bias=False)
        self.register_buffer("queue", torch.zeros(2, cfg.queue_length, cfg.proj_dim))
        self.register_buffer("step", torch.zeros((), dtype=torch.long))
        self.queue_start_step, self.freeze_steps = 0, 0
        self.view_recipes = (SWAV_LARGE, SWAV_LARGE) + (SWAV_SMALL,) * cfg.small_crops

    def forward(self, views):
        with torch.no_grad():  # prototypes on the unit sphere, every step
            self.prototypes.weight.copy_(F.normalize(self.prototypes.weight, dim=1))
        z = []  # crops of one resolution go through the network together
        for size in dict.fromkeys(v.shape[-1] for v in views):
            batch = torch.cat([v for v in views if v.shape[-1] == size])
            z.extend(F.normalize(self.projector(self.encoder(batch)), dim=1).chunk(
                sum(v.shape[-1] == size for v in views)))
        scores = [self.prototypes(zi) for zi in z]
        queue_on = self.cfg.queue_length > 0 and int(self.step) >= self.queue_start_step
        codes = []
        for i in range(2):
            with torch.no_grad():
                out = scores[i].detach()
                if queue_on and bool(self.queue[i, -1].any()):  # used once full, as in SwAV's code
                    out = torch.cat([self.queue[i] @ self.prototypes.weight.T, out])
                codes.append(sinkhorn(out, self.cfg.epsilon, self.cfg.sinkhorn_iterations)[-len(scores[i]):])
                if queue_on:
                    self.queue[i] = torch.cat([z[i].detach(), self.queue[i][:-len(z[i])]])
        return {"loss": swapped_prediction(scores, codes, self.cfg.temperature), "embedding": z[0]}

    def set_steps_per_epoch(self, steps):
        self.queue_start_step = self.cfg.queue_start_epoch * steps
        self.freeze_steps = round(self.cfg.freeze_prototypes_epochs * steps)

    def before_optimizer_step(self, step):
        if step < self.freeze_steps:
            self.prototypes.weight.grad = None

    def on_step_end(self, step, total_steps):
        self.step.fill_(step + 1)

    def collapse_warning(self, epoch_loss, output_std, dim):
        if abs(epoch_loss - collapse_level(self.cfg.prototypes)) < 0.01:
            return f"loss {epoch_loss:.4f} sits at ln K = {collapse_level(self.cfg.prototypes):.4f}: collapse"
        return super().collapse_warning(epoch_loss, output_std, dim)
