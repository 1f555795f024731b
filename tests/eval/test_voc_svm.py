"""VOC07 SVMs (eval/voc_svm.py, eval/voc_features.py) against independent references: the VOC devkit's AP loop
written out, scikit-learn's average_precision_score and GridSearchCV, the labels read from the XML annotations,
Goyal et al.'s published feature sizes."""
from xml.etree import ElementTree

import numpy as np
import pytest
import torch
import torchvision
from sklearn.metrics import average_precision_score
from sklearn.model_selection import GridSearchCV, StratifiedKFold

from eval.voc_features import LayerFeatures, voc_classification, voc_layer_features
from eval.voc_svm import COSTS, cv_scores, full_svm, full_training_labels, linear_svc, low_shot, low_shot_sample, voc_ap
from sslt_core.errors import DatasetError
from sslt_demo.writer import SIZES, write_voc


def devkit_ap(scores, labels):
    """VOCevalcls.m (VOC2010+), line by line: sort by decreasing score, drop the difficult (gt 0), cumulative tp/fp,
    mrec = [0; rec; 1], mpre = [0; prec; 0], the envelope from the right, the sum over the points where recall
    changes."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    gt = [labels[i] for i in order if labels[i] != 0]
    tp, fp, rec, prec = 0, 0, [], []
    for g in gt:
        tp, fp = tp + (g > 0), fp + (g < 0)
        rec.append(tp / sum(1 for x in gt if x > 0))
        prec.append(tp / (tp + fp))
    mrec, mpre = [0.0] + rec + [1.0], [0.0] + prec + [0.0]
    for i in range(len(mpre) - 2, -1, -1):
        mpre[i] = max(mpre[i], mpre[i + 1])
    return sum((mrec[i] - mrec[i - 1]) * mpre[i] for i in range(1, len(mrec)) if mrec[i] != mrec[i - 1])


def test_all_point_ap_equals_the_voc_devkit_formula():
    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(2, 40))
        labels = rng.choice([1, -1, 0], size=n, p=[0.3, 0.6, 0.1])
        if not (labels == 1).any():
            assert voc_ap(rng.random(n), labels) is None
            continue
        scores = rng.permutation(n) + 0.0  # no ties: the devkit's sort and ours agree on the order
        assert voc_ap(scores, labels) == pytest.approx(devkit_ap(list(scores), list(labels)), abs=1e-12)


def test_all_point_ap_equals_sklearn_where_interpolation_changes_nothing():
    """sklearn's AP is the uninterpolated sum (R_n - R_n-1) P_n: equal to VOC's where the precision at each hit
    never rises further down the ranking, never above it otherwise."""
    rng = np.random.default_rng(1)
    agreed = 0
    for _ in range(300):
        n = int(rng.integers(3, 30))
        labels = rng.choice([1, -1], size=n, p=[0.4, 0.6])
        if not (labels == 1).any():
            continue
        scores = rng.permutation(n) + 0.0
        hits = labels[np.argsort(-scores)] > 0
        precision_at_hits = (np.cumsum(hits) / np.arange(1, n + 1))[hits]
        ours, theirs = voc_ap(scores, labels), average_precision_score(labels, scores)
        if np.all(np.diff(precision_at_hits) <= 0):
            assert ours == pytest.approx(theirs, abs=1e-12)
            agreed += 1
        else:
            assert ours >= theirs - 1e-12
    assert agreed > 30  # the comparison ran on enough cases


def _separable(n, dim, seed, rate=0.35):
    rng = np.random.default_rng(seed)
    y = np.where(rng.random(n) < rate, 1, -1)
    x = rng.normal(size=(n, dim)) + 0.6 * y[:, None] * rng.normal(size=dim)[None]
    return x.astype(np.float32), y


def test_cost_selection_equals_gridsearchcv_with_the_same_folds():
    x, y = _separable(90, 16, seed=2)
    costs = COSTS[2:8] + COSTS[-3:]
    folds = list(StratifiedKFold(n_splits=3).split(x, y))
    scores, _ = cv_scores(x, y, costs, folds)
    search = GridSearchCV(linear_svc(1.0), {"C": list(costs)}, scoring="average_precision", cv=folds).fit(
        x.astype(np.float64), y)
    assert costs[int(np.argmax(scores.mean(axis=1)))] == search.best_params_["C"]
    np.testing.assert_allclose(scores.mean(axis=1), search.cv_results_["mean_test_score"], atol=1e-12)
    test_x, test_y = _separable(60, 16, seed=3)
    labels = np.stack([y, -y], 1)  # two classes: the second is the first's complement
    result = full_svm(x, labels, test_x, np.stack([test_y, -test_y], 1), costs, folds=3)
    assert result["classes"][0]["cost"] == search.best_params_["C"]
    expected = devkit_ap(list(search.best_estimator_.decision_function(test_x)), list(test_y))
    assert result["classes"][0]["ap"] == pytest.approx(expected, abs=1e-9)


def test_classes_trained_in_parallel_give_the_same_result():
    x, y = _separable(60, 8, seed=4)
    labels = np.stack([y, -y, np.roll(y, 7)], 1)
    serial = full_svm(x, labels, x, labels, COSTS[4:7], jobs=1)
    parallel = full_svm(x, labels, x, labels, COSTS[4:7], jobs=2)
    assert serial == parallel


def test_pooled_dimensions_per_layer_are_goyal_et_al_s():
    torch.manual_seed(0)
    trunk = torchvision.models.resnet50()
    trunk.fc = torch.nn.Identity()
    layers = LayerFeatures(trunk.eval(), 224)
    assert layers.dims == {"conv1": 9216, "res2": 9216, "res3": 8192, "res4": 9216, "res5": 8192, "pool": 2048}
    image = torch.randn(1, 3, 224, 224)
    features = layers(image)
    with torch.no_grad():  # conv1 again, by hand: the stem's ReLU, avg-pool 10/10/4, x / (||x|| + 1e-5)
        stem = torch.relu(trunk.bn1(trunk.conv1(image)))
        pooled = torch.nn.functional.avg_pool2d(stem, 10, 10, 4).flatten(1)
    torch.testing.assert_close(features[:, :9216], pooled / (pooled.norm() + 1e-5))
    norms = [features[:, s:s + d].norm().item() for s, d in zip(np.cumsum([0, *layers.dims.values()]),
                                                                  layers.dims.values())]
    assert norms == pytest.approx([1.0] * 6, abs=1e-4)


def _xml_labels(folder, ids, classes):
    """Per image and class from the annotations: 1 a non-difficult object, 0 only difficult ones, -1 none."""
    out = np.full((len(ids), len(classes)), -1)
    for row, image_id in enumerate(ids):
        for obj in ElementTree.parse(folder / "Annotations" / f"{image_id}.xml").findall("object"):
            c = classes.index(obj.findtext("name"))
            out[row, c] = max(out[row, c], 0 if obj.findtext("difficult") == "1" else 1)
    return out


def test_labels_are_those_of_the_annotations(demo_root):
    folder = demo_root / "VOC2007"
    for split in ("trainval", "test"):
        ids, classes, labels = voc_classification(folder, split)
        assert ids == (folder / "ImageSets" / "Main" / f"{split}.txt").read_text().split()
        np.testing.assert_array_equal(labels, _xml_labels(folder, ids, list(classes)))
    assert (labels == 0).any()  # the demo has difficult-only images


def test_a_broken_class_list_is_named(demo_root, tmp_path):
    import shutil

    folder = tmp_path / "VOC2007"
    shutil.copytree(demo_root / "VOC2007", folder)
    path = folder / "ImageSets" / "Main" / "circle_test.txt"
    path.write_text(path.read_text().replace(" 1\n", " 2\n", 1).replace("-1\n", "-1\n", 1))
    with pytest.raises(DatasetError, match=r"circle_test.txt line \d+: .* is not"):
        voc_classification(folder, "test")


def test_difficult_only_images_are_negatives_in_training_and_left_out_at_test():
    labels = np.array([[1, 0], [-1, 1], [0, -1], [1, 1], [-1, -1], [0, 1]])
    np.testing.assert_array_equal(full_training_labels(labels[:, 0]), [1, -1, -1, 1, -1, -1])
    scores = np.array([0.9, 0.1, 5.0, 0.8, 0.2, 0.3])  # the difficult image ranked first: it does not count
    keep = labels[:, 0] != 0
    assert voc_ap(scores, labels[:, 0]) == devkit_ap(list(scores[keep]), list(labels[keep, 0])) == 1.0
    for seed in range(20):
        targets, _ = low_shot_sample(labels, 1, np.random.default_rng(seed))
        assert not (targets[labels == 0]).any()  # never drawn in low-shot training


def test_low_shot_samples_have_k_positives_reproducibly():
    rng = np.random.default_rng(5)
    labels = rng.choice([1, -1, 0], size=(400, 4), p=[0.2, 0.75, 0.05])
    for k in (1, 4, 16):
        a, capped = low_shot_sample(labels, k, np.random.default_rng([0, k]))
        b, _ = low_shot_sample(labels, k, np.random.default_rng([0, k]))
        c, _ = low_shot_sample(labels, k, np.random.default_rng([1, k]))
        assert not capped
        np.testing.assert_array_equal((a == 1).sum(0), [k] * 4)
        np.testing.assert_array_equal((a == -1).sum(0), [3 * k] * 4)  # (C - 1) * k negatives
        assert np.all(labels[a == 1] == 1) and np.all(labels[a == -1] == -1)
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(a, c)
    few = np.array([[1, -1], [-1, 1], [-1, -1]])
    _, capped = low_shot_sample(few, 2, np.random.default_rng(0))
    assert (0, 1, 2, 1) in capped  # class 0 wanted 2 positives, had 1


def test_low_shot_picks_the_cost_of_the_best_mean_test_map():
    """Against a brute-force reference: every (sample, cost, class) fit by hand, AP by the devkit loop."""
    x, y = _separable(120, 8, seed=6)
    labels = np.stack([y, -y], 1)
    test_x, test_y = _separable(50, 8, seed=7)
    test_labels = np.stack([test_y, -test_y], 1)
    costs, seeds = (1e-3, 1e-1, 10.0), (3, 4)
    result = low_shot(x, labels, test_x, test_labels, ks=(2,), seeds=seeds, costs=costs)[2]
    table = []
    for seed in seeds:
        targets, _ = low_shot_sample(labels, 2, np.random.default_rng([seed, 2]))
        row = []
        for cost in costs:
            aps = []
            for c in range(2):
                used = targets[:, c] != 0
                model = linear_svc(cost).fit(x[used].astype(np.float64), targets[used, c])
                aps.append(devkit_ap(list(model.decision_function(test_x)), list(test_labels[:, c])))
            row.append(100 * np.mean(aps))
        table.append(row)
    np.testing.assert_allclose(result["map"], table, atol=1e-9)
    best = int(np.argmax(np.mean(table, axis=0)))
    assert result["cost"] == costs[best]
    assert result["per_sample"] == pytest.approx([row[best] for row in table])


@pytest.fixture(scope="module")
def voc_set(tmp_path_factory):
    """A larger generated VOC2007 (150 trainval, 150 test images): enough positives per class to score."""
    folder = tmp_path_factory.mktemp("voc") / "VOC2007"
    write_voc(folder, 0, SIZES["small"], 2007, {"trainval": 150, "test": 150})
    return folder


def test_label_features_score_near_100_and_random_ones_near_the_positive_rate(voc_set):
    _, _, train = voc_classification(voc_set, "trainval")
    _, _, test = voc_classification(voc_set, "test")
    rng = np.random.default_rng(8)

    def encoding(labels):  # the labels themselves, plus a little noise
        return (labels > 0) + 0.05 * rng.normal(size=labels.shape)

    costs = (1e-2, 1.0)
    good = full_svm(encoding(train), train, encoding(test), test, costs, jobs=2)
    assert good["map"] > 98
    chance = full_svm(rng.normal(size=(len(train), 64)), train, rng.normal(size=(len(test), 64)), test, costs)
    scored = test != 0
    positive_rate = 100 * np.mean([(test[scored[:, c], c] > 0).mean() for c in range(test.shape[1])])
    assert abs(chance["map"] - positive_rate) < 10, (chance["map"], positive_rate)


def test_features_are_cached_by_content_and_shared(demo_root, tmp_path):
    torch.manual_seed(0)

    def trunk():
        model = torchvision.models.resnet18()
        model.fc = torch.nn.Identity()
        return model.eval()

    model = trunk()
    folder = demo_root / "VOC2007"
    first = voc_layer_features(model, "resnet18 test", "random", folder, ("test",), 32, tmp_path, batch_size=8)
    again = voc_layer_features(trunk(), "resnet18 test", "random", folder, ("test",), 32, tmp_path, batch_size=8)
    assert first[2] == {"test": False} and again[2] == {"test": True}
    for layer, features in first[0]["test"][0].items():
        np.testing.assert_array_equal(features, again[0]["test"][0][layer])
    other = voc_layer_features(model, "resnet18 test", "random", folder, ("test",), 48, tmp_path, batch_size=8)
    assert other[2] == {"test": False}  # another image size: another cache entry
