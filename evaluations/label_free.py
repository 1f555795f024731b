"""Label-free diagnostics of the frozen backbone (eval/label_free.py): RankMe (Garrido et al. 2023), alpha-ReQ
(Agrawal et al. 2022), alignment and uniformity (Wang & Isola 2020). No labels are read; RankMe compares runs of
one method, not methods (so no best value is marked)."""
from dataclasses import dataclass
from typing import Literal

import torch

from eval.diagnostics import UNIFORMITY_T
from eval.features import ARCHS, build_encoder
from eval.label_free import PAPER_SAMPLES, evaluate_label_free
from evaluations.record import from_trials
from evaluations.registry import Column, Context, Evaluation, Weights, add_record_arguments, register
from pretrain.augment import BYOL_1, MOCO_V2, SIMCLR, SWAV_LARGE, SeededViews, collate, to_device_views
from sslt_core.cli import crop_size, non_negative_int, positive_int
from sslt_core.cluster import Resources
from sslt_core.config import CropSize, NonNegativeInt, PositiveInt

VIEWS = {"moco_v2": MOCO_V2, "simclr": SIMCLR, "byol": BYOL_1, "swav": SWAV_LARGE}


@dataclass(frozen=True)
class LabelFreeSettings:
    samples: PositiveInt = PAPER_SAMPLES
    seed: NonNegativeInt = 0  # draws the images and their views
    split: Literal["train", "val"] = "train"
    views: Literal[tuple(VIEWS)] = "moco_v2"  # the augmentation of the two views alignment compares
    image_size: CropSize = 224
    batch_size: PositiveInt = 256
    workers: NonNegativeInt = 4


def protocol(settings, samples=None):
    """The protocol id; `samples`: the number of images used (fewer than asked on a small split)."""
    return (f"label_free/{settings.samples if samples is None else samples}img-{settings.split}-seed{settings.seed}-"
            f"{settings.views}-crop{settings.image_size}")


def run(weights, data_root, output_dir, settings, context):
    encoder, description = build_encoder(weights.path, weights.arch, trust=weights.trust)

    def view_dataset(folder, indices):
        views = SeededViews(folder, (VIEWS[settings.views],) * 2, settings.image_size, seed=settings.seed)
        return torch.utils.data.Subset(views, indices)

    record, spectrum = evaluate_label_free(encoder, data_root, settings.image_size, view_dataset, settings.samples,
                                           settings.seed, settings.split, settings.batch_size, settings.workers,
                                           collate_fn=collate, to_device=to_device_views)
    record.update(views=settings.views, uniformity_t=UNIFORMITY_T)
    metrics = {k: record[k] for k in ("rankme", "alpha", "alignment", "uniformity")}
    metrics["samples"] = float(record["samples"])
    return from_trials("label_free", protocol(settings, record["samples"]),
                       [{"seed": settings.seed, "metrics": metrics}], f"imagenet/{settings.split}",
                       details={"encoder": description, "label_free": record, "spectrum": spectrum})


def summary(record):
    lf = record.details["label_free"]
    fit = lf["alpha_fit_range"]
    alpha = (f"alpha-ReQ {lf['alpha']:.3f} (R^2 {lf['alpha_r2']:.3f}, eigenvalues {fit[0]}..{fit[1]})"
             if fit else f"alpha-ReQ not defined ({lf['alpha_note']})")
    line = (f"{record.details['encoder']}: RankMe {lf['rankme']:.1f} of {lf['dim']} on {lf['samples']} images; "
            f"{alpha}; alignment {lf['alignment']:.4f}, uniformity {lf['uniformity']:.4f}")
    if lf["samples"] < PAPER_SAMPLES:
        line += (f"\nnote: {lf['samples']} images, fewer than the paper's {PAPER_SAMPLES}: compare only runs "
                 "measured on the same images")
    return line


def add_arguments(parser):
    parser.add_argument("--weights", required=True, help="a checkpoint tools/convert_to_d2.py reads, or 'random'")
    parser.add_argument("--data", help="an ImageFolder root, or a datasets root holding imagenet/")
    parser.add_argument("--split", default="train", choices=("train", "val"))
    parser.add_argument("--samples", type=positive_int, default=PAPER_SAMPLES, help="images embedded")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="draws the images and their views")
    parser.add_argument("--views", choices=sorted(VIEWS), default="moco_v2", help="augmentation of the two views "
                                                                                  "alignment compares")
    parser.add_argument("--image-size", type=crop_size, default=224, help="centre-crop size (resize to size/0.875)")
    parser.add_argument("--arch", choices=ARCHS, default="resnet50", help="architecture for --weights random")
    parser.add_argument("--batch-size", type=positive_int, default=256)
    parser.add_argument("--workers", type=non_negative_int, default=4)
    add_record_arguments(parser)


def from_args(args):
    settings = LabelFreeSettings(samples=args.samples, seed=args.seed, split=args.split, views=args.views,
                                 image_size=args.image_size, batch_size=args.batch_size, workers=args.workers)
    return Weights(args.weights, trust=args.trust_checkpoint, arch=args.arch), args.data, None, settings, Context()


register(Evaluation(
    "label_free", LabelFreeSettings, run, protocol, reads=lambda settings: [f"imagenet/{settings.split}"],
    columns=(Column("label_free", "RankMe", "rankme", best=False),
             Column("label_free", "alpha-ReQ", "alpha", 3, False),
             Column("label_free", "alignment", "alignment", 3, False),
             Column("label_free", "uniformity", "uniformity", 3, False),
             Column("label_free", "images", "samples", 0, False)),
    ranges=lambda metrics: {"rankme": (0, None), "alignment": (0, 4), "uniformity": (None, 0), "samples": (0, None)},
    summary=summary, cli=add_arguments, from_args=from_args, resources=Resources(gpus_per_node=1, time=60),
    resource_kind="label_free", demo={"samples": 16, "image_size": 32, "batch_size": 8, "workers": 0},
    description=__doc__))
