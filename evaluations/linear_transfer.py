"""Linear transfer to the 12 natural-image datasets of Kornblith, Shlens & Le 2019 (SimCLR Table 8, BYOL Table 3):
frozen encoder (eval mode, BN statistics untouched), pooled features of each image resized on its shorter side and
centre-cropped (bicubic, no augmentation), l2-regularised multinomial logistic regression by L-BFGS (VOC2007: one
binary classifier per class), lambda from 45 log-spaced values in [1e-6, 1e5] chosen on validation, retrained on
train + val, scored once on test with the dataset's metric (sslt_core/transfer_datasets.py, eval/transfer.py).

lambda convention: mean loss over the samples + lambda/2 ||W||^2 (bias unregularised) = scikit-learn's
LogisticRegression with C = 1 / (lambda * n); both, the validation score and every lambda's are in the record.
"""
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import torch

from eval.features import ARCHS, build_encoder, cached_features, extract_features
from eval.logistic import GRID_SIZE, LAMBDA_RANGE, lambda_grid
from eval.transfer import ArrayImages, ImageList, fit_and_score, held_out, per_class_sample, transfer_transform
from evaluations.record import from_trials
from evaluations.registry import Column, Context, Evaluation, Weights, add_record_arguments, register
from sslt_core.cli import crop_size, non_negative_int, positive_float, positive_int, writable_folder
from sslt_core.cluster import Resources
from sslt_core.config import CropSize, NonNegativeInt, PositiveFloat, PositiveInt
from sslt_core.errors import ConfigError
from sslt_core.transfer_datasets import TRANSFER_DATASETS

DATASETS = tuple(TRANSFER_DATASETS)
LAMBDA_CONVENTION = ("mean softmax cross-entropy over the n samples + lambda/2 ||W||^2, bias unregularised "
                     "(VOC2007: per class, the mean over its labelled images); scikit-learn's C = 1 / (lambda n)")


@dataclass(frozen=True)
class LinearTransferSettings:
    datasets: tuple[Literal[DATASETS], ...] = DATASETS
    lambdas: PositiveInt = GRID_SIZE  # log-spaced in [1e-6, 1e5]; 45 in the papers
    max_iter: PositiveInt = 1000  # L-BFGS iterations per lambda
    tolerance: PositiveFloat = 1e-6  # max |gradient| of the objective at which L-BFGS stops
    dtype: Literal["float64", "float32"] = "float64"  # of the solver (features are fp32)
    seed: NonNegativeInt = 0  # draws the held-out validation splits and Caltech-101's 30 training images
    image_size: CropSize = 224  # shorter side resized to it (bicubic), centre crop
    batch_size: PositiveInt = 256
    workers: NonNegativeInt = 4


def prepare(settings):
    if not settings.datasets:
        raise ConfigError(f"linear_transfer: datasets is empty; list some of {', '.join(DATASETS)}")
    twice = sorted({d for d in settings.datasets if settings.datasets.count(d) > 1})
    if twice:
        raise ConfigError(f"linear_transfer: datasets {twice} are listed twice; list each once")
    return settings


def protocol(settings):
    sets = "" if set(settings.datasets) == set(DATASETS) else "-" + "+".join(settings.datasets)
    return (f"linear_transfer/lbfgs-{settings.lambdas}lam-{LAMBDA_RANGE[0]:g}..{LAMBDA_RANGE[1]:g}-"
            f"tol{settings.tolerance:g}-seed{settings.seed}-crop{settings.image_size}{sets}")


def _features(encoder, description, weights, data, split, settings, context):
    """(features, labels) of one official split, through the content-keyed feature cache when there is one."""
    part = data.splits[split]
    transform = transfer_transform(settings.image_size)
    if isinstance(part.images, np.ndarray):
        dataset = ArrayImages(data.root, part.images, [str(s) for s in part.sources], transform)
    else:
        dataset = ImageList(data.root, part.images, transform)
    kwargs = {"batch_size": settings.batch_size, "num_workers": settings.workers}
    if context.cache_dir is None:
        features, _ = extract_features(encoder, dataset, desc=f"features {data.name}/{split}", **kwargs)
        reused = False
    else:
        features, _, reused = cached_features(encoder, description, weights, dataset, f"{data.name}-{split}",
                                              settings.image_size, context.cache_dir, **kwargs)
    return features, part.labels, reused


def evaluate_dataset(spec, data, features, settings):
    """The protocol on one dataset's features ({split: (features, labels)}): (result dict, sizes)."""
    note = ""
    if spec.train_per_class:  # Caltech-101: 30 per class sampled for training, the rest is test
        x, y = features["all"]
        train_idx, test_idx = per_class_sample(y, spec.train_per_class, settings.seed)
        train, test = (x[train_idx], y[train_idx]), (x[test_idx], y[test_idx])
    else:
        train, test = features["train"], features["test"]
    if spec.validation.official:
        val = features["val"]
    else:
        keep, held, note = held_out(train[1], spec.validation, settings.seed)
        train, val = (train[0][keep], train[1][keep]), (train[0][held], train[1][held])
    result = fit_and_score(train, val, test, spec.metric, len(data.classes), lambda_grid(settings.lambdas),
                           max_iter=settings.max_iter, tolerance=settings.tolerance,
                           dtype=getattr(torch, settings.dtype))
    result.update(metric=spec.metric, classes=len(data.classes), validation="official" if spec.validation.official
                  else "held out of train", sizes={"train": len(train[1]), "val": len(val[1]), "test": len(test[1])})
    if note:
        result["note"] = note
    return result


