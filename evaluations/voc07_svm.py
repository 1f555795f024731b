"""VOC07 linear SVMs per layer (Goyal et al. 2019, "Scaling and benchmarking self-supervised visual representation
learning", Table 2 / app. B; the benchmark PIRL, SwAV, Barlow Twins and VICReg report): features of the frozen
trunk after conv1 and res2..res5, pooled to ~9k dimensions, and the 2048-d pool (eval/voc_features.py); one
LinearSVC per class, its cost by 3-fold CV (average precision) on VOC2007 trainval over 26 costs, refit; test mAP
with the all-point AP of VOC2010+ (eval/voc_svm.py)."""
import hashlib
from dataclasses import dataclass
from typing import Annotated, Literal

from eval.features import ARCHS, build_encoder
from eval.voc_features import LAYERS, voc_layer_features
from eval.voc_svm import COSTS, full_svm
from evaluations.record import from_trials
from evaluations.registry import Column, Context, Evaluation, Weights, add_record_arguments, register
from sslt_core.cli import crop_size, non_negative_int, positive_float, positive_int, writable_folder
from sslt_core.cluster import Resources
from sslt_core.config import CropSize, NonNegativeInt, PositiveFloat, PositiveInt, Range
from sslt_core.datasets import dataset_path
from sslt_core.errors import ConfigError

Layer = Literal[tuple(LAYERS)]
SVM_RESOURCES = Resources(gpus_per_node=1, cpus_per_task=32, time=8 * 60)  # features on the GPU, SVMs on CPUs
MAX_JOBS = 1024  # processes: more than any node's cores
LABELS = ("VOC labels 1 / -1 / 0 (difficult only): in training 1 is positive, -1 and 0 negative (the original "
          "code's 0 -> -1); at test 0 is left out of that class's AP")


@dataclass(frozen=True)
class Voc07SvmSettings:
    layers: tuple[Layer, ...] = tuple(LAYERS)
    costs: tuple[PositiveFloat, ...] = COSTS  # Goyal et al.'s 26 values
    folds: Annotated[int, Range(min=2, max=10)] = 3  # cross_val_score(cv=3) of the original
    image_size: CropSize = 224  # shorter side to 256 * size / 224, then size x size (no crop)
    seed: NonNegativeInt = 0  # liblinear's sample order
    jobs: int = -1  # classes trained in parallel (joblib's n_jobs: -1 every core)
    batch_size: PositiveInt = 64
    workers: NonNegativeInt = 4


def check_layers(settings):
    if not settings.layers or len(set(settings.layers)) != len(settings.layers):
        raise ConfigError(f"layers must name each of {', '.join(LAYERS)} at most once, got {list(settings.layers)}")
    if settings.jobs == 0 or not -1 <= settings.jobs <= MAX_JOBS:
        raise ConfigError(f"jobs must be -1 (every core) or a number of processes 1 ... {MAX_JOBS}, got "
                          f"{settings.jobs}")
    return settings


def costs_id(costs):
    """'26c' for Goyal et al.'s grid, else the count and a digest of the values."""
    if tuple(costs) == COSTS:
        return f"{len(costs)}c"
    return f"{len(costs)}c-{hashlib.sha256(repr(tuple(costs)).encode()).hexdigest()[:6]}"


def protocol(settings):
    return f"voc07_svm/goyal19-{costs_id(settings.costs)}-cv{settings.folds}-size{settings.image_size}"


def layer_features(weights, data_root, settings, context):
    """The trunk's features of VOC2007 trainval and test (eval/voc_features.py), cached by content."""
    encoder, description = build_encoder(weights.path, weights.arch, trust=weights.trust)
    splits, classes, reused, dims = voc_layer_features(
        encoder, description, weights.path, dataset_path("voc2007", data_root), ("trainval", "test"),
        settings.image_size, context.cache_dir, batch_size=settings.batch_size, num_workers=settings.workers)
    details = {"encoder": description, "classes": list(classes), "dims": {n: dims[n] for n in settings.layers},
               "trainval_size": len(splits["trainval"][1]), "test_size": len(splits["test"][1]),
               "features": "reused from cache" if all(reused.values()) else "extracted", "labels": LABELS}
    return splits, classes, details


