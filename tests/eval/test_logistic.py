"""The L-BFGS logistic regression against scikit-learn's LogisticRegression(solver="lbfgs") on the same features:
the objective (written out here in numpy), the weights and the test predictions, at several lambdas including
the two ends of the grid."""
import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from eval.logistic import LogisticProblem, lambda_grid, sklearn_c, sweep

N, D, K = 600, 10, 4


def data(seed=0, n=N):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(K, D))
    labels = rng.integers(0, K, n)
    return centres[labels] + 1.5 * rng.normal(size=(n, D)) + 3.0, labels  # overlapping classes, off-centre


def multinomial_objective(x, y, weight, bias, lam):
    """mean_i -log softmax(x_i W + b)[y_i] + lambda/2 ||W||^2."""
    z = x @ weight + bias
    z = z - z.max(1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(1, keepdims=True))
    return -log_p[np.arange(len(y)), y].mean() + lam / 2 * (weight ** 2).sum()


def test_lambda_grid_is_45_log_spaced_values_from_1e6_to_1e5():
    grid = lambda_grid()
    assert len(grid) == 45 and grid[0] == pytest.approx(1e-6) and grid[-1] == pytest.approx(1e5)
    assert np.allclose(np.diff(np.log10(grid)), 11 / 44)


@pytest.mark.parametrize("lam", [1e-6, 1e-3, 1.0, 1e5])
def test_lbfgs_reaches_scikit_learns_optimum(lam):
    x, y = data()
    test_x, _ = data(seed=1, n=400)
    fit = LogisticProblem(x, y, K, device="cpu").fit(lam, tolerance=1e-10, max_iter=5000)
    reference = LogisticRegression(solver="lbfgs", C=sklearn_c(lam, N), tol=1e-10, max_iter=10000).fit(x, y)
    ours = multinomial_objective(x, y, fit.weight.numpy(), fit.bias.numpy(), lam)
    theirs = multinomial_objective(x, y, reference.coef_.T, reference.intercept_, lam)
    assert abs(ours - theirs) / abs(theirs) <= 1e-6
    assert ours <= theirs + 1e-12  # never a worse optimum
    scale = np.abs(reference.coef_).max()
    np.testing.assert_allclose(fit.weight.numpy(), reference.coef_.T, rtol=1e-3, atol=1e-4 * scale)
    # softmax ignores a constant added to every bias: compare them centred
    np.testing.assert_allclose(fit.bias.numpy() - fit.bias.numpy().mean(), reference.intercept_ -
                               reference.intercept_.mean(), atol=1e-4)
    predictions = fit.scores(test_x).argmax(1).numpy()
    assert np.mean(predictions == reference.predict(test_x)) >= 0.995


def test_float32_on_the_same_problem_reaches_the_optimum_to_float32_precision():
    x, y = data()
    lam = 1e-3
    fit = LogisticProblem(x, y, K, device="cpu", dtype=torch.float32).fit(lam, tolerance=1e-5)
    reference = LogisticRegression(C=sklearn_c(lam, N), tol=1e-10, max_iter=10000).fit(x, y)
    ours = multinomial_objective(x, y, fit.weight.double().numpy(), fit.bias.double().numpy(), lam)
    theirs = multinomial_objective(x, y, reference.coef_.T, reference.intercept_, lam)
    assert abs(ours - theirs) / theirs <= 1e-5


@pytest.mark.parametrize("lam", [1e-6, 1e-2, 1e5])
def test_binary_classifiers_match_one_scikit_learn_fit_per_class_without_difficult_images(lam):
    x, y = data()
    rng = np.random.default_rng(3)
    targets = np.where(np.eye(K)[y] > 0, 1, -1).astype(np.int8)
    targets[rng.random(targets.shape) < 0.1] = 0  # difficult: out of that class's loss
    fit = LogisticProblem(x, targets, K, binary=True, device="cpu").fit(lam, tolerance=1e-10, max_iter=5000)
    for c in range(K):
        keep = targets[:, c] != 0
        n_c = int(keep.sum())
        reference = LogisticRegression(C=sklearn_c(lam, n_c), tol=1e-10, max_iter=10000).fit(
            x[keep], targets[keep, c] > 0)
        w, b = fit.weight[:, c].numpy(), float(fit.bias[c])
        s = np.where(targets[keep, c] > 0, 1.0, -1.0)

        def objective(w, b, s=s, x=x[keep]):  # mean_i log(1 + exp(-s_i (x_i w + b))) + lambda/2 ||w||^2
            return np.logaddexp(0, -s * (x @ w + b)).mean() + lam / 2 * (w ** 2).sum()

        ours, theirs = objective(w, b), objective(reference.coef_[0], reference.intercept_[0])
        assert abs(ours - theirs) / theirs <= 1e-6
        np.testing.assert_allclose(w, reference.coef_[0], rtol=1e-3, atol=1e-4 * np.abs(reference.coef_).max())


def test_warm_started_sweep_reaches_each_lambdas_cold_optimum_and_ties_go_to_the_larger_lambda():
    x, y = data()
    problem = LogisticProblem(x, y, K, device="cpu")
    lambdas = lambda_grid(6)
    fits = {}

    def score(fit):
        fits[fit.lam] = fit
        return 1.0  # every lambda ties

    best, rows = sweep(problem, lambdas, score, tolerance=1e-9)
    assert best.lam == lambdas.max() and [r[0] for r in rows] == list(lambdas)
    for lam in lambdas:
        cold = problem.fit(lam, tolerance=1e-9)
        assert fits[lam].objective == pytest.approx(cold.objective, rel=1e-8)
