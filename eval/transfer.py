"""The linear transfer protocol of one dataset (Kornblith et al. 2019; SimCLR app. B.8; BYOL app. D) on frozen
features: the validation split, the lambda sweep on it (eval/logistic.py), the retraining on train + val with the
chosen lambda, and the one score on test with the dataset's metric.

Metrics: top-1 (%), mean per-class accuracy (%: the mean over the test classes of each class's accuracy), and
VOC2007's 11-point mAP (%: the VOC2007 devkit's AP, the mean over recall thresholds 0, 0.1, ..., 1 of the highest
precision at a recall >= the threshold, images labelled difficult (0) for a class left out of that class's AP).
"""
import numpy as np
import torch
from torchvision import transforms

from eval.logistic import LogisticProblem, sklearn_c, sweep
from sslt_core.errors import DatasetError
from sslt_core.images import IMAGENET_MEAN, IMAGENET_STD, load_rgb


def top1(predictions, labels):
    return 100.0 * float(np.mean(np.asarray(predictions) == np.asarray(labels)))


def mean_per_class_accuracy(predictions, labels):
    predictions, labels = np.asarray(predictions), np.asarray(labels)
    return 100.0 * float(np.mean([np.mean(predictions[labels == c] == c) for c in np.unique(labels)]))


def average_precision_11(scores, labels):
    """VOC2007's 11-point AP of one class: `labels` 1 / -1 / 0 (difficult: left out)."""
    keep = labels != 0
    scores, positive = scores[keep], labels[keep] > 0
    if not positive.any():
        return None
    order = np.argsort(-scores, kind="stable")
    hits = positive[order]
    recall = np.cumsum(hits) / positive.sum()
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float(np.mean([precision[recall >= t].max() if (recall >= t).any() else 0.0
                          for t in np.linspace(0, 1, 11)]))


def map11(scores, labels):
    """11-point mAP (%) over the classes that have a positive."""
    aps = [average_precision_11(scores[:, c], labels[:, c]) for c in range(labels.shape[1])]
    aps = [a for a in aps if a is not None]
    return 100.0 * float(np.mean(aps)) if aps else None


def score(metric, scores, labels):
    """The dataset's metric of classifier `scores` [N, C] against `labels`."""
    if metric == "map11":
        return map11(scores, labels)
    predictions = scores.argmax(1)
    return top1(predictions, labels) if metric == "top1" else mean_per_class_accuracy(predictions, labels)


def held_out(labels, validation, seed):
    """(train indices, validation indices) of a train split without an official validation split: BYOL's count
    (scaled by the train split's size against the paper's where they differ), or `per_class` of each class;
    drawn with `seed`. Returns a note when the count is not the paper's."""
    rng = np.random.default_rng(seed)
    n, note = len(labels), ""
    if validation.per_class:
        val = []
        for c in np.unique(labels):
            members = np.flatnonzero(labels == c)
            if len(members) <= validation.per_class:
                raise DatasetError(f"class {c} has {len(members)} training images; holding out "
                                   f"{validation.per_class} for validation needs more")
            val += list(rng.permutation(members)[:validation.per_class])
        val = np.sort(np.array(val, dtype=np.int64))
    else:
        count = validation.count
        if n != validation.paper_train:
            count = max(1, round(n * validation.count / validation.paper_train))
            note = (f"{count} validation images held out of {n} ({validation.count} of {validation.paper_train} "
                    "in the paper)")
        if count >= n:
            raise DatasetError(f"the train split has {n} images, too few to hold out {count} for validation")
        val = np.sort(rng.permutation(n)[:count])
    return np.setdiff1d(np.arange(n), val), val, note


def per_class_sample(labels, per_class, seed):
    """(sampled, rest) indices: `per_class` of each class drawn with `seed` (Caltech-101's 30 training images)."""
    rng = np.random.default_rng(seed)
    chosen = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        if len(members) <= per_class:
            raise DatasetError(f"class {c} has {len(members)} images; the protocol samples {per_class} for training "
                               "and tests on the rest, so it needs more")
        chosen += list(rng.permutation(members)[:per_class])
    chosen = np.sort(np.array(chosen, dtype=np.int64))
    return chosen, np.setdiff1d(np.arange(len(labels)), chosen)


def transfer_transform(size):
    """SimCLR's: the shorter side resized to `size` (bicubic), centre crop, no augmentation."""
    return transforms.Compose([
        transforms.Resize(size, interpolation=transforms.InterpolationMode.BICUBIC),
        transforms.CenterCrop(size),
        transforms.ToTensor(),
        transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])


class ImageList(torch.utils.data.Dataset):
    """Images by path; `samples` = [(path, position)] as the feature cache keys them (features do not depend on
    labels, so the position stands for the label: the cache checks order and count)."""

    def __init__(self, root, paths, transform):
        self.root, self.transform = root, transform
        self.samples = [(str(p), i) for i, p in enumerate(paths)]

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, index):
        return self.transform(load_rgb(self.samples[index][0])), index


class ArrayImages(ImageList):
    """Decoded uint8 [N, H, W, 3] images (CIFAR), keyed for the cache by the content of the files they came from."""

    def __init__(self, root, arrays, sources, transform):
        from PIL import Image

        self.root, self.transform, self.arrays, self.sources = root, transform, arrays, sources
        self.image = Image.fromarray
        self.samples = [(f"{sources[0]}#{i}", i) for i in range(len(arrays))]

    def __getitem__(self, index):
        return self.transform(self.image(self.arrays[index])), index

    def fingerprint(self):
        from sslt_core.fingerprint import file_digest

        return "|".join(f"{s}:{file_digest(s)}" for s in self.sources)


def fit_and_score(train, val, test, metric, num_classes, lambdas, max_iter=1000, tolerance=1e-6,
                  dtype=torch.float64, device=None):
    """The protocol on features: `train`, `val`, `test` are (features, labels); lambda chosen on val (the best
    score, a tie to the larger lambda), retrained on train + val from that solution, scored once on test."""
    binary = metric == "map11"

    def problem(x, y):
        return LogisticProblem(x, y, num_classes, binary=binary, device=device, dtype=dtype)

    train_problem = problem(*train)
    val_x = torch.as_tensor(val[0], device=train_problem.device, dtype=dtype)

    def val_score(fit):
        value = score(metric, fit.scores(val_x).cpu().numpy(), val[1])
        return -np.inf if value is None else value

    best, rows = sweep(train_problem, lambdas, val_score, max_iter=max_iter, tolerance=tolerance)
    both = (np.concatenate([train[0], val[0]]), np.concatenate([train[1], val[1]]))
    final = problem(*both).fit(best.lam, start=best, max_iter=max_iter, tolerance=tolerance)
    test_score = score(metric, final.scores(test[0]).cpu().numpy(), test[1])
    return {"test": test_score, "lambda": best.lam, "C": sklearn_c(best.lam, len(both[1])),
            "val_score": max(r[1] for r in rows), "val_scores": [list(r) for r in rows],
            "iterations": final.iterations, "grad_max": final.grad_max}
