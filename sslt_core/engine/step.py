"""One optimisation step, the same for pretraining, the linear probe and fine-tuning: forward (under autocast),
the NaN guard across ranks, zero_grad, backward, optional gradient clipping, a hook, the optimizer step."""
import math
from contextlib import nullcontext

import torch

from sslt_core.engine import distributed
from sslt_core.errors import ToolkitError


class TrainingDiverged(ToolkitError):
    """A non-finite loss: the run stops with the last good checkpoint kept."""


def parameters_with_grad(optimizer):
    return [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]


def clip_grad_norm(optimizer, max_norm):
    """Scale all gradients together so that their global l2 norm is at most max_norm (torch's clip_grad_norm_,
    as Barlow Twins' and DINO's ViT recipes with per-parameter clipping off); returns the norm before."""
    return torch.nn.utils.clip_grad_norm_(parameters_with_grad(optimizer), max_norm)


@torch.no_grad()
def clip_grad_per_parameter(optimizer, max_norm):
    """DINO's utils.clip_gradients: each parameter's gradient scaled by max_norm / (its norm + 1e-6) where that is
    below 1; returns the norms before."""
    norms = []
    for p in parameters_with_grad(optimizer):
        norm = p.grad.norm(2)
        norms.append(norm.item())
        coefficient = max_norm / (norm + 1e-6)
        if coefficient < 1:
            p.grad.mul_(coefficient)
    return norms


def train_step(forward, optimizer, batch, *, autocast=None, clip_grad=None, before_optimizer_step=None,
               diverged=None, sync_loss=True):
    """One step on `batch`; return (outputs, loss as a float).

    forward(batch) returns the loss or a dict with "loss" (and what the hooks read, e.g. "embedding").
    The loss is averaged over ranks (sync_loss), so that a non-finite loss on any rank stops every rank before
    any update: `diverged(loss)` makes the error raised (TrainingDiverged by default). clip_grad: a max global
    gradient norm (clip_grad_norm), applied before `before_optimizer_step()` (DINO's order: clip, then cancel the
    last layer's gradients)."""
    with autocast if autocast is not None else nullcontext():
        out = forward(batch)
    if not isinstance(out, dict):
        out = {"loss": out}
    loss = distributed.mean_over_ranks(out["loss"].item()) if sync_loss else out["loss"].item()
    if not math.isfinite(loss):
        raise diverged(loss) if diverged else TrainingDiverged(f"loss is {loss}; lower the learning rate")
    optimizer.zero_grad(set_to_none=True)
    out["loss"].backward()
    if clip_grad:
        clip_grad_norm(optimizer, clip_grad)
    if before_optimizer_step is not None:
        before_optimizer_step()
    optimizer.step()
    return out, loss
