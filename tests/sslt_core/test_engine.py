"""The training engine (sslt_core/engine) against independent references: gradient clipping as torch's
clip_grad_norm_ and DINO's clip_gradients write it, the weight-decay schedule as DINO's numpy cosine_scheduler,
the hooks' call order, the NaN guard, and a resume part way through an epoch equal to the bit to a run without
a stop."""
import json
import math

import numpy as np
import pytest
import torch

from sslt_core.engine import (
    Checkpointer,
    EpochSampler,
    GradientClipper,
    HookBase,
    MetricsWriter,
    ParamScheduler,
    TrainingDiverged,
    TrainLoop,
    clip_grad_norm,
    clip_grad_per_parameter,
    cosine_schedule,
    load_checkpoint,
    train_step,
)


def toy(seed=0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Dropout(0.3), torch.nn.Linear(8, 2))
    return model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)


def gradients(model, scale=10.0):
    """Large gradients, so that clipping has work to do."""
    for p in model.parameters():
        p.grad = scale * torch.randn_like(p)
    return [p.grad.clone() for p in model.parameters()]


def test_clipping_by_the_global_norm_is_the_formula_and_torchs_clip_grad_norm():
    model, optimizer = toy()
    raw = gradients(model)
    clip_grad_norm(optimizer, 1.0)
    total = math.sqrt(sum(float((g.double() ** 2).sum()) for g in raw))  # the global l2 norm, written out
    assert total > 1.0
    for p, g in zip(model.parameters(), raw):
        torch.testing.assert_close(p.grad, g * (1.0 / (total + 1e-6)), rtol=1e-5, atol=0)
    reference, _ = toy()
    for p, g in zip(reference.parameters(), raw):
        p.grad = g.clone()
    torch.nn.utils.clip_grad_norm_(reference.parameters(), 1.0)
    for p, q in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(p.grad, q.grad)


def dino_clip_gradients(model, clip):
    """DINO's utils.clip_gradients, as written there."""
    norms = []
    for _, p in model.named_parameters():
        if p.grad is not None:
            param_norm = p.grad.data.norm(2)
            norms.append(param_norm.item())
            clip_coef = clip / (param_norm + 1e-6)
            if clip_coef < 1:
                p.grad.data.mul_(clip_coef)
    return norms


def test_per_parameter_clipping_is_dinos_clip_gradients():
    model, optimizer = toy()
    raw = gradients(model, scale=0.5)  # some parameters above the threshold, some below
    norms = clip_grad_per_parameter(optimizer, 2.0)
    reference, _ = toy()
    for p, g in zip(reference.parameters(), raw):
        p.grad = g.clone()
    assert norms == pytest.approx(dino_clip_gradients(reference, 2.0))
    assert min(norms) < 2.0 < max(norms)
    for p, q in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(p.grad, q.grad)


def dino_cosine_scheduler(base_value, final_value, epochs, niter_per_ep, warmup_epochs=0, start_warmup_value=0):
    """DINO's utils.cosine_scheduler, as written there."""
    warmup_schedule = np.array([])
    warmup_iters = warmup_epochs * niter_per_ep
    if warmup_epochs > 0:
        warmup_schedule = np.linspace(start_warmup_value, base_value, warmup_iters)
    iters = np.arange(epochs * niter_per_ep - warmup_iters)
    schedule = final_value + 0.5 * (base_value - final_value) * (1 + np.cos(np.pi * iters / len(iters)))
    schedule = np.concatenate((warmup_schedule, schedule))
    assert len(schedule) == epochs * niter_per_ep
    return schedule


@pytest.mark.parametrize("warmup_epochs", [0, 1, 2])
def test_the_cosine_schedule_is_dinos_cosine_scheduler(warmup_epochs):
    reference = dino_cosine_scheduler(0.04, 0.4, 5, 7, warmup_epochs, 0.01)
    schedule = cosine_schedule(0.04, 0.4, 5 * 7, warmup_epochs * 7, 0.01)
    np.testing.assert_allclose([schedule(t) for t in range(35)], reference, rtol=1e-12, atol=0)


