"""Layer-wise adaptive learning rates: LARS and LARC (You et al. 2017).

- LARS, as in the SimSiam / MoCo v3 / MAE code: trust ratio eta * ||w|| / ||g + wd * w|| on weights with more
  than one dimension; biases and BN parameters (1-D) get neither weight decay nor adaptation, the exclusion
  SimCLR and BYOL use.
- LARC, as NVIDIA apex's `LARC(clip=False)` that SwAV's main_swav.py wraps around SGD: every parameter, BN and
  bias included, is decayed and adapted, trust = eta * ||w|| / (||g|| + wd * ||w|| + 1e-8), and a parameter whose
  weight or gradient norm is 0 keeps its plain gradient (no decay, no adaptation).
Both then take an SGD step with momentum: mu <- m * mu + update; w <- w - lr * mu (PyTorch's form, as the
SimSiam, MoCo v3 and SwAV codes and BYOL's optax chain run it), or with `lr_in_momentum`, mu <- m * mu + lr * update;
w <- w - mu (TensorFlow's MomentumOptimizer, as SimCLR's LARS runs it; the two differ while the lr changes).
"""
import torch


class _Adaptive(torch.optim.Optimizer):
    def __init__(self, params, lr=0.0, weight_decay=0.0, momentum=0.9, trust_coefficient=0.001, lr_in_momentum=False):
        defaults = dict(lr=lr, weight_decay=weight_decay, momentum=momentum, trust_coefficient=trust_coefficient,
                        lr_in_momentum=lr_in_momentum)
        super().__init__(params, defaults)

    def update(self, p, group):
        raise NotImplementedError

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
                update = self.update(p, group)
                state = self.state[p]
                if "mu" not in state:
                    state["mu"] = torch.zeros_like(p)
                if group["lr_in_momentum"]:
                    state["mu"].mul_(group["momentum"]).add_(update, alpha=group["lr"])
                    p.sub_(state["mu"])
                else:
                    state["mu"].mul_(group["momentum"]).add_(update)
                    p.add_(state["mu"], alpha=-group["lr"])
        return loss


class LARS(_Adaptive):
    def update(self, p, group):
        update = p.grad
        if p.ndim > 1:  # not a bias or a BN parameter
            update = update.add(p, alpha=group["weight_decay"])
            param_norm, update_norm = torch.norm(p), torch.norm(update)
            one = torch.ones_like(param_norm)
            trust = torch.where(param_norm > 0.0, torch.where(
                update_norm > 0, group["trust_coefficient"] * param_norm / update_norm, one), one)
            update = update.mul(trust)
        return update


class LARC(_Adaptive):
    EPS = 1e-8  # apex LARC's eps

    def update(self, p, group):
        param_norm, grad_norm = torch.norm(p), torch.norm(p.grad)
        decay = group["weight_decay"]
        trust = group["trust_coefficient"] * param_norm / (grad_norm + param_norm * decay + self.EPS)
        adapted = p.grad.add(p, alpha=decay).mul(trust)
        return torch.where((param_norm != 0) & (grad_norm != 0), adapted, p.grad)