def run(weights, data_root, output_dir, settings, context):
    datasets = {name: TRANSFER_DATASETS[name].load(data_root) for name in settings.datasets}  # all checked first
    encoder, description = build_encoder(weights.path, weights.arch, trust=weights.trust)
    results, reused = {}, []
    for name, data in datasets.items():
        features = {}
        for split in data.splits:
            x, y, cached = _features(encoder, description, weights.path, data, split, settings, context)
            features[split] = (x, y)
            reused.append(cached)
        results[name] = evaluate_dataset(TRANSFER_DATASETS[name], data, features, settings)
    metrics = {name: r["test"] for name, r in results.items()}
    metrics["mean"] = float(np.mean(list(metrics.values())))
    return from_trials("linear_transfer", protocol(settings), [{"seed": settings.seed, "metrics": metrics}],
                       "+".join(f"{n}/test" for n in results), selected_on="+".join(f"{n}/val" for n in results),
                       details={"encoder": description, "lambda_convention": LAMBDA_CONVENTION, "datasets": results,
                                "features": "reused from cache" if all(reused) else "extracted"})


def parts(settings):
    """{dataset: the settings of that dataset alone}: what a pipeline runs as one stage per dataset."""
    return {name: replace(settings, datasets=(name,)) for name in settings.datasets}


def merge(records, settings):
    """One record of the whole list from the records of its parts (one per dataset, in the list's order)."""
    results = {name: r.details["datasets"][name] for r in records for name in r.details["datasets"]}
    metrics = {name: results[name]["test"] for name in settings.datasets}
    metrics["mean"] = float(np.mean(list(metrics.values())))
    first = records[0]
    return from_trials("linear_transfer", protocol(settings), [{"seed": settings.seed, "metrics": metrics}],
                       "+".join(f"{n}/test" for n in settings.datasets),
                       selected_on="+".join(f"{n}/val" for n in settings.datasets),
                       details={**first.details, "datasets": results})


def summary(record):
    lines = []
    for name, r in record.details["datasets"].items():
        lines.append(f"{TRANSFER_DATASETS[name].title:<12} {r['metric']:<15} test {r['test']:6.2f}  val "
                     f"{r['val_score']:6.2f}  lambda {r['lambda']:.2e} (C {r['C']:.3g})  "
                     f"{r['sizes']['train']}/{r['sizes']['val']}/{r['sizes']['test']}")
    return "\n".join(lines + [f"mean over {len(record.details['datasets'])} datasets: {record.metrics['mean']:.2f}"])


def add_arguments(parser):
    parser.add_argument("--weights", required=True, help="a checkpoint in any layout tools/convert_to_d2.py reads, "
                                                         "or 'random'")
    parser.add_argument("--data", help="the datasets root holding each dataset's folder (default: "
                                       "$DETECTRON2_DATASETS)")
    parser.add_argument("--datasets", nargs="+", choices=DATASETS, default=list(DATASETS), help="which of the 12")
    parser.add_argument("--lambdas", type=positive_int, default=GRID_SIZE, help="grid size in [1e-6, 1e5]")
    parser.add_argument("--max-iter", type=positive_int, default=1000, help="L-BFGS iterations per lambda")
    parser.add_argument("--tolerance", type=positive_float, default=1e-6, help="max |gradient| to stop at")
    parser.add_argument("--dtype", choices=("float64", "float32"), default="float64", help="of the solver")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="draws the held-out validation splits")
    parser.add_argument("--image-size", type=crop_size, default=224, help="shorter side and centre crop")
    parser.add_argument("--arch", choices=ARCHS, default="resnet50", help="architecture for --weights random")
    parser.add_argument("--batch-size", type=positive_int, default=256)
    parser.add_argument("--workers", type=non_negative_int, default=4, help="data loading processes")
    parser.add_argument("--cache-dir", default="output/feature_cache", help="where features are cached")
    add_record_arguments(parser)


def from_args(args):
    settings = LinearTransferSettings(
        datasets=tuple(args.datasets), lambdas=args.lambdas, max_iter=args.max_iter, tolerance=args.tolerance,
        dtype=args.dtype, seed=args.seed, image_size=args.image_size, batch_size=args.batch_size,
        workers=args.workers)
    return (Weights(args.weights, trust=args.trust_checkpoint, arch=args.arch), args.data, None, settings,
            Context(cache_dir=writable_folder(args.cache_dir)))


register(Evaluation(
    "linear_transfer", LinearTransferSettings, run, protocol,
    columns=tuple(Column("linear_transfer", d.title, d.name) for d in TRANSFER_DATASETS.values()) + (
        Column("linear_transfer", "Mean", "mean"),),
    plot=(("12-dataset linear transfer, mean", "mean"),), prepare=prepare, reads=lambda s: list(s.datasets),
    parts=parts, merge=merge,
    ranges=lambda metrics: dict.fromkeys(metrics, (0, 100)), summary=summary, cli=add_arguments,
    from_args=from_args, resources=Resources(gpus_per_node=1, time=4 * 60), resource_kind="linear_transfer",
    demo={"datasets": ["cifar10", "dtd", "flowers102"], "lambdas": 5, "max_iter": 100, "tolerance": 1e-4,
          "image_size": 32, "workers": 0, "batch_size": 128}, description=__doc__))
