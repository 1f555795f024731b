"""BYOL (Grill et al. 2020): the online network's normalised prediction regresses the target's projection;
target = EMA of the online network, xi <- tau xi + (1 - tau) theta, tau = 1 - (1 - tau_base)(cos(pi k/K) + 1)/2;
the loss is symmetrised over the two views. As in the official haiku code (byol/utils/networks.py MLP): in both
heads, Linear (with bias) - BN - ReLU - Linear (without bias); the last BN of every residual block starts at zero
(`scale_init=zeros`)."""
import math
from dataclasses import dataclass

import torch
from torch import nn

from pretrain.augment import BYOL_1, BYOL_2
from pretrain.backbone import Arch, build_backbone
from pretrain.heads import ema_update, frozen_copy, mlp
from pretrain.losses import byol_regression
from pretrain.method import Method
from sslt_core.config import PositiveInt, Probability


@dataclass
class BYOLConfig:
    arch: Arch = "resnet50"
    proj_hidden: PositiveInt = 4096  # 4096-BN-ReLU-256 projector and predictor
    proj_dim: PositiveInt = 256
    tau_base: Probability = 0.99  # 0.996 for 1000 epochs, 0.99 up to 300


def byol_tau(tau_base, step, total_steps):
    return 1 - (1 - tau_base) * (math.cos(math.pi * step / max(total_steps, 1)) + 1) / 2


class BYOL(Method):
    momentum_encoder = True

    def __init__(self, cfg: BYOLConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder, dim = build_backbone(cfg.arch, zero_init_residual=True)
        self.projector = mlp([dim, cfg.proj_hidden, cfg.proj_dim], bias_before_bn=True, bias_last=False)
        self.predictor = mlp([cfg.proj_dim, cfg.proj_hidden, cfg.proj_dim], bias_before_bn=True, bias_last=False)
        self.target = frozen_copy(nn.Sequential(self.encoder, self.projector))
        self.view_recipes = (BYOL_1, BYOL_2)

    def forward(self, views):
        z = [self.projector(self.encoder(x)) for x in views]
        p = [self.predictor(zi) for zi in z]
        with torch.no_grad():
            t = [self.target(x) for x in views]
        loss = byol_regression(p[0], t[1]) + byol_regression(p[1], t[0])
        return {"loss": loss, "embedding": z[0]}

    def on_step_end(self, step, total_steps):
        tau = byol_tau(self.cfg.tau_base, step, total_steps)  # k = the step just taken, from 0
        ema_update(self.target, nn.Sequential(self.encoder, self.projector), tau)
