"""The linear_transfer evaluation: its settings checked, its protocol id, the per-dataset parts a pipeline runs as
stages and their merge, and the protocol end to end on the generated demo layouts with features that encode the
label (near-perfect) or random ones (chance)."""
import numpy as np
import pytest

import evaluations  # noqa: F401
from evaluations.linear_transfer import (
    DATASETS,
    LinearTransferSettings,
    evaluate_dataset,
    merge,
    parts,
    prepare,
    protocol,
)
from evaluations.record import from_trials
from sslt_core.errors import ConfigError
from sslt_core.transfer_datasets import TRANSFER_DATASETS

DEMO = ("cifar10", "dtd", "flowers102")


def test_twelve_datasets_in_simclrs_order():
    assert DATASETS == ("food101", "cifar10", "cifar100", "birdsnap", "sun397", "cars", "aircraft", "voc2007", "dtd",
                        "pets", "caltech101", "flowers102")
    metrics = {n: d.metric for n, d in TRANSFER_DATASETS.items()}
    assert {n for n, m in metrics.items() if m == "mean_per_class"} == {"aircraft", "pets", "caltech101",
                                                                        "flowers102"}
    assert metrics["voc2007"] == "map11"
    assert {n for n, d in TRANSFER_DATASETS.items() if d.validation.official} == {"aircraft", "dtd", "flowers102",
                                                                                  "voc2007"}


def test_settings_refuse_an_empty_or_repeated_list():
    with pytest.raises(ConfigError, match="datasets is empty"):
        prepare(LinearTransferSettings(datasets=()))
    with pytest.raises(ConfigError, match=r"\['dtd'\] are listed twice"):
        prepare(LinearTransferSettings(datasets=("dtd", "cifar10", "dtd")))


def test_protocol_names_the_grid_and_the_datasets_unless_all_twelve():
    assert protocol(LinearTransferSettings()) == "linear_transfer/lbfgs-45lam-1e-06..100000-tol1e-06-seed0-crop224"
    assert protocol(LinearTransferSettings(datasets=DEMO)).endswith("-cifar10+dtd+flowers102")


def _record(settings, results):
    metrics = {n: r["test"] for n, r in results.items()}
    return from_trials("linear_transfer", protocol(settings), [{"seed": 0, "metrics": metrics}], "x",
                       details={"datasets": results})


def test_parts_are_one_dataset_each_and_merge_back_into_the_record_of_the_list():
    settings = LinearTransferSettings(datasets=DEMO)
    split = parts(settings)
    assert list(split) == list(DEMO) and all(s.datasets == (n,) for n, s in split.items())
    records = [_record(s, {n: {"test": 10.0 * (i + 1)}}) for i, (n, s) in enumerate(split.items())]
    merged = merge(records, settings)
    assert merged.metrics == {"cifar10": 10.0, "dtd": 20.0, "flowers102": 30.0, "mean": 20.0}
    assert merged.protocol == protocol(settings) and merged.scored_on == "cifar10/test+dtd/test+flowers102/test"


@pytest.mark.parametrize("name", DEMO)
def test_demo_layouts_end_to_end_perfect_with_label_features_chance_with_random_ones(name, demo_root):
    data = TRANSFER_DATASETS[name].load(demo_root)
    rng = np.random.default_rng(0)
    code = rng.normal(size=(len(data.classes), 16))
    settings = LinearTransferSettings(datasets=(name,), lambdas=6, tolerance=1e-5)
    for informative, low, high in ((True, 99, 100), (False, 0, 35)):
        features = {s: ((code[p.labels] * 3 if informative else 0) + rng.normal(size=(len(p.labels), 16)) * 0.3,
                        p.labels) for s, p in data.splits.items()}
        result = evaluate_dataset(TRANSFER_DATASETS[name], data, features, settings)
        assert low <= result["test"] <= high, (informative, result["test"])
        sizes = {s: len(p.labels) for s, p in data.splits.items()}
        if name == "cifar10":  # 10% held out of train, as 5,000 of 50,000
            assert result["sizes"] == {"train": 72, "val": 8, "test": 40} and "8 validation images" in result["note"]
        else:
            assert result["sizes"] == sizes and result["validation"] == "official"
        assert result["C"] == pytest.approx(1 / (result["lambda"] * (result["sizes"]["train"] +
                                                                     result["sizes"]["val"])))
