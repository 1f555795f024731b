"""Weighted kNN on frozen features (Wu et al. 2018; the vote of DINO's eval_knn.py): ImageNet train as the bank,
val as the queries. The first k is the reported one; every k's accuracy is in the record's details."""
from dataclasses import dataclass
from typing import Literal

from eval.features import ARCHS, build_encoder, split_features
from eval.knn import accuracy, knn_classify
from evaluations.record import from_trials
from evaluations.registry import Column, Context, Evaluation, Weights, add_record_arguments, register
from sslt_core.cli import crop_size, non_negative_int, positive_float, positive_int, writable_folder
from sslt_core.cluster import Resources
from sslt_core.config import CropSize, NonNegativeInt, PositiveFloat, PositiveInt


@dataclass(frozen=True)
class KnnSettings:
    k: tuple[PositiveInt, ...] = (20,)
    temperature: PositiveFloat = 0.07
    backend: Literal["faiss", "torch"] = "faiss"
    image_size: CropSize = 224  # center crop after a resize to image_size / 0.875
    batch_size: PositiveInt = 256
    workers: NonNegativeInt = 4


def protocol(settings):
    return f"knn/k{settings.k[0]}-t{settings.temperature:g}-crop{settings.image_size}"


def run(weights, data_root, output_dir, settings, context):
    encoder, description = build_encoder(weights.path, weights.arch, trust=weights.trust)
    splits, classes, reused = split_features(encoder, description, weights.path, data_root, settings.image_size,
                                             context.cache_dir, batch_size=settings.batch_size,
                                             num_workers=settings.workers)
    (train_x, train_y), (test_x, test_y) = splits["train"], splits["val"]
    rankings = knn_classify(train_x, train_y, test_x, list(settings.k), settings.temperature, len(classes),
                            settings.backend)
    per_k = {str(k): accuracy(r, test_y) for k, r in rankings.items()}
    details = {"encoder": description, "knn": per_k, "train_size": len(train_y), "test_size": len(test_y),
               "classes": len(classes), "features": "reused from cache" if all(reused.values()) else "extracted"}
    beyond = [k for k in settings.k if k > len(train_y)]
    if beyond:  # knn_classify votes with the whole bank then: said, and recorded with the results
        details["note"] = f"k {beyond} exceed the {len(train_y)} training images: those votes use the whole bank"
    return from_trials("knn", protocol(settings), [{"seed": None, "metrics": per_k[str(settings.k[0])]}],
                       "imagenet/val", details=details)


def summary(record):
    train_size = record.details["train_size"]
    lines = []
    for k, acc in record.details["knn"].items():
        whole = f" (whole bank of {train_size})" if int(k) > train_size else ""
        lines.append(f"kNN k={k:>4} T={record.settings['temperature']}: top-1 {acc['top1']:.2f}  "
                     f"top-5 {acc['top5']:.2f}{whole}")
    return "\n".join(lines)


def add_arguments(parser):
    parser.add_argument("--weights", required=True, help="a checkpoint in any layout tools/convert_to_d2.py reads, "
                                                         "or 'random'")
    parser.add_argument("--data", help="an ImageFolder root with train/ and val/, or a datasets root holding "
                                       "imagenet/ (default: $DETECTRON2_DATASETS)")
    parser.add_argument("--k", type=positive_int, nargs="+", default=[10, 20, 100, 200], help="neighbour counts")
    parser.add_argument("--temperature", type=positive_float, default=0.07, help="T in the vote weight exp(s/T)")
    parser.add_argument("--backend", choices=("faiss", "torch"), default="faiss")
    parser.add_argument("--image-size", type=crop_size, default=224, help="center-crop size (resize to size/0.875)")
    parser.add_argument("--arch", choices=ARCHS, default="resnet50", help="architecture for --weights random")
    parser.add_argument("--batch-size", type=positive_int, default=256)
    parser.add_argument("--workers", type=non_negative_int, default=4, help="data loading processes")
    parser.add_argument("--cache-dir", default="output/feature_cache", help="where features are cached")
    add_record_arguments(parser)


def from_args(args):
    settings = KnnSettings(k=tuple(args.k), temperature=args.temperature, backend=args.backend,
                           image_size=args.image_size, batch_size=args.batch_size, workers=args.workers)
    return (Weights(args.weights, trust=args.trust_checkpoint, arch=args.arch), args.data, None, settings,
            Context(cache_dir=writable_folder(args.cache_dir)))


register(Evaluation(
    "knn", KnnSettings, run, protocol, columns=(Column("linear", "kNN", "top1"),), plot=(("kNN top-1", "top1"),),
    ranges=lambda metrics: dict.fromkeys(("top1", "top5"), (0, 100)), summary=summary, cli=add_arguments,
    from_args=from_args, resources=Resources(gpus_per_node=1, time=4 * 60), resource_kind="knn",
    demo={"k": [5, 200], "image_size": 32, "workers": 0}, description=__doc__))
