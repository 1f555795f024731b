"""l2-regularised logistic regression by full-batch L-BFGS on torch (the GPU when there is one), warm-started along
the lambda path: the classifier of the 12-dataset linear transfer (Kornblith, Shlens & Le 2019; SimCLR app. B.8;
BYOL app. D).

The lambda convention (the papers'): the loss is averaged over the samples, the bias is not regularised,

    multinomial:  f(W, b) = 1/n sum_i -log softmax(x_i W + b)[y_i]                   + lambda/2 ||W||^2
    binary (one classifier per class c, VOC2007; n_c = the samples labelled for c, difficult ones left out):
                  f_c(w, b) = 1/n_c sum_i log(1 + exp(-s_ic (x_i w + b)))  s_ic = +-1  + lambda/2 ||w||^2

scikit-learn's LogisticRegression(C) minimises C * sum_i loss_i + 1/2 ||W||^2 = C n f, the same minimiser when
C = 1 / (lambda * n) (sklearn_c below). The grid: 45 values log-spaced in [1e-6, 1e5].
"""
import math
from dataclasses import dataclass

import numpy as np
import torch

# The line search only: torch.optim's LBFGS class imports torch._dynamo on first use (3 s); its Wolfe search is a
# plain function.
from torch.optim.lbfgs import _strong_wolfe

LAMBDA_RANGE = (1e-6, 1e5)
GRID_SIZE = 45
# L-BFGS also stops when the objective or the step changes by less than this (rounding: no progress possible)
TOLERANCE_CHANGE = {torch.float64: 1e-14, torch.float32: 1e-7}  # relative


def lambda_grid(count=GRID_SIZE):
    """`count` values log-spaced in [1e-6, 1e5], both ends included (count 1: the middle, 10^-0.5)."""
    low, high = np.log10(LAMBDA_RANGE)
    return np.logspace(low, high, count) if count > 1 else np.array([10 ** ((low + high) / 2)])


def sklearn_c(lam, n):
    """scikit-learn's C for lambda on n samples (the same optimum: C * sum = lambda^-1 * mean)."""
    return 1.0 / (lam * n)


@dataclass
class Fit:
    weight: torch.Tensor  # [D, C] (binary: one column per class)
    bias: torch.Tensor  # [C]
    lam: float
    objective: float
    iterations: int
    grad_max: float  # max |gradient| at the end: the convergence reached

    def scores(self, x):
        """[N, C] logits (binary: each class's decision value)."""
        x = torch.as_tensor(x, dtype=self.weight.dtype, device=self.weight.device)
        return x @ self.weight + self.bias


