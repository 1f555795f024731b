"""A global batch split over 2 processes (gloo, CPU) gives the loss and the gradients of 1 process on the whole
batch, for every method: SimCLR's negatives are gathered with gradients, MoCo's keys are gathered and shuffled
across ranks, SwAV's Sinkhorn sums are reduced across ranks, DDP averages the gradients.

BN setting: every BatchNorm is in eval mode (running statistics), so each sample's forward pass is independent
of how the batch is split and the comparison is exact. (With batch statistics, 2 x B/2 and 1 x B differ unless BN
is synchronised, and torch's SyncBatchNorm needs GPUs.)
"""
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from pretrain.config import load_config
from pretrain.train import METHODS, build_method
from tests.pretrain.test_methods import TINY_HEADS

GLOBAL_BATCH, WORLD = 8, 2


def build(method):
    run = load_config(None, [f"method={method}", "model.arch=resnet18", *TINY_HEADS[method],
                             "model.queue_length=0"] if method == "swav" else
                      [f"method={method}", "model.arch=resnet18", *TINY_HEADS[method]])
    torch.manual_seed(0)
    model = build_method(run)
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.eval()
    return model


def global_views(model):
    generator = torch.Generator().manual_seed(1)
    sizes = [32 if recipe.size_fraction == 1.0 else 16 for recipe in model.view_recipes]
    return [torch.randn(GLOBAL_BATCH, 3, s, s, generator=generator) for s in sizes]


def loss_and_grads(model, views):
    out = model(views)
    out["loss"].backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return out["loss"].detach(), grads


def worker(rank, method, init_file, result_file):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    torch.set_num_threads(1)
    model = build(method)
    share = GLOBAL_BATCH // WORLD
    views = [v[rank * share:(rank + 1) * share] for v in global_views(model)]
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    out = ddp(views)
    out["loss"].backward()  # DDP averages the gradients over ranks
    loss = out["loss"].detach().clone()
    dist.all_reduce(loss)
    if rank == 0:
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        torch.save({"loss": loss / WORLD, "grads": grads}, result_file)
    dist.barrier()
    dist.destroy_process_group()


@pytest.mark.parametrize("method", sorted(METHODS))
def test_two_processes_equal_one_process_on_the_global_batch(method, tmp_path):
    model = build(method)
    loss, grads = loss_and_grads(model, global_views(model))
    mp.spawn(worker, args=(method, str(tmp_path / "init"), str(tmp_path / "ddp.pt")), nprocs=WORLD, join=True)
    split = torch.load(tmp_path / "ddp.pt", weights_only=True)
    torch.testing.assert_close(split["loss"], loss, rtol=1e-5, atol=1e-6)
    assert split["grads"].keys() == grads.keys() and len(grads) > 10
    for name, grad in grads.items():
        torch.testing.assert_close(split["grads"][name], grad, rtol=1e-4, atol=1e-6, msg=name)
