"""VOC07 low-shot linear SVMs (Goyal et al. 2019, sec. 6.2 / Fig. 5; VISSL's SVMLowShotTrainer): per class k of
its positives and (C - 1) * k of its negatives drawn from VOC2007 trainval, k in {1, 2, 4, 8, 16, 32, 64, 96}, 5
samples of recorded seeds; each cost trained and tested, and the cost of the best mean test mAP over the samples
reported, as the original does: a choice made on the test set (the record says so). Mean, std, min and max over
the samples per k, on res4 and res5 (eval/voc_svm.py)."""
from dataclasses import dataclass
from typing import Annotated, Literal

import numpy as np

from eval.voc_features import voc_classification
from eval.voc_svm import COSTS, LOW_SHOT_K, low_shot
from evaluations import voc07_svm as full  # the features, the shared arguments and checks
from evaluations.record import from_trials
from evaluations.registry import Column, Evaluation, register
from sslt_core.cli import non_negative_int, positive_int
from sslt_core.config import CropSize, NonNegativeInt, PositiveFloat, PositiveInt, Range
from sslt_core.datasets import dataset_path
from sslt_core.errors import ConfigError

TABLE_LAYERS = ("res4", "res5")  # VISSL's


@dataclass(frozen=True)
class Voc07LowShotSettings:
    layers: tuple[full.Layer, ...] = TABLE_LAYERS
    k: tuple[PositiveInt, ...] = LOW_SHOT_K  # positives per class
    samples: Annotated[int, Range(min=1, max=100)] = 5  # independent samples per k, seeds seed .. seed+samples-1
    sample_seed: NonNegativeInt = 0
    costs: tuple[PositiveFloat, ...] = COSTS
    image_size: CropSize = 224
    seed: NonNegativeInt = 0  # liblinear's sample order
    jobs: int = -1
    batch_size: PositiveInt = 64
    workers: NonNegativeInt = 4
    # a class with fewer trainval positives than a k: "refuse" (the sample would not be k-shot), or "take_all" of
    # them (small copies, as the demo's test data; the protocol id says so)
    fewer_positives: Literal["refuse", "take_all"] = "refuse"


def prepare(settings):
    if len(set(settings.k)) != len(settings.k) or not settings.k:
        raise ConfigError(f"k must list distinct numbers of positives per class, got {list(settings.k)}")
    return full.check_layers(settings)


def protocol(settings):
    return (f"voc07_lowshot/goyal19-{settings.samples}samples-seed{settings.sample_seed}-"
            f"{full.costs_id(settings.costs)}-test-selected-size{settings.image_size}"
            + ("-fewer-positives-taken" if settings.fewer_positives == "take_all" else ""))


def check_positives(data_root, settings):
    """Refuse a k that a class of VOC2007 trainval has fewer positives for, before any feature is computed."""
    if settings.fewer_positives == "take_all":
        return
    _, classes, labels = voc_classification(dataset_path("voc2007", data_root), "trainval")
    counts = (labels == 1).sum(axis=0)
    fewest = int(counts.argmin())
    if max(settings.k) > counts[fewest]:
        raise ConfigError(f"k {max(settings.k)} is more positives than class '{classes[fewest]}' has in VOC2007 "
                          f"trainval ({counts[fewest]}); give k <= {counts[fewest]}, or fewer_positives: take_all "
                          "(--fewer-positives take_all) to use every positive such a class has")


def metric(layer, k):
    return f"{layer}/k{k}"


def run(weights, data_root, output_dir, settings, context):
    check_positives(data_root, settings)
    splits, classes, details = full.layer_features(weights, data_root, settings, context)
    (train, train_labels), (test, test_labels) = splits["trainval"], splits["test"]
    seeds = [settings.sample_seed + i for i in range(settings.samples)]
    trials = [{"seed": seed, "metrics": {}} for seed in seeds]
    curves = {}
    for layer in settings.layers:
        curves[layer] = {}
        result = low_shot(train[layer], train_labels, test[layer], test_labels, settings.k, seeds, settings.costs,
                          settings.jobs, settings.seed)
        for k, r in result.items():
            for trial, value in zip(trials, r["per_sample"]):
                trial["metrics"][metric(layer, k)] = value
            values = np.array([v for v in r["per_sample"] if v is not None])
            curves[layer][str(k)] = {
                "cost": r["cost"], "per_sample": r["per_sample"],
                "min": float(values.min()) if len(values) else None,
                "max": float(values.max()) if len(values) else None,
                "std_population": float(values.std()) if len(values) else None,  # VISSL's np.std
                "mean_over_samples_per_cost": [None if np.isnan(m) else float(m)
                                               for m in np.nanmean(np.array(r["map"], dtype=float), axis=0)],
                "capped": [{"seed": s, "class": classes[c], "label": v, "wanted": w, "had": h}
                           for s, c, v, w, h in r["capped"]],
                "unconverged": r["unconverged"]}
    details["low_shot"] = curves
    details["sampling"] = ("per class k positives and (C - 1) * k absent images, each class drawn on its own with "
                           "numpy default_rng([seed, k]); difficult-only images never drawn; cost chosen on test")
    if any(c["capped"] for layer in curves.values() for c in layer.values()):
        details["note"] = "some classes had fewer images than a sample asks for: all of them taken (see capped)"
    return from_trials("voc07_lowshot", protocol(settings), trials, "voc2007/test", selected_on="voc2007/test",
                       details=details)


def summary(record):
    lines = []
    for layer, curve in record.details["low_shot"].items():
        parts = []
        for k in curve:
            mean, std = record.metrics.get(metric(layer, k)), record.std.get(metric(layer, k))
            parts.append(f"k={k} " + ("-" if mean is None else f"{mean:.1f}" + (f"+-{std:.1f}" if std else "")))
        lines.append(f"VOC07 low-shot {layer} mAP: " + ", ".join(parts))
    return "\n".join(lines + ["note: the cost is chosen on the test set (the original protocol)"])


def add_arguments(parser):
    full.add_common_arguments(parser, TABLE_LAYERS)
    parser.add_argument("--k", type=positive_int, nargs="+", default=list(LOW_SHOT_K), help="positives per class")
    parser.add_argument("--samples", type=positive_int, default=5, help="independent samples per k")
    parser.add_argument("--sample-seed", type=non_negative_int, default=0, help="seed of the first sample")
    parser.add_argument("--fewer-positives", choices=("refuse", "take_all"), default="refuse",
                        help="a class with fewer trainval positives than k: refuse (default), or take all it has")


def from_args(args):
    settings = Voc07LowShotSettings(k=tuple(args.k), samples=args.samples, sample_seed=args.sample_seed,
                                    fewer_positives=args.fewer_positives, **full.common_settings(args))
    return full.common_run(args, settings)


register(Evaluation(
    "voc07_lowshot", Voc07LowShotSettings, run, protocol, prepare=prepare,
    columns=tuple(Column("voc07_lowshot", f"{layer} k={k}", metric(layer, k)) for layer in TABLE_LAYERS
                  for k in LOW_SHOT_K),
    reads=lambda settings: ["voc2007"], ranges=lambda metrics: dict.fromkeys(metrics, (0, 100)), summary=summary,
    cli=add_arguments, from_args=from_args, resource_kind="svm", resources=full.SVM_RESOURCES,
    demo={"k": list(LOW_SHOT_K), "samples": 2, "costs": [0.01, 1.0], "image_size": 32, "jobs": 1, "batch_size": 32,
          "workers": 0, "fewer_positives": "take_all"}, description=__doc__))
