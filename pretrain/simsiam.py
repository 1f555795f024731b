"""SimSiam (Chen & He 2021): symmetric negative cosine D(p1, stopgrad(z2))/2 + D(p2, stopgrad(z1))/2, with the
paper's ablations as config keys (sec. 4 and 5)."""
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from pretrain.augment import MOCO_V2
from pretrain.backbone import Arch, build_backbone
from pretrain.heads import SIMSIAM_BN, ema_update, frozen_copy, mlp
from pretrain.losses import negative_cosine, softmax_cross_entropy
from pretrain.method import Method
from sslt_core.config import PositiveInt, Probability


@dataclass
class SimSiamConfig:
    arch: Arch = "resnet50"
    proj_dim: PositiveInt = 2048  # 3-layer projector, 2048 wide (sec. 3)
    pred_hidden: PositiveInt = 512  # bottleneck predictor 2048-512-2048
    stop_gradient: bool = True  # False: collapses (Fig. 2)
    # mlp (lr decayed, 67.7) | mlp_fixed_lr (68.1) | none (0.1) | fixed_random (1.5)
    predictor: Literal["mlp", "mlp_fixed_lr", "none", "fixed_random"] = "mlp_fixed_lr"
    bn: Literal["none", "hidden", "default", "all"] = "default"  # Table 4: BN on the heads
    similarity: Literal["cosine", "cross_entropy"] = "cosine"  # cosine (68.1) | cross_entropy (63.2), sec. 4.4
    loss: Literal["symmetric", "asymmetric", "asymmetric_2x"] = "symmetric"  # 68.1 | 64.8 | 67.3, sec. 4.6
    # online | k_steps (targets from a network refreshed every k steps) | moving_average (sec. 5)
    target: Literal["online", "k_steps", "moving_average"] = "online"
    target_k: PositiveInt = 1  # k for target=k_steps (sec. 5: 1, 10, 100 steps or an epoch)
    target_momentum: Probability = 0.99  # for target=moving_average


class SimSiam(Method):
    def __init__(self, cfg: SimSiamConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder, dim = build_backbone(cfg.arch, zero_init_residual=True)
        proj_hidden, proj_last, pred_hidden, pred_last = SIMSIAM_BN[cfg.bn]
        self.projector = mlp([dim, cfg.proj_dim, cfg.proj_dim, cfg.proj_dim], bn_hidden=proj_hidden,
                             bn_last=proj_last, last_affine="none")
        if cfg.predictor == "none":
            self.predictor = nn.Identity()
        else:
            self.predictor = mlp([cfg.proj_dim, cfg.pred_hidden, cfg.proj_dim], bn_hidden=pred_hidden,
                                 bn_last=pred_last)
            if cfg.predictor == "fixed_random":
                self.predictor.requires_grad_(False)
        self.target = frozen_copy(nn.Sequential(self.encoder, self.projector)) if cfg.target != "online" else None
        self.view_recipes = (MOCO_V2,) * (4 if cfg.loss == "asymmetric_2x" else 2)
        self.distance = negative_cosine if cfg.similarity == "cosine" else softmax_cross_entropy

    def param_groups(self):
        predictor = [p for p in self.predictor.parameters() if p.requires_grad]
        ids = {id(p) for p in predictor}
        rest = [p for p in self.parameters() if p.requires_grad and id(p) not in ids]
        groups = [{"params": rest}]
        if predictor:
            groups.append({"params": predictor, "fixed_lr": self.cfg.predictor == "mlp_fixed_lr"})
        return groups

    def forward(self, views):
        z = [self.projector(self.encoder(x)) for x in views]  # [B, proj_dim] each
        p = [self.predictor(zi) for zi in z]
        if self.target is None:
            targets = z
        else:
            with torch.no_grad():
                targets = [self.target(x) for x in views]
        stop = self.cfg.stop_gradient or self.target is not None

        def distance(a, b):
            return self.distance(p[a], targets[b], stop_gradient=stop)

        if self.cfg.loss == "symmetric":
            loss = distance(0, 1) / 2 + distance(1, 0) / 2
        elif self.cfg.loss == "asymmetric":
            loss = distance(0, 1)
        else:  # two asymmetric pairs per image, for the compute of the symmetric loss
            loss = distance(0, 1) / 2 + distance(2, 3) / 2
        return {"loss": loss, "embedding": z[0]}

    def on_step_end(self, step, total_steps):
        online = nn.Sequential(self.encoder, self.projector)
        if self.cfg.target == "k_steps" and (step + 1) % self.cfg.target_k == 0:
            self.target.load_state_dict(online.state_dict())
        elif self.cfg.target == "moving_average":
            ema_update(self.target, online, self.cfg.target_momentum)
