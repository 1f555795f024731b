"""Each loss equals its paper's formula written plainly; stop-gradients and EMA targets behave as the papers say."""
import math

import pytest
import torch
from torch import nn

from pretrain.byol import byol_tau
from pretrain.heads import ema_update, frozen_copy
from pretrain.losses import (
    byol_regression,
    info_nce,
    negative_cosine,
    nt_xent,
    sinkhorn,
    softmax_cross_entropy,
    swapped_prediction,
)


def cos(a, b):
    return float(a @ b) / (float(a.norm()) * float(b.norm()))


@pytest.fixture
def g():
    return torch.Generator().manual_seed(0)


def test_nt_xent_is_the_official_loss_a_plus_loss_b_twice_the_papers_mean(g):
    """SimCLR TF objective.py add_contrastive_loss, written out: logits_ab / logits_aa (self masked) for the
    anchors of view a, logits_ba / logits_bb for those of view b; loss = loss_a + loss_b, each softmax cross
    entropy averaged over the N anchors. Eq. 1 of the paper averages over the 2N anchors instead (half)."""
    z1, z2 = torch.randn(5, 8, generator=g), torch.randn(5, 8, generator=g)
    t, n = 0.3, 5

    def loss_of_view(a, b):  # -log softmax of the positive logit a_i.b_i among [a_i.b_j for all j, a_i.a_k, k != i]
        total = 0.0
        for i in range(n):
            logits = [cos(a[i], b[j]) / t for j in range(n)] + [cos(a[i], a[k]) / t for k in range(n) if k != i]
            total += -(logits[i] - math.log(sum(math.exp(x) for x in logits)))
        return total / n

    official = loss_of_view(z1, z2) + loss_of_view(z2, z1)
    views = torch.cat([z1, z2])
    papers = sum(-math.log(math.exp(cos(views[i], views[(i + n) % (2 * n)]) / t)
                           / sum(math.exp(cos(views[i], views[j]) / t) for j in range(2 * n) if j != i))
                 for i in range(2 * n)) / (2 * n)
    assert official == pytest.approx(2 * papers, rel=1e-9)
    assert nt_xent(z1, z2, t).item() == pytest.approx(official, rel=1e-5)


def test_info_nce_puts_the_key_against_the_queue(g):
    q, k, queue = torch.randn(4, 6, generator=g), torch.randn(4, 6, generator=g), torch.randn(10, 6, generator=g)
    queue = torch.nn.functional.normalize(queue, dim=1)
    t, total = 0.2, 0.0
    for i in range(4):
        positive = math.exp(cos(q[i], k[i]) / t)
        negatives = sum(math.exp(float(q[i] @ queue[j]) / float(q[i].norm()) / t) for j in range(10))
        total += -math.log(positive / (positive + negatives))
    assert info_nce(q, k, queue, t).item() == pytest.approx(total / 4, rel=1e-5)


def test_byol_regression_is_the_squared_distance_of_normalised_vectors(g):
    p, z = torch.randn(3, 5, generator=g), torch.randn(3, 5, generator=g)
    expected = sum(float(((p[i] / p[i].norm() - z[i] / z[i].norm()) ** 2).sum()) for i in range(3)) / 3
    assert byol_regression(p, z).item() == pytest.approx(expected, rel=1e-5)


def test_simsiam_distance_and_its_cross_entropy_variant(g):
    p, z = torch.randn(3, 5, generator=g), torch.randn(3, 5, generator=g)
    assert negative_cosine(p, z).item() == pytest.approx(-sum(cos(p[i], z[i]) for i in range(3)) / 3, rel=1e-5)
    expected = 0.0
    for i in range(3):
        target = torch.exp(z[i]) / torch.exp(z[i]).sum()
        expected += -float((target * torch.log(torch.exp(p[i]) / torch.exp(p[i]).sum())).sum())
    assert softmax_cross_entropy(p, z).item() == pytest.approx(expected / 3, rel=1e-5)


@pytest.mark.parametrize("stop_gradient, factor", [(True, 0.5), (False, 1.0)])
def test_stop_gradient_halves_the_symmetric_gradient_when_the_predictor_is_the_identity(g, stop_gradient, factor):
    """With p = z, D(z1, sg z2)/2 + D(z2, sg z1)/2 sends z1 only the gradient of -cos(z1, z2)/2; without the
    stop-gradient, the whole gradient of -cos(z1, z2)."""
    z1 = torch.randn(1, 4, generator=g, requires_grad=True)
    z2 = torch.randn(1, 4, generator=g, requires_grad=True)
    loss = negative_cosine(z1, z2, stop_gradient) / 2 + negative_cosine(z2, z1, stop_gradient) / 2
    loss.backward()
    a, b = z1.detach()[0], z2.detach()[0]
    d_cos_d_a = b / (a.norm() * b.norm()) - cos(a, b) * a / a.norm() ** 2
    torch.testing.assert_close(z1.grad[0], -factor * d_cos_d_a)


