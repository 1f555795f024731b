"""MLP projection and prediction heads, with the BN placements of SimSiam's ablation (Table 4 of Chen & He 2021).

`mlp(dims, bn_hidden, bn_last, last_affine)`: Linear layers between consecutive `dims`, each hidden layer
followed by (BN) + ReLU, the last one by BN only if `bn_last`.
"""
import copy

import torch
from torch import nn


def mlp(dims, bn_hidden=True, bn_last=False, last_affine=True, bias_before_bn=False):
    layers = []
    for i, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:])):
        last = i == len(dims) - 2
        use_bn = bn_last if last else bn_hidden
        layers.append(nn.Linear(d_in, d_out, bias=(not use_bn) or bias_before_bn))
        if use_bn:
            layers.append(nn.BatchNorm1d(d_out, affine=last_affine if last else True))
        if not last:
            layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


# SimSiam's "BN on MLP heads" ablation: (projector hidden, projector output, predictor hidden, predictor output)
SIMSIAM_BN = {
    "none": (False, False, False, False),  # 34.6
    "hidden": (True, False, True, False),  # 67.4
    "default": (True, True, True, False),  # 68.1: projector BN everywhere (output BN without affine)
    "all": (True, True, True, True),  # unstable
}


def frozen_copy(module):
    """A copy that takes no gradient: the target of a momentum / EMA / k-step-old network."""
    target = copy.deepcopy(module)
    for p in target.parameters():
        p.requires_grad_(False)
    return target


@torch.no_grad()
def ema_update(target, online, tau):
    """xi <- tau * xi + (1 - tau) * theta (BYOL eq. 1; the weight is on the old parameters). Parameters only:
    the target's BN statistics come from its own forward passes, as in MoCo's key encoder."""
    for t, o in zip(target.parameters(), online.parameters()):
        t.mul_(tau).add_(o.detach(), alpha=1 - tau)
