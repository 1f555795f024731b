"""Linear SVMs on frozen features, scored by VOC's all-point average precision (Goyal et al. 2019, sec. 5 and
app. B; fair_self_supervision_benchmark tools/svm/, VISSL vissl/utils/svm_utils/).

Labels are VOC's (eval/voc_features.py): 1 present, -1 absent, 0 difficult only.
- Full SVM (train_svm_kfold.py): one LinearSVC per class (squared hinge, L2, dual, class_weight {1: 2, -1: 1},
  tol 1e-4, max_iter 2000); difficult-only images are negatives in training (the original maps 0 to -1); the cost
  per class by k-fold cross-validation on trainval (StratifiedKFold without shuffling, cross_val_score's cv=3),
  scored with scikit-learn's average precision ("average_precision", as the original), the first cost of the
  best mean score; refit on all of trainval.
- Test (test_svm.py, get_precision_recall): difficult-only images are left out per class; AP is the all-point
  interpolated AP of the VOC2010+ devkit (not 11-point); mAP is the mean over classes with a positive.
- Low-shot (create_voc07_low_shot_samples.py, SVMLowShotTrainer): per class k positives and (C - 1) * k
  negatives drawn among its present / absent images (difficult-only ones are never drawn), each class on its
  own; no cross-validation: every cost is trained and tested, and the cost with the best mean test mAP over the
  samples is reported (a choice made on the test set, as the original does).

Classes are independent and are trained in parallel (joblib). Note: LinearSVC (liblinear) has no warm start, so
each cost is a fit from zero; the folds' float64 copies are made once per class and shared by the costs.
Note: liblinear's coordinate descent visits samples in a random order; random_state fixes it (the original left
it unseeded).
"""
import warnings

import numpy as np
from joblib import Parallel, delayed
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import average_precision_score
from sklearn.model_selection import StratifiedKFold
from sklearn.svm import LinearSVC

from sslt_core.errors import ConfigError, DatasetError

# Goyal et al. app. B: 1e-7 ... 1e2 and 0.5^4 ... 0.5^19 (26 values), in this order (ties go to the first).
COSTS = tuple(10.0 ** e for e in range(-7, 3)) + tuple(0.5 ** e for e in range(4, 20))
LOW_SHOT_K = (1, 2, 4, 8, 16, 32, 64, 96)
SVM_OPTIONS = dict(class_weight={1: 2, -1: 1}, penalty="l2", loss="squared_hinge", dual=True, tol=1e-4,
                   max_iter=2000, intercept_scaling=1.0)


def linear_svc(cost, seed=0):
    return LinearSVC(C=cost, random_state=seed, **SVM_OPTIONS)


def voc_ap(scores, labels):
    """All-point interpolated AP (VOC2010+ devkit, VOCevalcls.m) of `scores` for `labels` in {1, -1, 0}: 0 is
    left out; None without a positive. Ties are ranked in the given order (a stable sort), as the devkit does."""
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels)
    keep = labels != 0
    scores, hits = scores[keep], labels[keep] > 0
    if not hits.any():
        return None
    hits = hits[np.argsort(-scores, kind="stable")]
    tp = np.cumsum(hits)
    recall, precision = tp / hits.sum(), tp / np.arange(1, len(hits) + 1)
    envelope = np.maximum.accumulate(precision[::-1])[::-1]  # the best precision at this recall or beyond
    return float(np.sum(np.diff(np.concatenate([[0.0], recall])) * envelope))


def mean_ap(aps):
    """100 x the mean of the defined APs (None where none is)."""
    values = [a for a in aps if a is not None]
    return 100.0 * float(np.mean(values)) if values else None


def full_training_labels(column):
    """A class's training targets: 1 present, -1 absent or difficult only (the original's 0 -> -1)."""
    return np.where(np.asarray(column) > 0, 1, -1)