def run(weights, data_root, output_dir, settings, context):
    splits, classes, details = layer_features(weights, data_root, settings, context)
    (train, train_labels), (test, test_labels) = splits["trainval"], splits["test"]
    metrics, per_layer = {}, {}
    for layer in settings.layers:
        result = full_svm(train[layer], train_labels, test[layer], test_labels, settings.costs, settings.folds,
                          settings.jobs, settings.seed)
        metrics[layer] = result["map"]
        per_layer[layer] = dict(zip(classes, result["classes"]))
    skipped = sorted({c for layer in per_layer.values() for c, r in layer.items() if r["ap"] is None})
    if skipped:
        details["note"] = f"not scored (mAP over the other classes): {', '.join(skipped)}"
    return from_trials("voc07_svm", protocol(settings), [{"seed": settings.seed, "metrics": metrics}],
                       "voc2007/test", selected_on="voc2007/trainval", details={**details, "per_class": per_layer})


def summary(record):
    line = ", ".join(f"{layer} {v:.2f}" if v is not None else f"{layer} -" for layer, v in record.metrics.items())
    return f"VOC07 SVM mAP: {line}" + (f"\nnote: {record.details['note']}" if "note" in record.details else "")


def add_common_arguments(parser, layers):
    parser.add_argument("--weights", required=True, help="a checkpoint tools/convert_to_d2.py reads, or 'random'")
    parser.add_argument("--data", help="a datasets root holding VOC2007/ (default: $DETECTRON2_DATASETS)")
    parser.add_argument("--layers", nargs="+", choices=tuple(LAYERS), default=list(layers), help="layers scored")
    parser.add_argument("--costs", type=positive_float, nargs="+", default=list(COSTS),
                        help="the SVM cost grid (default: Goyal et al.'s 26 values)")
    parser.add_argument("--image-size", type=crop_size, default=224, help="images resized to size x size")
    parser.add_argument("--arch", choices=ARCHS, default="resnet50", help="architecture for --weights random")
    parser.add_argument("--seed", type=non_negative_int, default=0)
    parser.add_argument("--jobs", type=int, default=-1, help="classes trained in parallel (-1: every core)")
    parser.add_argument("--batch-size", type=positive_int, default=64)
    parser.add_argument("--workers", type=non_negative_int, default=4, help="data loading processes")
    parser.add_argument("--cache-dir", default="output/feature_cache", help="where features are cached")
    add_record_arguments(parser)


def common_settings(args):
    return dict(layers=tuple(args.layers), costs=tuple(args.costs), image_size=args.image_size, seed=args.seed,
                jobs=args.jobs, batch_size=args.batch_size, workers=args.workers)


def common_run(args, settings):
    return (Weights(args.weights, trust=args.trust_checkpoint, arch=args.arch), args.data, None, settings,
            Context(cache_dir=writable_folder(args.cache_dir)))


def add_arguments(parser):
    add_common_arguments(parser, LAYERS)
    parser.add_argument("--folds", type=positive_int, default=3, help="cross-validation folds choosing the cost")


def from_args(args):
    return common_run(args, Voc07SvmSettings(folds=args.folds, **common_settings(args)))


register(Evaluation(
    "voc07_svm", Voc07SvmSettings, run, protocol, prepare=check_layers,
    columns=tuple(Column("voc07_svm", layer, layer) for layer in LAYERS), plot=(("VOC07 SVM res5", "res5"),),
    reads=lambda settings: ["voc2007"], ranges=lambda metrics: dict.fromkeys(metrics, (0, 100)), summary=summary,
    cli=add_arguments, from_args=from_args, resource_kind="svm", resources=SVM_RESOURCES,
    demo={"costs": [0.01, 1.0], "image_size": 32, "jobs": 1, "batch_size": 32, "workers": 0}, description=__doc__))
