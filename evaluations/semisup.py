"""Semi-supervised fine-tuning of the whole network on 1% / 10% of the ImageNet labels (SimCLR Table 7, BYOL Table 2,
SwAV Table 2), the subset lists shipped with the toolkit, each paper's recipe a preset (eval/semisup.py): top-1 /
top-5 on ImageNet val per subset. Multi-GPU: torchrun --nproc_per_node=N tools/evaluate.py semisup ... (the batch
is global)."""
import copy
import random
import re
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Literal

from eval.features import ARCHS
from eval.semisup import (
    HELDOUT,
    PRESETS,
    SIZES,
    Options,
    adapted,
    build_model,
    evaluate,
    finetune,
    nearer_size,
    preset,
    select,
    test_transform,
    train_transform,
)
from eval.subsets import OFFICIAL, PER_CLASS, SampleDataset, resolve
from evaluations.record import from_trials
from evaluations.registry import Column, Context, Evaluation, Weights, add_record_arguments, register
from sslt_core.atomic import write_json_atomic
from sslt_core.cli import crop_size, non_negative_int, positive_float, positive_int
from sslt_core.cluster import Resources
from sslt_core.config import CropSize, NonNegativeInt, PositiveFloat, PositiveInt
from sslt_core.datasets import dataset_path
from sslt_core.engine import distributed, setup_distributed
from sslt_core.errors import ConfigError, DatasetError
from sslt_core.listing import class_samples
from sslt_core.lock import OutputLock

TAGS = {"1percent": "1pct", "10percent": "10pct"}


@dataclass(frozen=True)
class SemisupSettings:
    protocol: Literal[PRESETS] = "simclr"
    subsets: tuple[str, ...] = ("1percent", "10percent")  # 1percent | 10percent | per-class-K | FILE | 1percent=FILE
    epochs: PositiveInt | None = None  # None: the preset's (and BYOL's grid of epochs)
    batch_size: PositiveInt | None = None  # global; None: the preset's; the lr follows by the preset's rule
    lr: PositiveFloat | None = None  # the trunk's lr at the batch; None: the preset's (and BYOL's grid)
    heldout: PositiveInt = HELDOUT  # byol: images held out of train to choose lr and epochs on
    image_size: CropSize = 224
    precision: Literal["auto", "bf16", "fp32"] = "auto"
    checkpoint_every: NonNegativeInt = 500  # steps; 0: after each epoch only
    eval_batch_size: PositiveInt = 256
    workers: NonNegativeInt = 8
    seed: NonNegativeInt = 0


def split(subset):
    """(slot, source) of a subset setting: "1percent" -> ("1percent", "1percent"); "1percent=FILE" (a list that stands
    in for the official 1%: its column, its recipe) -> ("1percent", FILE); "per-class-K" or FILE -> (None, it)."""
    slot, equals, source = subset.partition("=")
    if equals and slot in SIZES:
        return slot, source
    return (subset if subset in SIZES else None), subset


def tag(subset):
    """The metric suffix of a subset: 1pct, 10pct (also for a list in their place), per-class-K, a list file's stem."""
    slot, source = split(subset)
    if slot is not None:
        return TAGS[slot]
    return source if PER_CLASS.fullmatch(source) else re.sub(r"[^A-Za-z0-9_.-]", "_", Path(source).stem)


def _expected_size(subset):
    """The recipe's subset size: an official list's (or the slot's a list stands in for); a list file's nearer one by
    its line count; per-class-K's by K x 1000 classes (ImageNet; the run records the size it used)."""
    slot, source = split(subset)
    if slot is not None:
        return slot
    if PER_CLASS.fullmatch(source):
        return nearer_size(int(PER_CLASS.fullmatch(source).group(1)) * 1000)
    lines = Path(source).expanduser().read_text(errors="replace").splitlines()
    return nearer_size(sum(1 for line in lines if line.strip()))


