"""kNN predictions equal a plainly written brute-force reference, on both backends; uniform votes equal sklearn's."""
import numpy as np
import pytest
from sklearn.neighbors import KNeighborsClassifier

from eval.knn import accuracy, knn_classify
from sslt_core.errors import DatasetError


def brute_force(train, labels, test, k, temperature, num_classes, uniform=False):
    """The formula, one query at a time: cosine similarity, k nearest, votes exp(s/T), ties to the lower class."""
    train = train / np.linalg.norm(train, axis=1, keepdims=True)
    predictions = []
    for query in test / np.linalg.norm(test, axis=1, keepdims=True):
        similarity = train.astype(np.float64) @ query.astype(np.float64)
        nearest = np.argsort(-similarity, kind="stable")[:k]
        scores = np.zeros(num_classes)
        for i in nearest:
            scores[labels[i]] += 1.0 if uniform else np.exp(similarity[i] / temperature)
        predictions.append(sorted(range(num_classes), key=lambda c: (-scores[c], c))[0])
    return np.array(predictions)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(7, 32))
    train_labels = rng.integers(0, 7, 600)
    test_labels = rng.integers(0, 7, 150)
    train = (centres[train_labels] + 1.5 * rng.normal(size=(600, 32))).astype(np.float32)
    test = (centres[test_labels] + 1.5 * rng.normal(size=(150, 32))).astype(np.float32)
    return train, train_labels, test, test_labels


@pytest.mark.parametrize("backend", ["faiss", "torch"])
@pytest.mark.parametrize("temperature", [0.07, 0.5])
def test_predictions_equal_the_brute_force_formula(data, backend, temperature):
    train, train_labels, test, _ = data
    ks = (1, 10, 20, 100)
    rankings = knn_classify(train, train_labels, test, ks, temperature, 7, backend, bank_chunk=97)
    for k in ks:
        np.testing.assert_array_equal(rankings[k][:, 0], brute_force(train, train_labels, test, k, temperature, 7))


def test_both_backends_give_the_same_rankings(data):
    train, train_labels, test, _ = data
    faiss_rankings = knn_classify(train, train_labels, test, (20, 200), 0.07, 7, "faiss", bank_chunk=128)
    torch_rankings = knn_classify(train, train_labels, test, (20, 200), 0.07, 7, "torch", query_chunk=33)
    for k in (20, 200):
        np.testing.assert_array_equal(faiss_rankings[k], torch_rankings[k])


@pytest.mark.parametrize("backend", ["faiss", "torch"])
def test_uniform_votes_equal_scikit_learn(data, backend):
    train, train_labels, test, _ = data
    rankings = knn_classify(train, train_labels, test, (5, 25), num_classes=7, backend=backend, weights="uniform")
    normalized = train / np.linalg.norm(train, axis=1, keepdims=True)
    for k in (5, 25):
        reference = KNeighborsClassifier(n_neighbors=k, algorithm="brute", metric="cosine")
        reference.fit(normalized, train_labels)
        np.testing.assert_array_equal(rankings[k][:, 0], reference.predict(test))


def test_a_bank_smaller_than_k_and_classes_missing_from_the_test_split(data):
    train, train_labels, test, test_labels = data
    rankings = knn_classify(train[:15], train_labels[:15], test[:4], (10, 200), num_classes=7)
    expected = brute_force(train[:15], train_labels[:15], test[:4], 15, 0.07, 7)
    np.testing.assert_array_equal(rankings[200][:, 0], expected)
    present = test_labels[:4]
    assert len(set(present)) < 7  # most classes are absent from this test split
    result = accuracy(rankings[10], present)
    assert 0 <= result["top1"] <= result["top5"] <= 100


def test_top5_accuracy_counts_a_label_anywhere_in_the_first_five():
    rankings = np.array([[3, 1, 2, 0, 4, 5], [5, 4, 3, 2, 1, 0]])
    assert accuracy(rankings, np.array([4, 0])) == {"top1": 0.0, "top5": 50.0}


def test_an_empty_split_fails_clearly(data):
    train, train_labels, _, _ = data
    with pytest.raises(DatasetError, match="non-empty"):
        knn_classify(train, train_labels, train[:0], (10,))
