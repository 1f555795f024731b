"""LARS and LARC against their formulas written out per parameter with plain floats (apex LARC, clip=False, as
SwAV's main_swav.py uses it; LARS as in the SimSiam / MoCo v3 code)."""
import math

import pytest
import torch

from sslt_core.optim import LARC, LARS

ETA, LR, WD, MOMENTUM = 1e-3, 0.5, 1e-2, 0.9


def norm(values):
    return math.sqrt(sum(v * v for v in values))


def larc_update(w, g):
    """apex LARC.step with clip=False: g <- (g + wd w) * eta ||w|| / (||g|| + wd ||w|| + 1e-8), unless a norm is 0."""
    wn, gn = norm(w), norm(g)
    if wn == 0 or gn == 0:
        return list(g)
    trust = ETA * wn / (gn + wn * WD + 1e-8)
    return [(gi + WD * wi) * trust for gi, wi in zip(g, w)]


def lars_update(w, g, is_matrix):
    """LARS: on weights with >1 dimension, (g + wd w) * eta ||w|| / ||g + wd w||; 1-D parameters keep g."""
    if not is_matrix:
        return list(g)
    u = [gi + WD * wi for gi, wi in zip(g, w)]
    wn, un = norm(w), norm(u)
    trust = ETA * wn / un if wn > 0 and un > 0 else 1.0
    return [ui * trust for ui in u]


def sgd_momentum(params, grads_per_step, update, lrs=(LR,) * 3, lr_in_momentum=False):
    """Steps of mu <- m mu + update; w <- w - lr mu (PyTorch), or mu <- m mu + lr update; w <- w - mu
    (TensorFlow's MomentumOptimizer), per parameter, in plain floats."""
    params = {k: list(v) for k, v in params.items()}
    mu = {k: [0.0] * len(v) for k, v in params.items()}
    for grads, lr in zip(grads_per_step, lrs):
        for key, w in params.items():
            u = update(key, w, grads[key])
            if lr_in_momentum:
                mu[key] = [MOMENTUM * m + lr * ui for m, ui in zip(mu[key], u)]
                params[key] = [wi - m for wi, m in zip(w, mu[key])]
            else:
                mu[key] = [MOMENTUM * m + ui for m, ui in zip(mu[key], u)]
                params[key] = [wi - lr * m for wi, m in zip(w, mu[key])]
    return params


@pytest.fixture
def problem():
    g = torch.Generator().manual_seed(0)
    shapes = {"conv.weight": (4, 3), "bn.weight": (4,), "bn.bias": (4,), "zero.weight": (2, 2)}
    params = {k: torch.randn(*s, generator=g, dtype=torch.float64) for k, s in shapes.items()}
    params["zero.weight"].zero_()  # a parameter with norm 0: no adaptation, no decay
    grads = [{k: torch.randn(*s, generator=g, dtype=torch.float64) for k, s in shapes.items()} for _ in range(3)]
    return params, grads


def run_optimizer(cls, params, grads, lrs=(LR,) * 3, **kwargs):
    tensors = {k: torch.nn.Parameter(v.clone()) for k, v in params.items()}
    optimizer = cls(list(tensors.values()), lr=LR, weight_decay=WD, momentum=MOMENTUM, trust_coefficient=ETA, **kwargs)
    for step, lr in zip(grads, lrs):
        for group in optimizer.param_groups:
            group["lr"] = lr
        for key, tensor in tensors.items():
            tensor.grad = step[key].clone()
        optimizer.step()
    return {k: v.detach().flatten().tolist() for k, v in tensors.items()}


def flat(tensors):
    return {k: v.flatten().tolist() for k, v in tensors.items()}


def test_larc_adapts_and_decays_every_parameter_as_apex_does(problem):
    params, grads = problem
    expected = sgd_momentum(flat(params), [flat(g) for g in grads], lambda key, w, g: larc_update(w, g))
    found = run_optimizer(LARC, params, grads)
    for key in params:
        assert found[key] == pytest.approx(expected[key], rel=1e-12, abs=1e-15), key
    assert found["bn.bias"] != pytest.approx(flat(params)["bn.bias"])  # BN and bias are updated too


def test_lars_leaves_bn_and_bias_out_of_decay_and_adaptation(problem):
    params, grads = problem
    matrix = {k: v.ndim > 1 for k, v in params.items()}
    expected = sgd_momentum(flat(params), [flat(g) for g in grads], lambda key, w, g: lars_update(w, g, matrix[key]))
    found = run_optimizer(LARS, params, grads)
    for key in params:
        assert found[key] == pytest.approx(expected[key], rel=1e-12, abs=1e-15), key


def test_larc_and_lars_differ_on_bn_parameters(problem):
    params, grads = problem
    larc, lars = run_optimizer(LARC, params, grads), run_optimizer(LARS, params, grads)
    assert larc["bn.weight"] != pytest.approx(lars["bn.weight"])


def test_lars_with_the_lr_in_the_momentum_buffer_is_simclrs_tensorflow_form(problem):
    """SimCLR's LARS (TF): next_v = m v + lr * trust * g; w -= next_v. With a changing lr (warm-up) it differs from
    the PyTorch form, where the lr multiplies the whole buffer."""
    params, grads = problem
    lrs = (0.0, 0.2, 0.5)  # a warm-up: the first step's update is taken at lr 0
    matrix = {k: v.ndim > 1 for k, v in params.items()}
    update = lambda key, w, g: lars_update(w, g, matrix[key])  # noqa: E731
    expected = sgd_momentum(flat(params), [flat(g) for g in grads], update, lrs, lr_in_momentum=True)
    found = run_optimizer(LARS, params, grads, lrs, lr_in_momentum=True)
    for key in params:
        assert found[key] == pytest.approx(expected[key], rel=1e-12, abs=1e-15), key
    pytorch_form = run_optimizer(LARS, params, grads, lrs)
    assert pytorch_form["conv.weight"] != pytest.approx(found["conv.weight"])
