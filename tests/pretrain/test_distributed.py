"""A global batch split over 2 processes (gloo, CPU) gives, step after step, the losses and gradients of 1 process on
the whole batch, for every method, with the queues in use: SimCLR's negatives are gathered with gradients, MoCo's
keys are gathered and shuffled across ranks into one queue that is the same on every rank, SwAV's Sinkhorn sums
are reduced across ranks over every rank's own queue, DDP averages the gradients.

BN setting: every BatchNorm is in eval mode (running statistics), so each sample's forward pass is independent
of how the batch is split, and everything runs in float64, so the comparison is exact to rounding (in float32,
Sinkhorn's exp(s / 0.05) amplifies the rounding differences of a split batch into gradients that differ by
1%). (With batch statistics, 2 x B/2 and 1 x B differ unless BN
is synchronised, and torch's SyncBatchNorm needs GPUs.)
"""
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from pretrain.config import TrainConfig
from pretrain.methods import METHODS, build_method
from tests.pretrain.tiny import QUEUE_IN_USE, tiny_config

GLOBAL_BATCH, WORLD, STEPS = 16, 2, 4


def build(method):
    torch.manual_seed(0)
    model = build_method(tiny_config(method, extra=QUEUE_IN_USE.get(method, ())))
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.eval()
    model.prepare(TrainConfig(batch_size=GLOBAL_BATCH), steps_per_epoch=STEPS)
    return model.double()


def global_views(model, step):
    generator = torch.Generator().manual_seed(100 + step)
    sizes = [32 if recipe.size_fraction == 1.0 else 16 for recipe in model.view_recipes]
    return [torch.randn(GLOBAL_BATCH, 3, s, s, generator=generator, dtype=torch.float64) for s in sizes]


def train_steps(model, forward, views_of_step):
    """STEPS SGD steps; per step the loss, and the gradients and queue after the last one."""
    optimizer = torch.optim.SGD(model.param_groups(), lr=0.05, momentum=0.9)
    losses = []
    for step in range(STEPS):
        out = forward(views_of_step(step))
        optimizer.zero_grad(set_to_none=True)
        out["loss"].backward()
        model.before_optimizer_step(step)
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        optimizer.step()
        model.on_step_end(step, STEPS)
        losses.append(out["loss"].detach().clone())
    return torch.stack(losses), grads


def queue_of(model):
    queue = getattr(model, "queue", None)
    return None if queue is None else queue.clone()


def worker(rank, method, init_file, result_file):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    torch.set_num_threads(1)
    model = build(method)
    share = GLOBAL_BATCH // WORLD
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    losses, grads = train_steps(model, ddp, lambda step: [v[rank * share:(rank + 1) * share]
                                                          for v in global_views(model, step)])
    dist.all_reduce(losses)  # DDP averages the gradients over ranks; the loss is each rank's mean
    queues = [None] * WORLD
    dist.all_gather_object(queues, queue_of(model))
    if rank == 0:
        torch.save({"losses": losses / WORLD, "grads": grads, "queues": queues}, result_file)
    dist.barrier()
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """For every method: (1 process on the global batch, 2 processes on halves), run once."""
    results = {}
    for method in sorted(METHODS):
        folder = tmp_path_factory.mktemp(method)
        model = build(method)
        losses, grads = train_steps(model, model, lambda step, model=model: global_views(model, step))
        mp.spawn(worker, args=(method, str(folder / "init"), str(folder / "ddp.pt")), nprocs=WORLD, join=True)
        split = torch.load(folder / "ddp.pt", weights_only=True)
        results[method] = ({"losses": losses, "grads": grads, "queue": queue_of(model)}, split)
    return results


@pytest.mark.parametrize("method", sorted(METHODS))
def test_two_processes_equal_one_process_step_after_step_with_the_queues_in_use(method, runs):
    one, two = runs[method]
    torch.testing.assert_close(two["losses"], one["losses"], rtol=1e-10, atol=1e-12)
    assert two["grads"].keys() == one["grads"].keys() and len(one["grads"]) > 10
    for name, grad in one["grads"].items():
        torch.testing.assert_close(two["grads"][name], grad, rtol=1e-7, atol=1e-12, msg=name)


def test_the_queues_are_in_use_in_that_comparison(runs):
    moco_queue = runs["mocov2"][0]["queue"]
    assert len(moco_queue) <= STEPS * GLOBAL_BATCH  # every random initial key has been replaced
    swav_queue = runs["swav"][0]["queue"]
    assert swav_queue is not None and bool(swav_queue[:, -1].any())  # full, hence used from the next step on


def test_mocos_queue_is_the_same_on_every_rank_and_equals_the_one_process_queue(runs):
    one, two = runs["mocov2"]
    for queue in two["queues"]:
        torch.testing.assert_close(queue, one["queue"], rtol=1e-10, atol=1e-12)


def test_each_rank_keeps_swavs_queue_of_its_own_embeddings(runs):
    """The 1-process queue holds the newest embeddings of the global batch first; rank r's queue holds the rows
    of its own half of each batch, newest first."""
    one, two = runs["swav"]
    per_rank, share = two["queues"][0].shape[1], GLOBAL_BATCH // WORLD
    assert per_rank * WORLD == one["queue"].shape[1]
    for rank, queue in enumerate(two["queues"]):
        steps = one["queue"].view(2, -1, GLOBAL_BATCH, one["queue"].shape[2])  # [crop, step (newest first), ...]
        expected = steps[:, :, rank * share:(rank + 1) * share].reshape(2, per_rank, -1)
        torch.testing.assert_close(queue, expected, rtol=1e-10, atol=1e-12)
    assert not torch.allclose(two["queues"][0], two["queues"][1])
