"""MoCo's shuffling BN on one process (He et al. 2020, sec. 3.3; the official single-GPU notebook).

BN statistics computed over a batch that holds both a query and its key let the model find the positive
through the statistics instead of the content. Across GPUs MoCo shuffles the keys between GPUs (pretrain/mocov2.py).
On one GPU the official notebook splits every BN into sub-batches (SplitBatchNorm, 8 splits) and shuffles the
key batch before the key encoder, so that a key's BN statistics come from other images than its query's.
"""
import torch
from torch import nn

from sslt_core.errors import ConfigError


class SplitBatchNorm(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are computed over `num_splits` interleaved sub-batches: sample n
    belongs to sub-batch n % num_splits, as in the official notebook's `view(-1, C * num_splits, H, W)`.
    In eval mode it is a plain BatchNorm2d; its state dict is a BatchNorm2d's."""

    def __init__(self, num_features, num_splits, **kwargs):
        super().__init__(num_features, **kwargs)
        self.num_splits = num_splits

    def forward(self, input):
        if not self.training:
            return super().forward(input)
        n, c, h, w = input.shape
        s = self.num_splits
        mean_split, var_split = self.running_mean.repeat(s), self.running_var.repeat(s)
        out = nn.functional.batch_norm(input.reshape(-1, c * s, h, w), mean_split, var_split,
                                       self.weight.repeat(s), self.bias.repeat(s), True, self.momentum, self.eps)
        with torch.no_grad():  # the running statistics: the mean over the sub-batches' updated statistics
            self.running_mean.copy_(mean_split.view(s, c).mean(dim=0))
            self.running_var.copy_(var_split.view(s, c).mean(dim=0))
            self.num_batches_tracked.add_(1)
        return out.reshape(n, c, h, w)


def split_batch_norms(module, num_splits):
    """`module` with every BatchNorm2d replaced by a SplitBatchNorm holding the same parameters and statistics."""
    for name, child in module.named_children():
        if type(child) is nn.BatchNorm2d:
            split = SplitBatchNorm(child.num_features, num_splits, eps=child.eps, momentum=child.momentum)
            split.load_state_dict(child.state_dict())
            setattr(module, name, split)
        else:
            split_batch_norms(child, num_splits)
    return module


def sub_batches(order, num_splits):
    """The image sets of the BN sub-batches when the batch is fed in `order` (image order[p] at position p)."""
    return [frozenset(order[g::num_splits].tolist()) for g in range(num_splits)]


def key_order(batch, num_splits, generator=None, attempts=100):
    """A random order of the key batch in which no BN sub-batch of keys holds the same images as a sub-batch
    of queries (fed in their own order), so that no key is normalised with its own query's statistics.

    A plain random permutation, as in the official notebook; the rare permutation that reproduces a query
    sub-batch is drawn again."""
    if batch % num_splits or batch // num_splits < 2:
        raise ConfigError(f"mocov2: shuffle BN splits the batch of {batch} into {num_splits} sub-batches of at least "
                         "2 images; set model.bn_splits to a divisor of the per-process batch that leaves >= 2")
    queries = set(sub_batches(torch.arange(batch), num_splits))
    for _ in range(attempts):
        order = torch.randperm(batch, generator=generator)
        if queries.isdisjoint(sub_batches(order, num_splits)):
            return order
    raise RuntimeError(f"mocov2: no key order separates {num_splits} sub-batches of {batch // num_splits} images")
