"""The learning-rate schedules against the official code's formulas, written out here."""
import math

import numpy as np
import pytest

from pretrain.config import TrainConfig
from pretrain.train import lr_at

STEPS_PER_EPOCH = 7


def swav_schedule(base_lr, final_lr, start_warmup, warmup_epochs, epochs, steps):
    """main_swav.py: np.linspace warm-up from start_warmup, then cosine to final_lr, per iteration."""
    warmup = np.linspace(start_warmup, base_lr, steps * warmup_epochs)
    iters = np.arange(steps * (epochs - warmup_epochs))
    cosine = np.array([final_lr + 0.5 * (base_lr - final_lr) * (1 + math.cos(math.pi * t / len(iters)))
                       for t in iters])
    return np.concatenate((warmup, cosine))


def moco_lr(lr, epoch, epochs):
    """main_moco.py / main_simsiam.py adjust_learning_rate (--cos), called once at the start of each epoch."""
    return lr * 0.5 * (1.0 + math.cos(math.pi * epoch / epochs))


def simclr_lr(scaled_lr, step, warmup_steps, total_steps):
    """SimCLR TF v1 learning_rate_schedule: step / warmup_steps x lr, then cosine decay per step."""
    if step < warmup_steps:
        return step / warmup_steps * scaled_lr
    return scaled_lr * 0.5 * (1 + math.cos(math.pi * (step - warmup_steps) / (total_steps - warmup_steps)))


def test_swav_warms_up_from_start_warmup_and_then_follows_its_cosine_exactly():
    cfg = TrainConfig(epochs=20, batch_size=4096, base_lr=4.8, lr_rule="none", final_lr=0.0048, warmup_epochs=2,
                      warmup_start_lr=0.3)
    official = swav_schedule(4.8, 0.0048, 0.3, 2, 20, STEPS_PER_EPOCH)
    ours = np.array([lr_at(cfg, s, STEPS_PER_EPOCH) for s in range(20 * STEPS_PER_EPOCH)])
    warmup = 2 * STEPS_PER_EPOCH
    assert ours[0] == pytest.approx(0.3)
    np.testing.assert_allclose(ours[warmup:], official[warmup:], rtol=1e-12)
    # Note: np.linspace reaches 4.8 at the last warm-up step, ours one step later (at most (4.8-0.3)/13 apart).
    assert np.abs(ours[:warmup] - official[:warmup]).max() <= (4.8 - 0.3) / (warmup - 1) + 1e-12


def test_warmup_start_scales_with_the_lr_rule():
    cfg = TrainConfig(epochs=20, batch_size=512, base_lr=0.6, lr_rule="linear", warmup_epochs=2, warmup_start_lr=0.3)
    assert lr_at(cfg, 0, STEPS_PER_EPOCH) == pytest.approx(0.3 * 512 / 256)


@pytest.mark.parametrize("base_lr, batch", [(0.03, 256), (0.05, 512)])
def test_moco_and_simsiam_step_their_cosine_once_per_epoch(base_lr, batch):
    cfg = TrainConfig(epochs=10, batch_size=batch, base_lr=base_lr, lr_rule="linear", lr_schedule_unit="epoch")
    for step in range(10 * STEPS_PER_EPOCH):
        expected = moco_lr(base_lr * batch / 256, step // STEPS_PER_EPOCH, 10)
        assert lr_at(cfg, step, STEPS_PER_EPOCH) == pytest.approx(expected, rel=1e-12)


def test_simclr_and_byol_warm_up_linearly_from_zero_then_decay_every_step():
    cfg = TrainConfig(epochs=10, batch_size=4096, base_lr=0.3, lr_rule="linear", warmup_epochs=1)
    for step in range(10 * STEPS_PER_EPOCH):
        expected = simclr_lr(0.3 * 4096 / 256, step, STEPS_PER_EPOCH, 10 * STEPS_PER_EPOCH)
        assert lr_at(cfg, step, STEPS_PER_EPOCH) == pytest.approx(expected, rel=1e-12, abs=1e-15)
