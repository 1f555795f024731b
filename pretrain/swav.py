"""SwAV (Caron et al. 2020): swapped prediction of Sinkhorn-Knopp codes over prototypes, with multi-crop, a
feature queue from a configured epoch, prototypes re-normalised every step and frozen for the first steps.

The queue is each process's own, as in the official main_swav.py: every rank keeps queue_length // world_size
of its own embeddings, and Sinkhorn's sums run over the queues and batches of all ranks. It is therefore not a
registered buffer (DDP would overwrite every rank's copy with rank 0's at each forward) and is saved per rank
(rank_state).
"""
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from pretrain.augment import SWAV_LARGE, SWAV_SMALL
from pretrain.backbone import Arch, build_backbone
from pretrain.distributed import world_size
from pretrain.heads import mlp
from pretrain.losses import collapse_level, sinkhorn, swapped_prediction
from pretrain.method import Method
from sslt_core.config import NonNegativeInt, PositiveFloat, PositiveInt
from sslt_core.errors import ConfigError


@dataclass
class SwAVConfig:
    arch: Arch = "resnet50"
    proj_hidden: PositiveInt = 2048  # 2048-BN-ReLU-128, l2-normalised
    proj_dim: PositiveInt = 128
    prototypes: PositiveInt = 3000
    temperature: PositiveFloat = 0.1
    epsilon: PositiveFloat = 0.05
    sinkhorn_iterations: PositiveInt = 3
    small_crops: NonNegativeInt = 6  # 2 x 224 + 6 x 96
    # Global, rounded down to a multiple of the global batch as main_swav does; 0: none. The batch-256 scripts use
    # 3840 from epoch 15; the batch-4096 script none.
    queue_length: NonNegativeInt = 0
    queue_start_epoch: NonNegativeInt = 15  # the queue fills and is used from this epoch on
    freeze_prototypes_steps: NonNegativeInt = 313  # prototypes frozen for the first steps (an epoch at batch 4096)


class SwAV(Method):
    def __init__(self, cfg: SwAVConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder, dim = build_backbone(cfg.arch)
        # main_swav's head: Linear (with bias) - BN - ReLU - Linear
        self.projector = mlp([dim, cfg.proj_hidden, cfg.proj_dim], bias_before_bn=True)
        self.prototypes = nn.Linear(cfg.proj_dim, cfg.prototypes, bias=False)
        self.register_buffer("step", torch.zeros((), dtype=torch.long))
        self.queue = None  # [2, this rank's queue length, proj_dim], created when the queue starts
        self.queue_per_rank, self.queue_start_step = 0, 0
        self.view_recipes = (SWAV_LARGE, SWAV_LARGE) + (SWAV_SMALL,) * cfg.small_crops

    def prepare(self, train_cfg, steps_per_epoch):
        global_batch = train_cfg.batch_size
        self.queue_start_step = self.cfg.queue_start_epoch * steps_per_epoch
        # main_swav.py: queue_length -= queue_length % (batch_size * world_size); each rank keeps 1/world of it.
        length = self.cfg.queue_length - self.cfg.queue_length % global_batch
        self.queue_per_rank = length // world_size()
        if not self.cfg.queue_length:
            return []
        if length != self.cfg.queue_length:
            note = (f"swav: model.queue_length {self.cfg.queue_length} rounded down to a multiple of the global batch "
                    f"{global_batch}: {length}" + (" (no queue)" if not length else ""))
        else:
            note = f"swav: queue of {length} embeddings per crop"
        if length:
            note += (f", {self.queue_per_rank} on each of {world_size()} processes, from epoch "
                     f"{self.cfg.queue_start_epoch + 1} (step {self.queue_start_step})")
        return [note]

    def forward(self, views):
        with torch.no_grad():  # prototypes on the unit sphere, every step
            self.prototypes.weight.copy_(F.normalize(self.prototypes.weight, dim=1))
        z = []  # crops of one resolution go through the network together
        for size in dict.fromkeys(v.shape[-1] for v in views):
            batch = torch.cat([v for v in views if v.shape[-1] == size])
            z.extend(F.normalize(self.projector(self.encoder(batch)), dim=1).chunk(
                sum(v.shape[-1] == size for v in views)))
        scores = [self.prototypes(zi) for zi in z]
        if self.queue is None and self.queue_per_rank and int(self.step) >= self.queue_start_step:
            self.queue = torch.zeros(2, self.queue_per_rank, z[0].shape[1], device=z[0].device,
                                     dtype=self.prototypes.weight.dtype)  # fp32 under autocast, as main_swav's
        codes = []
        for i in range(2):
            with torch.no_grad():
                out = scores[i].detach()
                if self.queue is not None and bool(self.queue[i, -1].any()):  # used once full, as in main_swav
                    out = torch.cat([self.queue[i] @ self.prototypes.weight.T, out])
                codes.append(sinkhorn(out, self.cfg.epsilon, self.cfg.sinkhorn_iterations)[-len(scores[i]):])
                if self.queue is not None:
                    self.queue[i] = torch.cat([z[i].detach().to(self.queue.dtype), self.queue[i][:-len(z[i])]])
        return {"loss": swapped_prediction(scores, codes, self.cfg.temperature), "embedding": z[0]}

    def before_optimizer_step(self, step):
        if step < self.cfg.freeze_prototypes_steps:
            self.prototypes.weight.grad = None

    def on_step_end(self, step, total_steps):
        self.step.fill_(step + 1)

    def rank_state(self):
        return {"queue": None if self.queue is None else self.queue.cpu()}

    def load_rank_state(self, state):
        queue = state.get("queue")
        if queue is not None and queue.shape[1] != self.queue_per_rank:
            raise ConfigError(f"swav: the checkpoint's queue holds {queue.shape[1]} embeddings per process, this run "
                              f"{self.queue_per_rank} (model.queue_length or the batch changed); resume with the "
                              "settings that wrote it")
        self.queue = None if queue is None else queue.to(self.step.device)

    def collapse_warning(self, epoch_loss, output_std, dim):
        if abs(epoch_loss - collapse_level(self.cfg.prototypes)) < 0.01:
            return f"loss {epoch_loss:.4f} sits at ln K = {collapse_level(self.cfg.prototypes):.4f}: collapse"
        return super().collapse_warning(epoch_loss, output_std, dim)