class Recorder(HookBase):
    def __init__(self, name, calls):
        self.name, self.calls = name, calls

    def __getattribute__(self, attribute):
        if attribute in ("before_train", "before_epoch", "before_step", "before_optimizer_step", "after_step",
                         "after_epoch", "after_train"):
            return lambda loop: object.__getattribute__(self, "calls").append(
                (object.__getattribute__(self, "name"), attribute, loop.epoch, loop.step))
        return object.__getattribute__(self, attribute)


def batches_of(data, batch):
    return lambda epoch, skip: [data[i:i + batch] for i in range(skip * batch, len(data), batch)]


def test_hooks_are_called_in_the_loops_order_each_in_the_list_order():
    model, optimizer = toy()
    data = [(torch.randn(2, 4), torch.tensor([0, 1])) for _ in range(2)]
    calls = []
    loop = TrainLoop(lambda b: torch.nn.functional.cross_entropy(model(b[0][0]), b[0][1]), optimizer,
                     batches_of(data, 1), epochs=2, hooks=[Recorder("a", calls), Recorder("b", calls)],
                     steps_per_epoch=2)
    loop.run()
    expected = [("before_train", 0, 0)]
    for epoch in range(2):
        expected.append(("before_epoch", epoch, 2 * epoch))
        for k in range(2):
            step = 2 * epoch + k
            expected += [("before_step", epoch, step), ("before_optimizer_step", epoch, step),
                         ("after_step", epoch, step + 1)]
        expected.append(("after_epoch", epoch, 2 * epoch + 2))
    expected.append(("after_train", 1, 4))
    assert calls == [(name, *call) for call in expected for name in "ab"]
    assert loop.completed


def test_a_non_finite_loss_on_the_step_raises_before_any_update():
    model, optimizer = toy()
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(TrainingDiverged, match="loss is nan"):
        train_step(lambda x: model(x).sum() * float("nan"), optimizer, torch.randn(3, 4))
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), before))
    calls = []
    loop = TrainLoop(lambda x: model(x).pow(2).sum() * float("inf"), optimizer, lambda epoch, skip: [torch.randn(3, 4)],
                     epochs=1, hooks=[Recorder("r", calls)])
    with pytest.raises(TrainingDiverged, match="loss is inf at step 0 \\(epoch 1\\)"):
        loop.run()
    assert [c[1] for c in calls] == ["before_train", "before_epoch", "before_step", "after_train"]
    assert not loop.completed and all(torch.equal(p, q) for p, q in zip(model.parameters(), before))


def test_the_step_clips_before_the_update_as_clip_grad_norm_then_sgd():
    model, optimizer = toy()
    model.eval()  # no dropout: the reference runs the same forward
    x = torch.randn(5, 4)
    reference, _ = toy()
    reference.eval()
    reference(x).pow(2).sum().backward()
    torch.nn.utils.clip_grad_norm_(reference.parameters(), 0.5)
    expected = [p.detach() - 0.1 * (p.grad + 1e-4 * p.detach()) for p in reference.parameters()]  # first SGD step
    train_step(lambda b: model(b).pow(2).sum(), optimizer, x, clip_grad=0.5)
    for p, e in zip(model.parameters(), expected):
        torch.testing.assert_close(p.detach(), e)