def recipe_of(settings, size):
    return adapted(preset(settings.protocol, size), settings.batch_size, settings.epochs, settings.lr)


def prepare(settings):
    if not settings.subsets:
        raise ConfigError("semisup: subsets is empty; name 1percent, 10percent, per-class-K or a list file")
    if len({tag(s) for s in settings.subsets}) != len(settings.subsets):
        raise ConfigError(f"semisup: subsets {list(settings.subsets)} repeat a name; each subset once")
    for subset in settings.subsets:
        source = split(subset)[1]
        if source not in OFFICIAL and not PER_CLASS.fullmatch(source) and not Path(source).expanduser().is_file():
            raise ConfigError(f"semisup: subset '{subset}' is neither 1percent, 10percent, per-class-K, a list file "
                              "nor 1percent=LIST / 10percent=LIST; pass one of those")
    return settings


def _recipe_id(r):
    lr = (f"lr{'|'.join(f'{v:g}' for v in r.lr_grid)}" if r.selection == "heldout" and len(r.lr_grid) > 1
          else f"lr{r.lr:g}") + (f"-head{r.head_lr:g}" if r.head_lr is not None else "")
    epochs = ("|".join(map(str, r.epochs_grid)) if r.selection == "heldout" and len(r.epochs_grid) > 1
              else str(r.epochs))
    return f"{lr}-bs{r.batch_size}-{epochs}ep"


def protocol(settings):
    """e.g. semisup/simclr-1pct:lr0.8-bs4096-60ep+10pct:lr0.8-bs4096-30ep-crop224."""
    parts = [f"{tag(s)}{'' if split(s)[1] in OFFICIAL else '[' + split(s)[1] + ']'}:"
             f"{_recipe_id(recipe_of(settings, _expected_size(s)))}" for s in settings.subsets]
    return f"semisup/{settings.protocol}-{'+'.join(parts)}-crop{settings.image_size}"


def _val_set(data_root, classes, crop):
    val_dir = dataset_path("imagenet", data_root) / "val"
    val_classes, samples = class_samples(str(val_dir))
    index = {name: i for i, name in enumerate(classes)}
    unknown = sorted(set(val_classes) - set(index))
    if unknown:
        raise DatasetError(f"{val_dir} has classes {unknown[:3]} that the train split lacks; both splits must share "
                           "one class list")
    if not samples:
        raise DatasetError(f"{val_dir} holds no images to score on")
    return SampleDataset([(p, index[val_classes[label]]) for p, label in samples], test_transform(crop))


def _heldout_samples(data_root, subset_samples, count, seed):
    """BYOL app. C.1: `count` train images outside the labelled subset, drawn with `seed`, to choose lr and epochs."""
    train_dir = dataset_path("imagenet", data_root) / "train"
    _, samples = class_samples(str(train_dir))
    used = {path for path, _ in subset_samples}
    pool = [s for s in samples if s[0] not in used]
    if len(pool) < count:
        raise DatasetError(f"byol: {len(pool)} train images lie outside the subset, fewer than the {count} to hold "
                           "out for choosing lr and epochs; pass a smaller --heldout")
    return random.Random(seed).sample(pool, count)


