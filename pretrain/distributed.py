"""The few collective operations the losses need, correct on one process as on many.

Gradients must flow through a gather of embeddings (SimCLR's negatives): torch.distributed.nn's all_gather
sums the gradients that every rank's loss sends to a rank's slice; a plain all_gather would cut them, and a
plain all_reduce scales them by 1/world_size (REFERENCE section 1, known traps).
"""
import torch
import torch.distributed as dist


def world_size():
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank():
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def gather_with_grad(tensor):
    """Concatenation of `tensor` from every rank along dim 0, differentiable."""
    if world_size() == 1:
        return tensor
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(tensor), dim=0)


@torch.no_grad()
def gather_no_grad(tensor):
    """Concatenation of `tensor` from every rank along dim 0 (MoCo's keys before they enter the queue)."""
    if world_size() == 1:
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(world_size())]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts, dim=0)


def all_reduce(tensor, op="sum"):
    """In-place sum or max over ranks (no gradient): SwAV's Sinkhorn sums."""
    if world_size() > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM if op == "sum" else dist.ReduceOp.MAX)
    return tensor


def mean_over_ranks(value):
    """A float averaged over ranks (for logging)."""
    if world_size() == 1:
        return float(value)
    tensor = torch.tensor([float(value)], dtype=torch.float64)
    dist.all_reduce(tensor)
    return float(tensor) / world_size()
