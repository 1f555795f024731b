"""The linear probe reaches scikit-learn's logistic-regression accuracy and never moves the backbone's BN."""
import math
from dataclasses import replace

import numpy as np
import pytest
import torch
import torchvision
from sklearn.linear_model import LogisticRegression

from eval.linear import (
    PROTOCOLS,
    _classifier,
    adapted,
    bn_statistics,
    check_bn_unchanged,
    linear_probe,
    lr_at,
    train_linear,
)


def separable_features(n, rng, centres):
    labels = rng.integers(0, len(centres), n)
    # post-ReLU pooled features of a self-supervised ResNet are non-negative and small
    features = np.maximum(centres[labels] + 0.08 * rng.normal(size=(n, centres.shape[1])), 0)
    return features.astype(np.float32), labels


def test_cached_probe_matches_scikit_learn_logistic_regression_within_a_point():
    rng = np.random.default_rng(0)
    centres = np.abs(rng.normal(0.03, 0.03, size=(10, 128)))
    train, val = separable_features(3000, rng, centres), separable_features(2000, rng, centres)
    protocol = adapted(PROTOCOLS["moco"], batch_size=256)
    encoder = torchvision.models.resnet18()
    result, mode = linear_probe(encoder, train, val, 10, protocol)
    reference = 100 * LogisticRegression(C=1e4, max_iter=10000).fit(*train).score(*val)
    assert "cached" in mode
    assert 80 < reference < 99  # nearly separable, so that the comparison can fail
    assert abs(result["top1"] - reference) <= 1.0, (result, reference)


def test_faithful_probe_runs_the_frozen_encoder_in_eval_mode_and_leaves_bn_untouched():
    torch.manual_seed(0)
    encoder = torchvision.models.resnet18()
    encoder.fc = torch.nn.Identity()
    encoder.train()  # the probe must put it in eval mode itself
    before = bn_statistics(encoder)
    images = torch.utils.data.TensorDataset(torch.randn(16, 3, 32, 32), torch.arange(16) % 4)
    features = np.random.default_rng(0).normal(size=(16, 512)).astype(np.float32)
    labels = (np.arange(16) % 4)
    protocol = adapted(PROTOCOLS["simsiam"], batch_size=8, epochs=2)
    result, mode = linear_probe(encoder, (features, labels), (features, labels), 4, protocol,
                                augmented_train_set=images, device="cpu")
    assert "augmented" in mode and 0 <= result["top1"] <= 100
    assert not encoder.training
    for key, value in bn_statistics(encoder).items():
        assert torch.equal(value, before[key]), key


def test_the_bn_check_catches_a_backbone_in_train_mode():
    encoder = torchvision.models.resnet18()
    before = bn_statistics(encoder)
    encoder.train()
    encoder(torch.randn(2, 3, 32, 32))
    with pytest.raises(RuntimeError, match="BN statistics moved"):
        check_bn_unchanged(encoder, before)


def test_protocols_follow_the_papers():
    moco, simsiam = PROTOCOLS["moco"], PROTOCOLS["simsiam"]
    assert (moco.lr, moco.batch_size, moco.epochs, moco.weight_decay) == (30.0, 256, 100, 0.0)
    assert [lr_at(moco, e) for e in (0, 59.9, 60, 80)] == pytest.approx([30, 30, 3, 0.3])
    assert (simsiam.lr, simsiam.batch_size, simsiam.epochs, simsiam.optimizer) == (1.6, 4096, 90, "larc")
    assert lr_at(simsiam, 45) == pytest.approx(0.8) and lr_at(simsiam, 90) == pytest.approx(0.0)
    small = adapted(simsiam, batch_size=256, epochs=10)
    assert small.lr == pytest.approx(0.1) and small.epochs == 10
    assert adapted(moco, epochs=10).milestones == (6, 8)


def simsiam_main_lincls(features, labels, epochs, init_lr, weight_decay, seed):
    """SimSiam's main_lincls.py --lars, written out in float64: SGD(momentum 0.9) inside apex LARC(trust 0.001,
    clip=False), which absorbs the weight decay and adapts every parameter, the bias included, unless its weight
    or gradient norm is 0; the lr set once per epoch by adjust_learning_rate (cosine)."""
    layer = _classifier(features[0].shape[1], 3, seed)  # the official init: weight N(0, 0.01), bias 0
    params = [layer.weight.detach().double().clone(), layer.bias.detach().double().clone()]
    buffers = [None, None]
    for epoch in range(epochs):
        lr = init_lr * 0.5 * (1.0 + math.cos(math.pi * epoch / epochs))
        for x, y in zip(features, labels):
            weight, bias = (p.clone().requires_grad_(True) for p in params)
            loss = torch.nn.functional.cross_entropy(x.double() @ weight.T + bias, y)
            grads = torch.autograd.grad(loss, [weight, bias])
            for i, (p, g) in enumerate(zip(params, grads)):
                param_norm, grad_norm = float(p.norm()), float(g.norm())
                if param_norm != 0 and grad_norm != 0:
                    adaptive_lr = 0.001 * param_norm / (grad_norm + param_norm * weight_decay + 1e-8)
                    g = (g + weight_decay * p) * adaptive_lr
                buffers[i] = g.clone() if buffers[i] is None else 0.9 * buffers[i] + g  # torch SGD's momentum
                params[i] = p - lr * buffers[i]
    return params


@pytest.mark.parametrize("weight_decay", [0.0, 1e-3])
def test_the_simsiam_protocol_is_main_lincls_larc_with_the_bias_adapted_and_a_per_epoch_cosine(weight_decay):
    rng = np.random.default_rng(0)
    features = [torch.tensor(np.abs(rng.normal(size=(16, 8))), dtype=torch.float32) for _ in range(3)]
    labels = [torch.tensor(rng.integers(0, 3, 16)) for _ in range(3)]
    protocol = replace(adapted(PROTOCOLS["simsiam"], batch_size=16, epochs=4), weight_decay=weight_decay)
    layer = train_linear(lambda epoch, generator: zip(features, labels), 8, 3, protocol, seed=0)
    weight, bias = simsiam_main_lincls(features, labels, 4, 0.1 * 16 / 256, weight_decay, seed=0)
    assert float(bias.abs().max()) > 1e-4  # the bias moved, so that its step is compared
    torch.testing.assert_close(layer.weight.detach().double(), weight, rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(layer.bias.detach().double(), bias, rtol=1e-4, atol=1e-7)
