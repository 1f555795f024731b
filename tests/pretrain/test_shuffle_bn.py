"""MoCo's shuffle BN on one process (the official single-GPU notebook): BN over interleaved sub-batches, and a key
order in which no key is normalised with the statistics of the sub-batch that holds its own query."""
import pytest
import torch
import torch.nn.functional as F

from pretrain.methods import build_method
from pretrain.shuffle_bn import SplitBatchNorm, key_order, sub_batches
from sslt_core.errors import ConfigError
from tests.pretrain.tiny import tiny_config


def test_split_batch_norm_normalises_each_interleaved_sub_batch_on_its_own():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(8, 3, 5, 5, generator=g) * 3 + 1
    bn = SplitBatchNorm(3, num_splits=4, momentum=0.1)
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([0.5, 1.0, 2.0]))
        bn.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
    out = bn(x)
    for s in range(4):  # the notebook's view(-1, C * splits, H, W) puts sample n in sub-batch n % splits
        part = x[s::4]
        mean, var = part.mean(dim=(0, 2, 3)), part.var(dim=(0, 2, 3), unbiased=False)
        expected = (part - mean.view(1, 3, 1, 1)) / torch.sqrt(var.view(1, 3, 1, 1) + 1e-5)
        expected = expected * bn.weight.view(1, 3, 1, 1) + bn.bias.view(1, 3, 1, 1)
        torch.testing.assert_close(out[s::4], expected.detach(), rtol=1e-5, atol=1e-5)
    # running statistics: the mean over sub-batches of each one's momentum update from the old statistics
    means = torch.stack([x[s::4].mean(dim=(0, 2, 3)) for s in range(4)])
    variances = torch.stack([x[s::4].var(dim=(0, 2, 3), unbiased=True) for s in range(4)])
    torch.testing.assert_close(bn.running_mean, (0.9 * 0 + 0.1 * means).mean(0))
    torch.testing.assert_close(bn.running_var, (0.9 * 1 + 0.1 * variances).mean(0))
    bn.eval()
    torch.testing.assert_close(bn(x), F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias).detach())


def test_key_order_never_reproduces_a_query_sub_batch():
    g = torch.Generator().manual_seed(0)
    queries = set(sub_batches(torch.arange(8), 4))
    for _ in range(500):  # with 4 sub-batches of 2 a plain permutation repeats one about 1 time in 4
        assert queries.isdisjoint(sub_batches(key_order(8, 4, generator=g), 4))


def test_key_order_refuses_sub_batches_of_one_image():
    with pytest.raises(ConfigError, match="model.bn_splits"):
        key_order(8, 8)


def influence(fn, batch):
    """For every sample i, the samples j whose change alters output i: the BN sub-batch that i is normalised in."""
    base = fn(batch)
    groups = [set() for _ in range(len(batch))]
    for j in range(len(batch)):
        changed = batch.clone()
        changed[j] = changed[j] * 2 + 1
        moved = (fn(changed) - base).abs().amax(dim=1) > 1e-5
        for i in torch.nonzero(moved).flatten().tolist():
            groups[i].add(j)
    return [frozenset(group) for group in groups]


def test_no_key_is_normalised_with_the_sub_batch_of_its_own_query():
    model = build_method(tiny_config("mocov2", extra=["model.bn_splits=4"])).train()
    x = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(1))

    def keys(batch):
        torch.manual_seed(7)  # the same key order for every probe
        return model._keys(batch)

    with torch.no_grad():
        query_groups = influence(lambda b: model.projector(model.encoder(b)), x)
        key_groups = influence(keys, x)
    assert all(len(group) == 2 for group in query_groups + key_groups)  # 8 images in 4 sub-batches
    assert query_groups == [frozenset({i % 4, i % 4 + 4}) for i in range(8)]
    for i in range(8):
        assert i in key_groups[i] and key_groups[i] != query_groups[i]
