"""The linear transfer's metrics against the formulas written out here, its validation splits (sizes, disjointness,
seeds), and the protocol end to end on features that encode the label (near-perfect) or not (chance)."""
import numpy as np
import pytest

from eval.transfer import (
    average_precision_11,
    fit_and_score,
    held_out,
    map11,
    mean_per_class_accuracy,
    per_class_sample,
    top1,
)
from sslt_core.errors import DatasetError
from sslt_core.transfer_datasets import TRANSFER_DATASETS, Validation


def test_top1_and_mean_per_class_accuracy_follow_their_formulas():
    labels = np.array([0, 0, 0, 0, 1, 1, 2])
    predictions = np.array([0, 0, 0, 1, 1, 0, 2])
    assert top1(predictions, labels) == pytest.approx(100 * 5 / 7)
    # class 0: 3 of 4, class 1: 1 of 2, class 2: 1 of 1
    assert mean_per_class_accuracy(predictions, labels) == pytest.approx(100 * (3 / 4 + 1 / 2 + 1) / 3)


def voc07_ap(scores, labels):
    """The VOC2007 devkit's 11-point AP (voc_eval.py, use_07_metric), written out: difficult images dropped."""
    keep = labels != 0
    order = np.argsort(-scores[keep], kind="stable")
    tp = (labels[keep][order] > 0).astype(float)
    fp = 1 - tp
    tp, fp = np.cumsum(tp), np.cumsum(fp)
    rec = tp / (labels[keep] > 0).sum()
    prec = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    ap = 0.0
    for t in np.arange(0.0, 1.1, 0.1):
        p = 0 if np.sum(rec >= t) == 0 else np.max(prec[rec >= t])
        ap += p / 11.0
    return ap


def test_eleven_point_ap_by_hand_and_against_the_devkit_formula():
    # ranking: +, -, +, (difficult), -, +  -> precision at the hits 1, 2/3, 3/5; recall 1/3, 2/3, 1
    scores = np.array([0.9, 0.8, 0.7, 0.65, 0.6, 0.5])
    labels = np.array([1, -1, 1, 0, -1, 1])
    by_hand = (4 * 1 + 3 * (2 / 3) + 4 * (3 / 5)) / 11  # t = 0..0.3: 1; 0.4..0.6: 2/3; 0.7..1: 3/5
    assert average_precision_11(scores, labels) == pytest.approx(by_hand)
    rng = np.random.default_rng(0)
    for _ in range(20):
        s, lab = rng.normal(size=50), rng.choice([-1, 0, 1], size=50, p=[0.6, 0.1, 0.3])
        assert average_precision_11(s, lab) == pytest.approx(voc07_ap(s, lab))
    many_s, many_l = rng.normal(size=(40, 3)), rng.choice([-1, 1], size=(40, 3))
    assert map11(many_s, many_l) == pytest.approx(100 * np.mean([voc07_ap(many_s[:, c], many_l[:, c])
                                                                 for c in range(3)]))


@pytest.mark.parametrize("name,train,expected", [("cifar10", 50000, 5000), ("food101", 75750, 7575),
                                                 ("cars", 8144, 1650), ("birdsnap", 47386, 4981)])
def test_held_out_validation_has_byols_size_and_is_disjoint(name, train, expected):
    labels = np.arange(train) % 10
    keep, val, note = held_out(labels, TRANSFER_DATASETS[name].validation, seed=0)
    assert len(val) == expected and len(keep) == train - expected and not note
    assert not set(keep) & set(val) and len(set(keep) | set(val)) == train
    again = held_out(labels, TRANSFER_DATASETS[name].validation, seed=0)[1]
    assert np.array_equal(val, again) and not np.array_equal(val, held_out(labels, TRANSFER_DATASETS[name]
                                                                          .validation, seed=1)[1])


def test_held_out_on_a_smaller_copy_keeps_the_papers_fraction_and_says_so():
    keep, val, note = held_out(np.zeros(1000, dtype=int), Validation(count=5000, paper_train=50000), 0)
    assert len(val) == 100 and "100 validation images held out of 1000" in note


@pytest.mark.parametrize("name,per_class", [("sun397", 10), ("pets", 20), ("caltech101", 5)])
def test_per_class_validation_holds_out_that_many_of_each_class(name, per_class):
    labels = np.repeat(np.arange(7), 30)
    keep, val, _ = held_out(labels, TRANSFER_DATASETS[name].validation, seed=0)
    assert np.array_equal(np.bincount(labels[val]), [per_class] * 7)
    assert not set(keep) & set(val) and len(keep) + len(val) == len(labels)


def test_caltech_samples_30_training_images_per_class_and_tests_on_the_rest():
    labels = np.repeat(np.arange(5), [31, 40, 50, 60, 800])
    train, test = per_class_sample(labels, TRANSFER_DATASETS["caltech101"].train_per_class, seed=0)
    assert np.array_equal(np.bincount(labels[train]), [30] * 5)
    assert len(test) == len(labels) - 150 and not set(train) & set(test)
    with pytest.raises(DatasetError, match="class 0 has 30 images"):
        per_class_sample(np.repeat(np.arange(2), 30), 30, seed=0)


def _features(labels, mixing, informative, rng):
    if informative:  # a feature that encodes the label (the same code in every split)
        return (mixing[labels] * 3 + 0.1 * rng.normal(size=(len(labels), mixing.shape[1]))).astype(np.float32)
    return rng.normal(size=(len(labels), mixing.shape[1])).astype(np.float32)


@pytest.mark.parametrize("metric", ["top1", "mean_per_class"])
def test_protocol_is_near_perfect_on_label_features_and_chance_on_random_ones(metric):
    rng = np.random.default_rng(0)
    classes = 10
    splits = {s: rng.integers(0, classes, n) for s, n in (("train", 300), ("val", 100), ("test", 2000))}
    for informative, low, high in ((True, 99, 100), (False, 5, 16)):
        mixing = rng.normal(size=(classes, 32))
        data = {s: (_features(y, mixing, informative, rng), y) for s, y in splits.items()}
        result = fit_and_score(data["train"], data["val"], data["test"], metric, classes, np.logspace(-6, 5, 8),
                               device="cpu")
        assert low <= result["test"] <= high, (informative, result["test"])
        assert len(result["val_scores"]) == 8 and result["C"] == pytest.approx(1 / (result["lambda"] * 400))


def test_voc_protocol_is_near_perfect_on_label_features_and_chance_on_random_ones():
    rng = np.random.default_rng(0)
    classes = 5
    splits = {s: np.where(rng.random((n, classes)) < 0.3, 1, -1).astype(np.int8) for s, n in
              (("train", 300), ("val", 100), ("test", 1000))}
    for labels in splits.values():
        labels[rng.random(labels.shape) < 0.05] = 0
    for informative, low, high in ((True, 99, 100), (False, 20, 45)):
        data, mixing = {}, rng.normal(size=(classes, 32))
        for s, y in splits.items():
            x = (y > 0) @ mixing * 3 + 0.1 * rng.normal(size=(len(y), 32)) if informative else rng.normal(
                size=(len(y), 32))
            data[s] = (x.astype(np.float32), y)
        result = fit_and_score(data["train"], data["val"], data["test"], "map11", classes, np.logspace(-6, 5, 6),
                               device="cpu")
        assert low <= result["test"] <= high, (informative, result["test"])