def _one_subset(weights, data_root, folder, settings, subset, context, device):
    slot, source = split(subset)
    samples, classes, description = resolve(source, data_root)
    size = slot or nearer_size(len(samples))
    recipe = recipe_of(settings, size)
    options = Options(workers=settings.workers, seed=settings.seed, precision=settings.precision,
                      progress=context.progress, resume=context.resume, checkpoint_every=settings.checkpoint_every,
                      eval_batch_size=settings.eval_batch_size)
    crop = settings.image_size
    train_set = SampleDataset(samples, train_transform(crop), seed=settings.seed)
    val_set = _val_set(data_root, classes, crop)
    recipe_data = {**recipe.__dict__, "milestones": list(recipe.milestones), "lr_grid": list(recipe.lr_grid),
                   "epochs_grid": list(recipe.epochs_grid)}
    details = {**description, "official": source in OFFICIAL, "recipe_of": size, "classes": len(classes),
               "recipe": recipe_data}
    if recipe.selection == "heldout" and (len(recipe.lr_grid) > 1 or len(recipe.epochs_grid) > 1):
        heldout = SampleDataset(_heldout_samples(data_root, samples, settings.heldout, settings.seed),
                                test_transform(crop))
        trials, best = [], None
        for epochs in recipe.epochs_grid:
            for lr in recipe.lr_grid:
                trial = replace(recipe, lr=lr, epochs=epochs)
                model, encoder = build_model(weights.path, weights.arch, weights.trust, trial, len(classes),
                                             settings.seed)
                history, _, model = finetune(model, train_set, trial, folder / f"lr{lr:g}-{epochs}ep", options,
                                             heldout, device)
                trials.append({"lr": lr, "epochs": epochs, "heldout": history[-1]})
                if best is None or history[-1]["top1"] > best[0]["heldout"]["top1"]:
                    best = (trials[-1], copy.deepcopy(model).cpu())
        chosen, model = best
        scores = evaluate(model.to(device), val_set, device, settings.eval_batch_size, settings.workers)
        details.update(encoder=encoder, grid=trials, chosen={"lr": chosen["lr"], "epochs": chosen["epochs"]},
                       heldout_images=settings.heldout)
        return scores, details, f"imagenet/train-heldout-{settings.heldout}"
    model, encoder = build_model(weights.path, weights.arch, weights.trust, recipe, len(classes), settings.seed)
    history, loop, _ = finetune(model, train_set, recipe, folder, options, val_set, device)
    chosen = select(history, recipe.selection)
    details.update(encoder=encoder, epochs=history, chosen_epoch=chosen["epoch"], steps=loop.step)
    if recipe.selection == "best-val":
        details["note"] = ("SwAV's protocol: the best epoch on ImageNet val is reported, chosen on the split it is "
                           "scored on (an optimistic number)")
    return {"top1": chosen["top1"], "top5": chosen["top5"]}, details, (
        "imagenet/val" if recipe.selection == "best-val" else None)


def run(weights, data_root, output_dir, settings, context):
    device, _ = setup_distributed()
    with TemporaryDirectory() as scratch, ExitStack() as held:  # no --output-dir: a folder removed at the end
        base = Path(output_dir) if output_dir is not None else Path(scratch)
        if output_dir is not None and distributed.rank() == 0:  # the output folder is one run's at a time
            held.enter_context(OutputLock(base))
        metrics, details, selected = {}, {}, set()
        for subset in settings.subsets:
            scores, detail, selected_on = _one_subset(weights, data_root, base / tag(subset), settings, subset,
                                                      context, device)
            metrics.update({f"{k}_{tag(subset)}": v for k, v in scores.items()})
            details[tag(subset)] = {**detail, "selected_on": selected_on}
            if selected_on:
                selected.add(selected_on)
            if distributed.rank() == 0 and output_dir is not None:
                write_json_atomic(base / tag(subset) / "result.json", {"metrics": scores, "details": detail})
    batch = recipe_of(settings, _expected_size(settings.subsets[0])).batch_size
    return from_trials("semisup", protocol(settings), [{"seed": settings.seed, "metrics": metrics}], "imagenet/val",
                       selected_on=" + ".join(sorted(selected)) or None, global_batch_size=batch,
                       environment={"device": device.type}, details={"subsets": details,
                                                                     "world_size": distributed.world_size()})


def summary(record):
    lines = []
    for subset, detail in record.details["subsets"].items():
        top1, top5 = record.metrics[f"top1_{subset}"], record.metrics[f"top5_{subset}"]
        chosen = f", selected on {detail['selected_on']}" if detail.get("selected_on") else ""
        lines.append(f"semisup {record.settings['protocol']} {subset} ({detail['images']} images{chosen}): "
                     f"top-1 {top1:.2f}  top-5 {top5:.2f}")
    return "\n".join(lines)


