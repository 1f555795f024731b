"""MLP projection and prediction heads, with the BN placements of SimSiam's ablation (Table 4 of Chen & He 2021).

`mlp(dims, bn_hidden, bn_last, last_affine, bias_before_bn, bias_last)`: Linear layers between consecutive `dims`,
each hidden layer followed by (BN) + ReLU, the last one by BN only if `bn_last`, whose affine part is "both"
(scale and shift), "scale" (SimCLR's projector output: `center=False` in the official TF code) or "none"
(SimSiam's projector output). A Linear followed by BN has a bias only with `bias_before_bn`; the last Linear,
when no BN follows it, only with `bias_last` (BYOL's haiku MLP: `with_bias=False` there).
"""
import copy

import torch
from torch import nn

LAST_AFFINE = ("both", "scale", "none")


def mlp(dims, bn_hidden=True, bn_last=False, last_affine="both", bias_before_bn=False, bias_last=True):
    if last_affine not in LAST_AFFINE:
        raise ValueError(f"last_affine must be one of {', '.join(LAST_AFFINE)}, got {last_affine!r}")
    layers = []
    for i, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:])):
        last = i == len(dims) - 2
        use_bn = bn_last if last else bn_hidden
        bias = bias_before_bn if use_bn else (bias_last or not last)
        layers.append(nn.Linear(d_in, d_out, bias=bias))
        if use_bn:
            affine = last_affine if last else "both"
            norm = nn.BatchNorm1d(d_out, affine=affine != "none")
            if affine == "scale":  # the shift stays 0: BN with a learnt scale only
                norm.bias.requires_grad_(False)
            layers.append(norm)
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