def _fit(x, y, cost, seed):
    """(model, converged) of one LinearSVC fit."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        model = linear_svc(cost, seed).fit(x, y)
    return model, not any(issubclass(w.category, ConvergenceWarning) for w in caught)


def cv_scores(x, y, costs, folds, seed=0):
    """[len(costs), len(folds)] sklearn average precision of the held-out fold, for each cost (as GridSearchCV
    with scoring="average_precision"), and the number of fits that did not converge."""
    x = np.asarray(x, dtype=np.float64)
    parts = [(x[train], y[train], x[test], y[test]) for train, test in folds]  # copied once for every cost
    scores, unconverged = np.zeros((len(costs), len(folds))), 0
    for i, cost in enumerate(costs):
        for j, (x_train, y_train, x_test, y_test) in enumerate(parts):
            model, converged = _fit(x_train, y_train, cost, seed)
            scores[i, j] = average_precision_score(y_test, model.decision_function(x_test))
            unconverged += not converged
    return scores, unconverged


def _full_class(x, column, test_x, test_column, costs, n_folds, seed):
    y = full_training_labels(column)
    counts = (int((y > 0).sum()), int((y < 0).sum()))
    if min(counts) < n_folds:
        return {"ap": None, "cost": None, "note": f"{counts[0]} positives and {counts[1]} negatives in training, "
                                                  f"fewer than the {n_folds} folds need"}
    folds = list(StratifiedKFold(n_splits=n_folds).split(x, y))
    scores, unconverged = cv_scores(x, y, costs, folds, seed)
    best = int(np.argmax(scores.mean(axis=1)))  # the first of the best, as GridSearchCV's rank 1
    model, converged = _fit(np.asarray(x, dtype=np.float64), y, costs[best], seed)
    return {"ap": voc_ap(model.decision_function(test_x), test_column), "cost": costs[best],
            "cv_ap": float(scores[best].mean()), "positives": counts[0],
            "unconverged": unconverged + (not converged)}


def check_costs(costs):
    if not costs or any(not (c > 0 and np.isfinite(c)) for c in costs):
        raise ConfigError(f"SVM costs must be positive finite numbers, got {list(costs)}")


def full_svm(train_x, train_labels, test_x, test_labels, costs=COSTS, folds=3, jobs=1, seed=0):
    """{"map": 100 x mAP, "classes": [per class: ap, cost, cv_ap, positives, unconverged (or a note)]} of one
    layer: a LinearSVC per class, its cost by `folds`-fold CV on the training split, refit, scored on test."""
    check_costs(costs)
    if train_labels.shape[1] != test_labels.shape[1]:
        raise DatasetError(f"{train_labels.shape[1]} training classes but {test_labels.shape[1]} test classes")
    per_class = Parallel(n_jobs=jobs)(
        delayed(_full_class)(train_x, train_labels[:, c], test_x, test_labels[:, c], tuple(costs), folds, seed)
        for c in range(train_labels.shape[1]))
    return {"map": mean_ap([r["ap"] for r in per_class]), "classes": per_class}


def low_shot_sample(labels, k, rng):
    """Training targets [N, C] of one low-shot sample: per class k of its positives (1) and (C - 1) * k of its
    absent images (-1) drawn without replacement, every other entry 0 (not used; difficult-only images never
    are). Where a class has fewer, all of them are taken; `capped` lists those (class, wanted, had)."""
    labels = np.asarray(labels)
    targets, capped = np.zeros(labels.shape, dtype=np.int8), []
    for c in range(labels.shape[1]):
        for value, wanted in ((1, k), (-1, (labels.shape[1] - 1) * k)):
            pool = np.flatnonzero(labels[:, c] == value)
            if len(pool) < wanted:
                capped.append((c, int(value), wanted, len(pool)))
            targets[rng.choice(pool, size=min(wanted, len(pool)), replace=False), c] = value
    return targets, capped


def _low_shot_class(x, targets, test_x, test_column, costs, seed):
    """Test AP of each cost, the class trained on its sampled images only; None for all without both kinds."""
    used = np.flatnonzero(targets != 0)
    y = targets[used].astype(np.int64)
    if not ((y > 0).any() and (y < 0).any()):
        return [None] * len(costs), 0
    x = np.asarray(x[used], dtype=np.float64)
    aps, unconverged = [], 0
    for cost in costs:
        model, converged = _fit(x, y, cost, seed)
        aps.append(voc_ap(model.decision_function(test_x), test_column))
        unconverged += not converged
    return aps, unconverged


def low_shot(train_x, train_labels, test_x, test_labels, ks=LOW_SHOT_K, seeds=range(5), costs=COSTS, jobs=1,
             svm_seed=0):
    """{k: {"map": [samples][costs] 100 x test mAP, "cost", "per_sample": mAP at that cost, "capped"}} of one
    layer: for each k and seed a sample (low_shot_sample, drawn from default_rng([seed, k])), every cost trained
    and tested; the cost is the argmax of the mean over the samples (selected on test, as the original)."""
    check_costs(costs)
    costs, out = tuple(costs), {}
    with Parallel(n_jobs=jobs) as parallel:
        for k in ks:
            maps, capped, unconverged = [], [], 0
            for seed in seeds:
                targets, short = low_shot_sample(train_labels, k, np.random.default_rng([seed, k]))
                capped += [(seed, *s) for s in short]
                per_class = parallel(delayed(_low_shot_class)(train_x, targets[:, c], test_x, test_labels[:, c],
                                                              costs, svm_seed) for c in range(train_labels.shape[1]))
                unconverged += sum(n for _, n in per_class)
                maps.append([mean_ap([aps[i] for aps, _ in per_class]) for i in range(len(costs))])
            table = np.array([[np.nan if v is None else v for v in row] for row in maps])
            mean = np.nanmean(table, axis=0) if np.isfinite(table).any() else np.full(len(costs), np.nan)
            best = int(np.nanargmax(mean)) if np.isfinite(mean).any() else None
            out[k] = {"map": maps, "cost": None if best is None else costs[best],
                      "per_sample": [None if best is None else row[best] for row in maps],
                      "capped": capped, "unconverged": unconverged}
    return out
