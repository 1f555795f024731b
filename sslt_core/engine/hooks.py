"""Hooks of the loop that change the optimisation: parameter schedules, gradient clipping, epoch-end monitors.
The writers are in writer.py, the checkpointer in checkpoint.py."""
from sslt_core.engine.loop import HookBase
from sslt_core.engine.step import clip_grad_norm, clip_grad_per_parameter


class ParamScheduler(HookBase):
    """Sets each parameter group's lr (and weight decay) from schedule functions of the step (unit "step", before
    every step) or of the epoch (unit "epoch", before every epoch: MoCo's and SimSiam's adjust_learning_rate).

    lr(t): a group with fixed_lr=True keeps its initial_lr (SimSiam's predictor); others get lr(t) times their
    lr_scale (default 1: per-group rates, e.g. Barlow Twins' 0.2 for weights and 0.0048 for biases and BN as
    one schedule with two scales). weight_decay(t): groups with fixed_weight_decay=True keep theirs (DINO's
    unregularised biases and norms), others get weight_decay(t) times their wd_scale (default 1).
    The step's lr goes into loop.metrics["lr"] (what the metrics line and the progress bar show)."""

    def __init__(self, optimizer, lr=None, weight_decay=None, unit="step"):
        if unit not in ("step", "epoch"):
            raise ValueError(f"ParamScheduler unit {unit!r}: use 'step' or 'epoch'")
        self.optimizer, self.lr, self.weight_decay, self.unit = optimizer, lr, weight_decay, unit
        self.current = None

    def apply(self, t):
        if self.lr is not None:
            self.current = self.lr(t)
            for group in self.optimizer.param_groups:
                group["lr"] = group["initial_lr"] if group.get("fixed_lr") else self.current * group.get(
                    "lr_scale", 1.0)
        if self.weight_decay is not None:
            decay = self.weight_decay(t)
            for group in self.optimizer.param_groups:
                if not group.get("fixed_weight_decay"):
                    group["weight_decay"] = decay * group.get("wd_scale", 1.0)

    def before_epoch(self, loop):
        if self.unit == "epoch":
            self.apply(loop.epoch)

    def before_step(self, loop):
        if self.unit == "step":
            self.apply(loop.step)

    def after_step(self, loop):
        if self.lr is not None:
            loop.metrics["lr"] = self.current


class GradientClipper(HookBase):
    """Clip the gradients after backward: mode "norm", their global l2 norm at most max_norm (clip_grad_norm_);
    mode "per_parameter", each parameter's own norm (DINO's clip_gradients, --clip_grad 3.0)."""

    def __init__(self, max_norm, mode="norm"):
        if mode not in ("norm", "per_parameter"):
            raise ValueError(f"GradientClipper mode {mode!r}: use 'norm' or 'per_parameter'")
        self.max_norm, self.mode = max_norm, mode

    def before_optimizer_step(self, loop):
        if self.mode == "norm":
            clip_grad_norm(loop.optimizer, self.max_norm)
        else:
            clip_grad_per_parameter(loop.optimizer, self.max_norm)


class EpochMonitor(HookBase):
    """monitor(loop) after every `every`-th complete epoch (where loop.summary is the dict to fill), when enabled
    (e.g. on rank 0 only): kNN accuracy, label-free diagnostics, collapse warnings."""

    def __init__(self, monitor, every=1, enabled=True):
        self.monitor, self.every, self.enabled = monitor, every, enabled

    def after_epoch(self, loop):
        if loop.summary is not None and self.enabled and self.every and (loop.epoch + 1) % self.every == 0:
            self.monitor(loop)


class StepCallbacks(HookBase):
    """A model's own hooks: before_optimizer_step(step index), after_step(step index) (SwAV freezing its
    prototypes, EMA targets)."""

    def __init__(self, before_optimizer_step=None, after_step=None):
        self.before, self.after = before_optimizer_step, after_step

    def before_optimizer_step(self, loop):
        if self.before is not None:
            self.before(loop.step)

    def after_step(self, loop):
        if self.after is not None:
            self.after(loop.step - 1)
