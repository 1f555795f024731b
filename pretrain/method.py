"""What every method provides to the training loop (pretrain/loop.py on sslt_core/engine)."""
import torch
from torch import nn


class Method(nn.Module):
    """A self-supervised method: `encoder` is the backbone that gets exported.

    forward(views) -> {"loss": scalar, "embedding": [B, d] output whose collapse is monitored}
    """

    encoder: nn.Module
    view_recipes: tuple = ()
    negative_pairs: bool = False  # SimSiam's Table 4 lists these two traits of every method
    momentum_encoder: bool = False

    def param_groups(self):
        """Optimizer parameter groups; a group with fixed_lr=True keeps its initial lr (SimSiam's predictor)."""
        return [{"params": [p for p in self.parameters() if p.requires_grad]}]

    def prepare(self, train_cfg, steps_per_epoch):
        """Called once the data and the number of processes are known (schedules given in epochs, queue sizes);
        raises ConfigError for a training setting the method cannot run with; returns what it decided that the
        log must say."""
        return []

    def before_optimizer_step(self, step):
        """After backward, before the update (SwAV freezes its prototypes here)."""

    def on_step_end(self, step, total_steps):
        """After the update (EMA and momentum targets, k-step targets)."""

    def rank_state(self):
        """State that differs between processes and is not in state_dict() (SwAV's queue): saved per rank."""
        return {}

    def load_rank_state(self, state):
        """Restore what rank_state() returned."""

    def collapse_warning(self, epoch_loss, output_std, dim):
        """A message when the monitors show collapse, else None."""
        if output_std < 0.1 / dim ** 0.5:
            return (f"output std {output_std:.4f} is near 0 (healthy: about 1/sqrt({dim}) = {1 / dim ** 0.5:.4f}): "
                    "the representation has collapsed")
        return None


def output_std(embedding):
    """Mean over channels of the per-channel std of the l2-normalised output (SimSiam sec. 4.1, Fig. 2)."""
    with torch.no_grad():
        return torch.nn.functional.normalize(embedding.float(), dim=1).std(dim=0).mean().item()