def test_swapped_prediction_sums_every_ordered_pair_of_code_and_other_view(g):
    scores = [torch.randn(4, 7, generator=g) for _ in range(3)]
    codes = [torch.softmax(torch.randn(4, 7, generator=g), 1) for _ in range(2)]
    t, total, pairs = 0.1, 0.0, 0
    for i in range(2):
        for j in range(3):
            if i != j:
                log_p = torch.log_softmax(scores[j] / t, dim=1)
                total += -float((codes[i] * log_p).sum()) / 4
                pairs += 1
    assert swapped_prediction(scores, codes, t).item() == pytest.approx(total / pairs, rel=1e-5)


def test_sinkhorn_codes_have_the_equipartition_marginals(g):
    features = torch.nn.functional.normalize(torch.randn(64, 16, generator=g), dim=1)
    prototypes = torch.nn.functional.normalize(torch.randn(8, 16, generator=g), dim=1)
    scores = features @ prototypes.T
    codes = sinkhorn(scores, epsilon=0.05, iterations=3)
    torch.testing.assert_close(codes.sum(1), torch.ones(64))  # each sample's code is a distribution
    converged = sinkhorn(scores, epsilon=0.05, iterations=200)
    torch.testing.assert_close(converged.sum(0), torch.full((8,), 64 / 8), rtol=1e-3, atol=1e-3)  # B/K each


def swav_reference_sinkhorn(out, epsilon, iterations):
    """SwAV's own code (main_swav.py, distributed_sinkhorn) on one process."""
    q = torch.exp(out / epsilon).t()
    b, k = q.shape[1], q.shape[0]
    q /= torch.sum(q)
    for _ in range(iterations):
        q /= torch.sum(q, dim=1, keepdim=True)
        q /= k
        q /= torch.sum(q, dim=0, keepdim=True)
        q /= b
    q *= b
    return q.t()


def test_sinkhorn_equals_swavs_own_iterations(g):
    scores = torch.nn.functional.normalize(torch.randn(32, 16, generator=g), dim=1) @ \
        torch.nn.functional.normalize(torch.randn(10, 16, generator=g), dim=1).T
    torch.testing.assert_close(sinkhorn(scores, 0.05, 3), swav_reference_sinkhorn(scores.double(), 0.05, 3).float(),
                               rtol=1e-5, atol=1e-6)


def test_sinkhorn_neither_overflows_nor_underflows():
    scores = torch.tensor([[1.0, -1.0, 0.5], [0.9, 0.2, -0.3]], dtype=torch.bfloat16)
    codes = sinkhorn(scores, epsilon=0.005, iterations=3)  # exp(200) overflows, exp(-400) underflows in fp32
    assert torch.isfinite(codes).all() and codes.dtype == torch.float32


def test_ema_puts_the_weight_on_the_old_parameters(g):
    online = nn.Linear(3, 2)
    target = frozen_copy(online)
    old = target.weight.detach().clone()
    with torch.no_grad():
        online.weight.add_(torch.randn(2, 3, generator=g))
    ema_update(target, online, tau=0.9)
    torch.testing.assert_close(target.weight, 0.9 * old + 0.1 * online.weight.detach())
    assert not target.weight.requires_grad


def test_byol_tau_rises_from_tau_base_to_one_along_a_cosine():
    assert byol_tau(0.99, 0, 100) == pytest.approx(0.99)
    assert byol_tau(0.99, 50, 100) == pytest.approx(1 - 0.01 * 0.5)
    assert byol_tau(0.99, 100, 100) == pytest.approx(1.0)


@pytest.mark.parametrize("method, overrides, target", [
    ("byol", ["model.proj_hidden=32", "model.proj_dim=16"], "target"),
    ("mocov2", ["model.proj_hidden=32", "model.proj_dim=16", "model.queue_size=32", "model.bn_splits=2"],
     "key_encoder"),
    ("simsiam", ["model.proj_dim=32", "model.pred_hidden=8", "model.target=k_steps", "model.target_k=10"], "target"),
    ("simsiam", ["model.proj_dim=32", "model.pred_hidden=8", "model.target=moving_average"], "target"),
])
def test_momentum_ema_and_k_step_targets_receive_no_gradient(method, overrides, target):
    from pretrain.config import load_config
    from pretrain.methods import build_method

    model = build_method(load_config(None, [f"method={method}", "model.arch=resnet18", *overrides]))
    views = [torch.randn(4, 3, 32, 32) for _ in model.view_recipes]
    model(views)["loss"].backward()
    target_params = list(getattr(model, target).parameters())
    assert target_params and all(p.grad is None and not p.requires_grad for p in target_params)
    assert model.encoder.conv1.weight.grad is not None  # the online encoder does learn
