"""Time the whole 45-lambda sweep of the linear transfer (eval/logistic.py) against scikit-learn on the same
features; print the ratio and both test accuracies.

    python benchmarks/logistic_sweep.py                 # 20k x 2048 train, 100 classes (the issue's size)
    python benchmarks/logistic_sweep.py --quick         # 4k x 256, 20 classes: a minute on 2 cores

Both solve the same problem with the same stopping rule (max |gradient| <= --tol on the mean loss + lambda/2
||W||^2, at most --max-iter iterations per lambda): ours warm-started along the path from the largest lambda,
scikit-learn's LogisticRegression(solver="lbfgs", C=1/(lambda n)) from zeros for each lambda as the papers'
scripts fit it (--sklearn-warm: with its warm_start too). Each selects lambda on the validation split and
reports the test accuracy of that lambda's fit. On a machine with a GPU the GPU sweep (fp32) is timed as well.
"""
import argparse
import time

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from eval.logistic import LogisticProblem, lambda_grid, sklearn_c, sweep


def features(n, dim, classes, rng, centres):
    labels = rng.integers(0, classes, n)
    x = np.maximum(centres[labels] + 1.5 * rng.normal(size=(n, dim)), 0)  # non-negative, as pooled ReLU features
    return x.astype(np.float32), labels


def accuracy(predictions, labels):
    return 100.0 * float(np.mean(predictions == labels))


def ours(train, val, test, classes, lambdas, args, device, dtype):
    problem = LogisticProblem(*train, classes, device=device, dtype=dtype)
    val_x = torch.as_tensor(val[0], device=problem.device, dtype=dtype)

    def score(fit):
        return accuracy(fit.scores(val_x).argmax(1).cpu().numpy(), val[1])

    if problem.device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    best, rows = sweep(problem, lambdas, score, max_iter=args.max_iter, tolerance=args.tol)
    if problem.device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    test_acc = accuracy(best.scores(test[0]).argmax(1).cpu().numpy(), test[1])
    return seconds, best.lam, max(r[1] for r in rows), test_acc, sum(r[2] for r in rows)


def scikit(train, val, test, lambdas, args):
    start, best, model = time.perf_counter(), (-1, None, None), None
    iterations = 0
    for lam in sorted(lambdas, reverse=True):
        model = model if args.sklearn_warm and model is not None else LogisticRegression(
            solver="lbfgs", tol=args.tol, max_iter=args.max_iter, warm_start=args.sklearn_warm)
        model.set_params(C=sklearn_c(lam, len(train[1])))
        model.fit(*train)
        iterations += int(model.n_iter_.max())
        score = accuracy(model.predict(val[0]), val[1])
        if score > best[0]:
            best = (score, lam, accuracy(model.predict(test[0]), test[1]))
    return time.perf_counter() - start, best[1], best[0], best[2], iterations


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=int, default=20000)
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--lambdas", type=int, default=45, help="grid size in [1e-6, 1e5]")
    parser.add_argument("--tol", type=float, default=1e-4, help="max |gradient| at which both stop "
                                                               "(scikit-learn's default)")
    parser.add_argument("--max-iter", type=int, default=1000)
    parser.add_argument("--sklearn-warm", action="store_true", help="scikit-learn warm-started along the path too")
    parser.add_argument("--threads", type=int, help="CPU threads of both (torch and scikit-learn's BLAS); default: "
                                                     "all; 1 gives stable figures on a shared machine")
    parser.add_argument("--quick", action="store_true", help="4000 x 256, 20 classes")
    args = parser.parse_args()
    if args.quick:
        args.train, args.dim, args.classes = 4000, 256, 20
    if args.threads:
        torch.set_num_threads(args.threads)
        threadpool_limits(args.threads)
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(args.classes, args.dim)) * 0.4
    train = features(args.train, args.dim, args.classes, rng, centres)
    val = features(args.train // 10, args.dim, args.classes, rng, centres)
    test = features(args.train // 4, args.dim, args.classes, rng, centres)
    lambdas = lambda_grid(args.lambdas)
    print(f"train {args.train} x {args.dim}, {args.classes} classes, {len(lambdas)} lambdas, tol {args.tol}, "
          f"{torch.get_num_threads()} CPU threads")
    rows = {"torch L-BFGS cpu fp64": ours(train, val, test, args.classes, lambdas, args, "cpu", torch.float64)}
    if torch.cuda.is_available():
        for dtype in (torch.float32, torch.float64):
            name = f"torch L-BFGS {torch.cuda.get_device_name()} {str(dtype)[6:]}"
            rows[name] = ours(train, val, test, args.classes, lambdas, args, "cuda", dtype)
    rows["scikit-learn lbfgs" + (" warm" if args.sklearn_warm else "")] = scikit(train, val, test, lambdas, args)
    print(f"{'solver':<44} {'seconds':>9} {'lambda':>9} {'val':>7} {'test':>7} {'iters':>7}")
    for name, (seconds, lam, val_acc, test_acc, iterations) in rows.items():
        print(f"{name:<44} {seconds:9.2f} {lam:9.2e} {val_acc:7.2f} {test_acc:7.2f} {iterations:7d}")
    reference = rows[next(k for k in rows if k.startswith("scikit"))][0]
    for name, row in rows.items():
        if not name.startswith("scikit"):
            print(f"{name}: {reference / row[0]:.2f}x scikit-learn's speed")


if __name__ == "__main__":
    main()
