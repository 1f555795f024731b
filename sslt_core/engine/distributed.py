"""The process group (setup_distributed) and the few collective operations the losses and the training loop need,
correct on one process as on many.

Gradients must flow through a gather of embeddings (SimCLR's negatives): every rank's loss sends gradients to
every rank's slice, and a rank's own slice must receive their sum. A plain all_gather cuts them, and a plain
all_reduce scales them by 1/world_size (traps seen in the reference libraries' issue trackers).
"""
import os

import torch
import torch.distributed as dist


def setup_distributed():
    """(device, local rank): torchrun's environment if present, else one process."""
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)  # before the process group: NCCL's barriers use the current device
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device, local_rank


def world_size():
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank():
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


class _GatherWithGrad(torch.autograd.Function):
    """all_gather forward; backward: the sum over ranks of the gradient of the gathered tensor, this rank's rows
    (the GatherLayer of SimCLR's and solo-learn's PyTorch ports, on the public collectives only)."""

    @staticmethod
    def forward(ctx, tensor):
        parts = [torch.empty_like(tensor) for _ in range(world_size())]
        dist.all_gather(parts, tensor.contiguous())
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad):
        grad = grad.contiguous()
        dist.all_reduce(grad)
        rows = grad.shape[0] // world_size()
        return grad[rank() * rows:(rank() + 1) * rows]


def gather_with_grad(tensor):
    """Concatenation of `tensor` (the same shape on every rank) from every rank along dim 0, differentiable."""
    if world_size() == 1:
        return tensor
    return _GatherWithGrad.apply(tensor)


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
    """A float averaged over ranks; NaN or inf on any rank makes it non-finite on every rank."""
    if world_size() == 1:
        return float(value)
    tensor = torch.tensor([float(value)], dtype=torch.float64,
                          device="cuda" if dist.get_backend() == "nccl" else "cpu")
    dist.all_reduce(tensor)
    return float(tensor) / world_size()


def all_ranks_agree(flag):
    """True on every rank when `flag` is true on every rank (an all-reduce of the minimum)."""
    if world_size() == 1:
        return bool(flag)
    tensor = torch.tensor([int(bool(flag))], device="cuda" if dist.get_backend() == "nccl" else "cpu")
    dist.all_reduce(tensor, op=dist.ReduceOp.MIN)
    return bool(tensor.item())


def gather_to_main(obj):
    """[obj of rank 0, obj of rank 1, ...] on rank 0 (None elsewhere): per-rank state for a checkpoint."""
    if world_size() == 1:
        return [obj]
    gathered = [None] * world_size() if rank() == 0 else None
    dist.gather_object(obj, gathered, dst=0)
    return gathered