def test_the_scheduler_sets_each_groups_lr_and_weight_decay():
    a, b, c = (torch.nn.Parameter(torch.ones(2)) for _ in range(3))
    optimizer = torch.optim.SGD([{"params": [a]}, {"params": [b], "lr_scale": 0.024, "fixed_weight_decay": True,
                                                   "weight_decay": 0.0},
                                 {"params": [c], "fixed_lr": True, "initial_lr": 0.05}], lr=1.0, weight_decay=0.04)
    wd = cosine_schedule(0.04, 0.4, 6)
    reference = dino_cosine_scheduler(0.04, 0.4, 3, 2)
    seen = []

    class Look(HookBase):
        def before_optimizer_step(self, loop):
            seen.append([(g["lr"], g["weight_decay"]) for g in loop.optimizer.param_groups])

    loop = TrainLoop(lambda x: (a + b + c).sum() * x, optimizer, lambda epoch, skip: [1.0, 1.0], epochs=3,
                     hooks=[ParamScheduler(optimizer, lr=lambda t: 0.2 * (t + 1), weight_decay=wd), Look()])
    loop.run()
    for t, groups in enumerate(seen):
        assert groups[0] == pytest.approx((0.2 * (t + 1), reference[t]))
        assert groups[1] == pytest.approx((0.2 * (t + 1) * 0.024, 0.0))  # Barlow Twins' bias rate; no decay
        assert groups[2] == pytest.approx((0.05, reference[t]))


def test_the_gradient_clipper_hook_clips_what_the_optimizer_steps_with():
    model, optimizer = toy()
    norms = []

    class Look(HookBase):
        def before_optimizer_step(self, loop):
            norms.append(math.sqrt(sum(float((p.grad ** 2).sum()) for p in model.parameters())))

    loop = TrainLoop(lambda x: 100 * model(x).pow(2).sum(), optimizer, lambda epoch, skip: [torch.randn(8, 4)] * 3,
                     epochs=1, hooks=[GradientClipper(0.25), Look()])
    loop.run()
    assert norms == pytest.approx([0.25] * 3, rel=1e-4)


# A toy run: 24 samples, batches of 4 (6 steps per epoch), 3 epochs, dropout drawing from the global RNG.
DATA = torch.utils.data.TensorDataset(torch.randn(24, 4, generator=torch.Generator().manual_seed(1)),
                                      torch.randint(0, 2, (24,), generator=torch.Generator().manual_seed(2)))


def toy_run(output, start=None, max_steps=0):
    output.mkdir(exist_ok=True)
    model, optimizer = toy()
    torch.manual_seed(7)  # the run's generators, set once at its start
    sampler = EpochSampler(len(DATA), 4, seed=3)
    state = load_checkpoint(output / "checkpoint.pth", model, optimizer) if start else {"step": 0}

    def batches(epoch, skip):
        sampler.set_position(epoch, skip)
        return torch.utils.data.DataLoader(DATA, batch_size=4, sampler=sampler,
                                           generator=torch.Generator().manual_seed(epoch))

    hooks = [ParamScheduler(optimizer, lr=cosine_schedule(0.1, 0.0, 18, warmup_steps=3)),
             MetricsWriter(output / "metrics.jsonl", every=1),
             Checkpointer(output / "checkpoint.pth", model, optimizer, period=4)]
    loop = TrainLoop(lambda b: torch.nn.functional.cross_entropy(model(b[0]), b[1]), optimizer, batches, epochs=3,
                     hooks=hooks, steps_per_epoch=sampler.batches_per_epoch(), start_step=state["step"],
                     max_steps=max_steps, model=model)
    loop.run()
    return model, loop


def test_a_run_stopped_part_way_through_an_epoch_resumes_to_the_same_parameters_bitwise(tmp_path):
    straight, _ = toy_run(tmp_path / "straight")
    stopped, loop = toy_run(tmp_path / "resumed", max_steps=8)  # inside the second epoch
    assert loop.step == 8 and not loop.completed
    assert torch.load(tmp_path / "resumed" / "checkpoint.pth", weights_only=False)["step"] == 8
    torch.manual_seed(123)  # the RNG the resume must not depend on
    resumed, loop = toy_run(tmp_path / "resumed", start=True)
    assert loop.completed and loop.step == 18
    for p, q in zip(resumed.state_dict().values(), straight.state_dict().values()):
        assert torch.equal(p, q)
    lines = [json.loads(line) for line in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()]
    assert lines == [json.loads(line) for line in (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == list(range(1, 19))
    assert not any(torch.equal(p, q) for p, q in zip(stopped.state_dict().values(), straight.state_dict().values()))
