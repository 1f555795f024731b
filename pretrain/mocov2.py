"""MoCo v2 (He et al. 2020; Chen et al. 2020b): InfoNCE of a query against its key from a momentum encoder and
a queue of earlier keys; the keys of every rank enter the queue, which is the same on every rank.

Shuffling BN (MoCo sec. 3.3): on several processes the key batch is shuffled across them, as in the official
main_moco.py; on one process every BN is split into `bn_splits` sub-batches and the key batch is shuffled
within it, as in the official single-GPU notebook (pretrain/shuffle_bn.py).
"""
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from pretrain.augment import MOCO_V2
from pretrain.backbone import Arch, build_backbone
from pretrain.distributed import gather_no_grad, rank, world_size
from pretrain.heads import ema_update, frozen_copy, mlp
from pretrain.losses import info_nce
from pretrain.method import Method
from pretrain.shuffle_bn import key_order, split_batch_norms
from sslt_core.config import PositiveFloat, PositiveInt, Probability
from sslt_core.errors import ConfigError


@dataclass
class MoCoV2Config:
    arch: Arch = "resnet50"
    proj_hidden: PositiveInt = 2048  # 2048-ReLU-128, no BN
    proj_dim: PositiveInt = 128
    queue_size: PositiveInt = 65536
    momentum: Probability = 0.999
    temperature: PositiveFloat = 0.2
    bn_splits: PositiveInt = 8  # one process: BN over 8 sub-batches, keys shuffled (the official notebook); 1: off


class MoCoV2(Method):
    negative_pairs, momentum_encoder = True, True

    def __init__(self, cfg: MoCoV2Config):
        super().__init__()
        self.cfg = cfg
        self.encoder, dim = build_backbone(cfg.arch)
        self.projector = mlp([dim, cfg.proj_hidden, cfg.proj_dim], bn_hidden=False)
        self.split_bn = world_size() == 1 and cfg.bn_splits > 1
        if self.split_bn:
            split_batch_norms(self.encoder, cfg.bn_splits)
        self.key_encoder = frozen_copy(nn.Sequential(self.encoder, self.projector))
        self.register_buffer("queue", F.normalize(torch.randn(cfg.queue_size, cfg.proj_dim), dim=1))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))
        self.view_recipes = (MOCO_V2, MOCO_V2)

    def prepare(self, train_cfg, steps_per_epoch):
        global_batch = train_cfg.batch_size
        if train_cfg.sync_bn and world_size() > 1:
            raise ConfigError("mocov2 shuffles BN across processes; train.sync_bn would give keys and queries the "
                              "statistics of the same global batch (the leak shuffle BN prevents): set it to false")
        if self.cfg.queue_size % global_batch:
            raise ConfigError(f"mocov2: model.queue_size {self.cfg.queue_size} must be a multiple of the global batch "
                             f"{global_batch}")
        if world_size() > 1:
            return [f"mocov2: shuffle BN across {world_size()} processes (model.bn_splits is for one process)"]
        if self.split_bn:
            key_order(global_batch, self.cfg.bn_splits)  # checks the split now rather than at the first step
            per_split = global_batch // self.cfg.bn_splits
            note = (f"mocov2: shuffle BN on one process: BN over {self.cfg.bn_splits} sub-batches of {per_split}, "
                    "keys shuffled")
            if per_split < 16:
                note += (f"; warning: BN statistics of {per_split} images are noisy (the official notebook uses 64), "
                         "lower model.bn_splits")
            return [note]
        return ["mocov2: warning: no shuffle BN (one process, model.bn_splits=1): queries and keys share BN "
                "statistics, which MoCo's authors report costs accuracy"]

    @torch.no_grad()
    def _keys(self, x):
        if world_size() == 1:
            if not self.split_bn:
                return self.key_encoder(x)
            order = key_order(len(x), self.cfg.bn_splits).to(x.device)
            return self.key_encoder(x[order])[torch.argsort(order)]
        # Across ranks (main_moco.py): keys are computed on a batch shuffled over all ranks.
        everything = gather_no_grad(x)
        order = torch.randperm(len(everything), device=x.device)
        torch.distributed.broadcast(order, src=0)
        mine = order.view(world_size(), -1)[rank()]
        keys = gather_no_grad(self.key_encoder(everything[mine]))
        return keys[torch.argsort(order)].view(world_size(), -1, keys.shape[1])[rank()]

    def forward(self, views):
        q = self.projector(self.encoder(views[0]))
        k = self._keys(views[1])
        loss = info_nce(q, k, self.queue.clone().detach(), self.cfg.temperature)
        self._enqueue(F.normalize(k, dim=1))
        return {"loss": loss, "embedding": q}

    @torch.no_grad()
    def _enqueue(self, keys):
        keys = gather_no_grad(keys)  # every rank's keys, so the queue does not depend on the number of GPUs
        ptr = int(self.queue_ptr)
        self.queue[ptr:ptr + len(keys)] = keys
        self.queue_ptr.fill_((ptr + len(keys)) % self.cfg.queue_size)

    def on_step_end(self, step, total_steps):
        # Equals MoCo's update at the start of the next forward: xi <- m xi + (1 - m) theta.
        ema_update(self.key_encoder, nn.Sequential(self.encoder, self.projector), self.cfg.momentum)