class LogisticProblem:
    """The data of one problem on one device; `objective(theta, lam)` -> (f, gradient), theta = [W; b] ([D+1, C]).

    multinomial: `targets` are class indices [N]; binary: `targets` is [N, C] of 1 (positive), -1 (negative) and
    0 (difficult: left out of class c's loss)."""

    def __init__(self, x, targets, num_classes, binary=False, device=None, dtype=torch.float64):
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.dtype, self.binary, self.num_classes = dtype, binary, num_classes
        x = torch.as_tensor(np.asarray(x), device=self.device).to(dtype)
        # Centred features: the same minimiser (the bias absorbs the shift, b = b' - mean @ W) but the bias no
        # longer couples with W, which conditions the problem far better at large lambda.
        self.mean = x.mean(0)
        self.x = x - self.mean
        # the loss's curvature in W is at most 1/4 (binary) or 1/2 (softmax) of the features' second moment
        self.curvature = 0.25 * float((self.x * self.x).sum(1).mean())
        targets = torch.as_tensor(np.asarray(targets), device=self.device)
        if binary:
            self.mask = (targets != 0).to(dtype)
            self.positive = (targets > 0).to(dtype)
            counts = self.mask.sum(0)
            if (counts == 0).any():
                raise ValueError("a class has no labelled sample; it cannot be trained")
            self.weights = self.mask / counts  # 1/n_c on each labelled sample of class c
        else:
            self.labels = targets.long()
            self.onehot = torch.nn.functional.one_hot(self.labels, num_classes).to(dtype)

    def zeros(self):
        return torch.zeros(self.x.shape[1] + 1, self.num_classes, dtype=self.dtype, device=self.device)

    def objective(self, theta, lam):
        weight, bias = theta[:-1], theta[-1]
        z = self.x @ weight + bias
        if self.binary:  # log(1 + exp(-s z)) with s = 2 y - 1; its derivative in z: sigmoid(z) - y
            signed = torch.where(self.positive > 0, z, -z)
            loss = (self.weights * torch.nn.functional.softplus(-signed)).sum()
            dz = self.weights * (torch.sigmoid(z) - self.positive)
        else:
            z = z - z.max(1, keepdim=True).values  # softmax is shift-invariant: one exp, no overflow
            e = torch.exp(z)
            total = e.sum(1, keepdim=True)
            loss = (torch.log(total)[:, 0] - z.gather(1, self.labels[:, None])[:, 0]).mean()
            dz = (e / total - self.onehot) / len(z)
        value = loss + lam / 2 * (weight * weight).sum()
        grad = torch.empty_like(theta)
        torch.mm(self.x.T, dz, out=grad[:-1])
        grad[:-1] += lam * weight
        grad[-1] = dz.sum(0)
        return value, grad

    def fit(self, lam, start=None, max_iter=1000, tolerance=1e-6, history=20):
        """The minimiser for `lam` by L-BFGS (two-loop recursion, strong Wolfe line search: torch's) from `start`
        (a previous Fit, on these or other features: the warm start) or zeros. It runs on u = theta / scale, with
        W's scale 1 / sqrt(lambda + curvature): the same minimiser, a Hessian near 1 whatever lambda (the
        large-lambda end of the grid is otherwise ill-conditioned against the unregularised bias). It stops when
        max |gradient| <= tolerance (scikit-learn's gtol), when the objective stops changing
        (rounding), or after max_iter iterations."""
        shape = (self.x.shape[1] + 1, self.num_classes)
        scale = torch.ones(shape, dtype=self.dtype, device=self.device)
        scale[:-1] = 1 / math.sqrt(lam + self.curvature)
        scale = scale.reshape(-1)

        def objective(u):  # flat vectors, as the line search takes them
            value, grad = self.objective((u * scale).reshape(shape), lam)
            return float(value), grad.reshape(-1) * scale

        theta = self.zeros() if start is None else torch.cat([start.weight,
                                                              (start.bias + self.mean @ start.weight)[None]])
        u = theta.reshape(-1) / scale
        value, grad = objective(u)
        steps, changes, iterations = [], [], 0
        while iterations < max_iter and float((grad / scale).abs().max()) > tolerance:  # theta's gradient
            direction = -grad
            alphas = []
            for step, change, rho in reversed(list(zip(steps, changes, (1 / float((c * s).sum()) for s, c in
                                                                          zip(steps, changes))))):
                alpha = rho * float((step * direction).sum())
                direction -= alpha * change
                alphas.append((alpha, step, change, rho))
            if steps:  # the initial Hessian s'y / y'y (Nocedal & Wright 7.20)
                direction *= float((steps[-1] * changes[-1]).sum() / (changes[-1] * changes[-1]).sum())
            for alpha, step, change, rho in reversed(alphas):
                direction += (alpha - rho * float((change * direction).sum())) * step
            slope = float((grad * direction).sum())
            if slope > -1e-30:  # not a descent direction (rounding): start the memory again
                steps, changes, direction = [], [], -grad
                slope = float((grad * direction).sum())
            t = 1.0 if iterations else min(1.0, 1.0 / float(grad.abs().sum()))

            def along(x, t, d):
                f, g = objective(x + t * d)
                return f, g

            new_value, new_grad, t, _ = _strong_wolfe(along, u, t, direction, value, grad, slope,
                                                      tolerance_change=TOLERANCE_CHANGE[self.dtype])
            iterations += 1
            step = t * direction
            u = u + step
            change = new_grad - grad
            if float((change * step).sum()) > 1e-10 * float((step * step).sum()):  # keeps H positive definite
                steps, changes = (steps + [step])[-history:], (changes + [change])[-history:]
            done = abs(new_value - value) <= TOLERANCE_CHANGE[self.dtype] * max(1.0, abs(value))
            value, grad = new_value, new_grad
            if done or float(step.abs().max()) <= TOLERANCE_CHANGE[self.dtype]:
                break
        theta = (u * scale).reshape(shape)
        weight = theta[:-1].clone()
        return Fit(weight, theta[-1] - self.mean @ weight, float(lam), value, iterations,
                   float((grad / scale).abs().max()))


def sweep(problem, lambdas, score, max_iter=1000, tolerance=1e-6):
    """Fit every lambda of `lambdas`, largest first, each warm-started from the previous solution; `score(fit)` ->
    the validation score (higher is better). Returns (best fit, [(lambda, score, iterations)] in the grid's
    order); a tie goes to the larger lambda (the first one met)."""
    best, best_score, rows, fit = None, -np.inf, {}, None
    for lam in sorted(lambdas, reverse=True):
        fit = problem.fit(lam, start=fit, max_iter=max_iter, tolerance=tolerance)
        value = score(fit)
        rows[lam] = (float(lam), float(value), fit.iterations)
        if value > best_score:
            best, best_score = fit, value
    return best, [rows[lam] for lam in lambdas]
