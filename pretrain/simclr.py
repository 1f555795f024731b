"""SimCLR (Chen et al. 2020): NT-Xent over the 2N views of a batch, negatives from every rank.

As in the official TF code (v1): the projector's output goes through a BN with a scale and no shift
(`center=False`), and the last BN of every residual block starts at zero (`init_zero`)."""
from dataclasses import dataclass

from pretrain.augment import SIMCLR
from pretrain.backbone import Arch, build_backbone
from pretrain.heads import mlp
from pretrain.losses import nt_xent
from pretrain.method import Method
from sslt_core.config import PositiveFloat, PositiveInt


@dataclass
class SimCLRConfig:
    arch: Arch = "resnet50"
    proj_hidden: PositiveInt = 2048  # 2048-BN-ReLU-128-BN(scale only)
    proj_dim: PositiveInt = 128
    temperature: PositiveFloat = 0.1  # 0.5 for small data (SimCLR B.9)


class SimCLR(Method):
    negative_pairs = True

    def __init__(self, cfg: SimCLRConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder, dim = build_backbone(cfg.arch, zero_init_residual=True)
        self.projector = mlp([dim, cfg.proj_hidden, cfg.proj_dim], bn_last=True, last_affine="scale")
        self.view_recipes = (SIMCLR, SIMCLR)

    def forward(self, views):
        z1, z2 = (self.projector(self.encoder(x)) for x in views)
        return {"loss": nt_xent(z1, z2, self.cfg.temperature), "embedding": z1}