def add_arguments(parser):
    parser.add_argument("--weights", required=True, help="a checkpoint tools/convert_to_d2.py reads, or 'random'")
    parser.add_argument("--data", help="a datasets root holding imagenet/{train,val} (default: $DETECTRON2_DATASETS)")
    parser.add_argument("--protocol", choices=PRESETS, default="simclr", help="the paper whose recipe is run")
    parser.add_argument("--subset", nargs="+", default=["1percent", "10percent"],
                        help="1percent, 10percent (the shipped official lists), per-class-K, a list file of train "
                             "file names, or 1percent=LIST / 10percent=LIST (a list in that column's place)")
    parser.add_argument("--epochs", type=positive_int, help="default: the preset's")
    parser.add_argument("--batch-size", type=positive_int, help="global; default: the preset's (lr follows its rule)")
    parser.add_argument("--lr", type=positive_float, help="the trunk's lr at the batch; default: the preset's")
    parser.add_argument("--heldout", type=positive_int, default=HELDOUT, help="byol: images held out of train")
    parser.add_argument("--image-size", type=crop_size, default=224, help="crop size")
    parser.add_argument("--precision", choices=("auto", "bf16", "fp32"), default="auto")
    parser.add_argument("--checkpoint-every", type=non_negative_int, default=500, help="steps (0: each epoch)")
    parser.add_argument("--eval-batch-size", type=positive_int, default=256)
    parser.add_argument("--arch", choices=ARCHS, default="resnet50", help="architecture for --weights random")
    parser.add_argument("--workers", type=non_negative_int, default=8)
    parser.add_argument("--seed", type=non_negative_int, default=0)
    parser.add_argument("--output-dir", default="output/semisup", help="checkpoints, metrics.jsonl, tensorboard/")
    parser.add_argument("--resume", action="store_true", help="continue the run in --output-dir")
    parser.add_argument("--no-progress", action="store_true")
    add_record_arguments(parser)


def from_args(args):
    settings = SemisupSettings(protocol=args.protocol, subsets=tuple(args.subset), epochs=args.epochs,
                               batch_size=args.batch_size, lr=args.lr, heldout=args.heldout,
                               image_size=args.image_size, precision=args.precision,
                               checkpoint_every=args.checkpoint_every, eval_batch_size=args.eval_batch_size,
                               workers=args.workers, seed=args.seed)
    return (Weights(args.weights, trust=args.trust_checkpoint, arch=args.arch), args.data, args.output_dir, settings,
            Context(progress=not args.no_progress, resume=args.resume))


COLUMNS = tuple(Column("semisup", f"{share} top-{k}", f"top{k}_{t}", best=True)
                for share, t in (("1%", "1pct"), ("10%", "10pct")) for k in (1, 5))

register(Evaluation(
    "semisup", SemisupSettings, run, protocol, columns=COLUMNS, prepare=prepare,
    plot=(("1% top-1", "top1_1pct"), ("10% top-1", "top1_10pct")),
    ranges=lambda metrics: dict.fromkeys(metrics, (0, 100)), reads=lambda settings: ["imagenet/train",
                                                                                     "imagenet/val"],
    files=lambda settings: {split(s)[1]: Path(split(s)[1]).read_text() for s in settings.subsets
                            if Path(split(s)[1]).is_file()},
    summary=summary, cli=add_arguments, from_args=from_args,
    resources=Resources(gpus_per_node=8, time=24 * 60), resource_kind="semisup",
    demo={"subsets": ["1percent=per-class-1", "10percent=per-class-2"], "epochs": 1, "batch_size": 10,
          "image_size": 32, "workers": 0, "eval_batch_size": 40, "checkpoint_every": 0}, description=__doc__))
