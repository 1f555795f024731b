"""LARS (You et al. 2017) as in the SimSiam / MoCo v3 / MAE code: layer-wise trust ratio
eta * ||w|| / ||g + wd * w|| on weights with more than one dimension; biases and BN parameters (1-D) get
neither weight decay nor adaptation, the exclusion SimCLR and BYOL use (REFERENCE section 1)."""
import torch


class LARS(torch.optim.Optimizer):
    def __init__(self, params, lr=0.0, weight_decay=0.0, momentum=0.9, trust_coefficient=0.001):
        defaults = dict(lr=lr, weight_decay=weight_decay, momentum=momentum, trust_coefficient=trust_coefficient)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                update = p.grad
                if p.ndim > 1:  # not a bias or a BN parameter
                    update = update.add(p, alpha=group["weight_decay"])
                    param_norm, update_norm = torch.norm(p), torch.norm(update)
                    one = torch.ones_like(param_norm)
                    trust = torch.where(param_norm > 0.0, torch.where(
                        update_norm > 0, group["trust_coefficient"] * param_norm / update_norm, one), one)
                    update = update.mul(trust)
                state = self.state[p]
                if "mu" not in state:
                    state["mu"] = torch.zeros_like(p)
                state["mu"].mul_(group["momentum"]).add_(update)
                p.add_(state["mu"], alpha=-group["lr"])
        return loss
