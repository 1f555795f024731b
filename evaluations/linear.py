"""The linear probe on a frozen backbone (MoCo's and SimSiam's main_lincls.py, eval/linear.py): trained on
ImageNet train, scored on val after the last epoch (no model selection)."""
from dataclasses import dataclass, replace
from typing import Literal

from eval.features import ARCHS, build_encoder, split_features
from eval.linear import PROTOCOLS, adapted, linear_probe, train_transform
from evaluations.record import from_trials
from evaluations.registry import Column, Context, Evaluation, Weights, add_record_arguments, register
from sslt_core.cli import crop_size, non_negative_int, positive_int, writable_folder
from sslt_core.cluster import Resources
from sslt_core.config import CropSize, NonNegativeInt, PositiveInt
from sslt_core.datasets import image_folder


@dataclass(frozen=True)
class LinearSettings:
    protocol: Literal[tuple(PROTOCOLS)] = "moco"
    cached: bool = True  # train on cached center-crop features (fast) instead of augmented crops on the fly
    epochs: PositiveInt | None = None  # None: the protocol's
    batch_size: PositiveInt | None = None  # None: the protocol's; the lr scales linearly with it
    image_size: CropSize = 224
    workers: NonNegativeInt = 4
    seed: NonNegativeInt = 0


def recipe(settings):
    return adapted(PROTOCOLS[settings.protocol], settings.batch_size, settings.epochs)


def prepare(settings):
    """The settings with the protocol's batch size and epochs filled in (the record holds what ran)."""
    r = recipe(settings)
    return replace(settings, batch_size=r.batch_size, epochs=r.epochs)


def protocol(settings):
    r = recipe(settings)
    return (f"linear/{settings.protocol}-{r.optimizer}-lr{r.lr:g}-bs{r.batch_size}-{r.epochs}ep-"
            f"{'cached' if settings.cached else 'augmented'}-crop{settings.image_size}")


def run(weights, data_root, output_dir, settings, context):
    encoder, description = build_encoder(weights.path, weights.arch, trust=weights.trust)
    splits, classes, _ = split_features(encoder, description, weights.path, data_root, settings.image_size,
                                        context.cache_dir, num_workers=settings.workers)
    augmented = None if settings.cached else image_folder("imagenet", "train", data_root,
                                                          transform=train_transform(settings.image_size))
    r = recipe(settings)
    result, mode = linear_probe(encoder, splits["train"], splits["val"], len(classes), r, augmented,
                                seed=settings.seed)
    return from_trials("linear", protocol(settings), [{"seed": settings.seed, "metrics": result}], "imagenet/val",
                       global_batch_size=r.batch_size,
                       details={"encoder": description, "mode": mode, "recipe": {
                           "optimizer": r.optimizer, "lr": r.lr, "batch_size": r.batch_size, "epochs": r.epochs,
                           "milestones": list(r.milestones), "weight_decay": r.weight_decay,
                           "momentum": r.momentum}})


def summary(record):
    return (f"linear probe ({record.settings['protocol']} protocol, {record.details['mode']}): "
            f"top-1 {record.metrics['top1']:.2f}  top-5 {record.metrics['top5']:.2f}")


def add_arguments(parser):
    parser.add_argument("--weights", required=True, help="a checkpoint tools/convert_to_d2.py reads, or 'random'")
    parser.add_argument("--data", help="an ImageFolder root with train/ and val/, or a datasets root with imagenet/")
    parser.add_argument("--protocol", choices=sorted(PROTOCOLS), default="moco")
    parser.add_argument("--cached", action="store_true", help="train on cached center-crop features (fast)")
    parser.add_argument("--batch-size", type=positive_int,
                        help="default: the protocol's; the lr scales linearly with it")
    parser.add_argument("--epochs", type=positive_int, help="default: the protocol's; lr milestones scale with it")
    parser.add_argument("--image-size", type=crop_size, default=224, help="crop size")
    parser.add_argument("--arch", choices=ARCHS, default="resnet50", help="architecture for --weights random")
    parser.add_argument("--workers", type=non_negative_int, default=4)
    parser.add_argument("--seed", type=non_negative_int, default=0)
    parser.add_argument("--cache-dir", default="output/feature_cache")
    add_record_arguments(parser)


def from_args(args):
    settings = LinearSettings(protocol=args.protocol, cached=args.cached, epochs=args.epochs,
                              batch_size=args.batch_size, image_size=args.image_size, workers=args.workers,
                              seed=args.seed)
    return (Weights(args.weights, trust=args.trust_checkpoint, arch=args.arch), args.data, None, settings,
            Context(cache_dir=writable_folder(args.cache_dir)))


register(Evaluation(
    "linear", LinearSettings, run, protocol, prepare=prepare, columns=(Column("linear", "linear", "top1"),),
    plot=(("linear top-1", "top1"),), ranges=lambda metrics: dict.fromkeys(("top1", "top5"), (0, 100)),
    summary=summary, cli=add_arguments,
    from_args=from_args, resources=Resources(gpus_per_node=1, time=24 * 60), resource_kind="linear",
    demo={"epochs": 2, "batch_size": 32, "image_size": 32, "workers": 0}, description=__doc__))
