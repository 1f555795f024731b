"""Pretraining throughput on one device: the ceiling and the whole loop through each data pipeline, side by side.

    python benchmarks/pretrain_throughput.py --data /datasets/imagenet --methods simsiam swav --workers 16
    python benchmarks/pretrain_throughput.py --data data/demo --image-size 64 --batch-size 32 --steps 5 --device cpu
    python benchmarks/pretrain_throughput.py --data data/demo --loaders-only --image-size 64 --batch-size 64

For each method (its ImageNet preset's model at --image-size; SwAV with its multi-crop), in one run, always
pretraining's own loop (pretrain/loop.py on sslt_core/engine: its step function with the NaN guard's host sync,
the method's hooks, the lr schedule, the output-std monitor; the checkpoints, metric lines and epoch-end monitors
aside, which run every N steps):
- ceiling: that loop on views already on the device (bf16 autocast + channels_last on a GPU), image pairs per
  second;
- pil: the whole loop from the JPEG files, PIL decoding and augmentation in --workers processes;
- tensor: the whole loop, the workers reading bytes and the device decoding (nvJPEG) and augmenting batches;
with each loop's ratio to the ceiling. --loaders-only times the two data paths alone (views on the device, no
model), on the same files. Prints a table and one JSON line per row.
"""
import argparse
import itertools
import json
import time

import torch

from pretrain.augment import SeededViews, collate, to_device_views
from pretrain.config import load_config
from pretrain.loop import pretrain_loop
from pretrain.methods import build_method
from pretrain.schedule import build_optimizer
from pretrain.view_params import view_size
from sslt_core.datasets import image_folder
from sslt_core.engine import HookBase, precision_setup

STEPS = 10**6  # the schedule's length as the methods see it: the timed steps sit at its start


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def setup(method, args, device):
    run = load_config(f"configs/pretrain/{method}_r50.yaml",
                      [f"train.image_size={args.image_size}", f"train.batch_size={args.batch_size}",
                       f"train.data={args.data}", "train.precision=auto",
                       f"train.max_steps={args.warmup + args.steps}"])
    model = build_method(run)
    model.prepare(run.train, steps_per_epoch=STEPS)
    autocast, channels_last, _ = precision_setup(device, run.train.precision)
    model = model.to(device, memory_format=torch.channels_last if channels_last else torch.preserve_format).train()
    return run, model, build_optimizer(model, run.train), autocast, channels_last


class Timer(HookBase):
    """Seconds from the start of step `warmup` to the end of the last step, the device synchronised at both."""

    def __init__(self, warmup, device):
        self.warmup, self.device, self.start, self.seconds = warmup, device, None, None

    def before_step(self, loop):
        if loop.step == self.warmup:
            synchronize(self.device)
            self.start = time.perf_counter()

    def after_train(self, loop):
        if self.start is not None:  # not where the loop failed before the timed steps
            synchronize(self.device)
            self.seconds = time.perf_counter() - self.start


def timed_loop(run, model, optimizer, batches, autocast, channels_last, device, args):
    """Seconds of args.steps steps of pretraining's loop (after args.warmup) on batches(epoch, skip)."""
    timer = Timer(args.warmup, device)
    loop = pretrain_loop(model, model, optimizer, run.train, batches, STEPS, STEPS, device, channels_last, autocast,
                         hooks=[timer])
    loop.run()
    return timer.seconds


def loader(run, model, args, pipeline):
    dataset = SeededViews(image_folder("imagenet", "train", args.data), model.view_recipes, args.image_size,
                          seed=0, pipeline=pipeline)
    return torch.utils.data.DataLoader(dataset, batch_size=args.batch_size, shuffle=True, drop_last=True,
                                       num_workers=args.workers, collate_fn=collate,
                                       pin_memory=torch.device(args.device).type == "cuda",
                                       persistent_workers=args.workers > 0, prefetch_factor=4 if args.workers else None)


def timed(steps, warmup, run_step, device):
    for k in range(warmup):
        run_step(k)
    synchronize(device)
    start = time.perf_counter()
    for k in range(steps):
        run_step(warmup + k)
    synchronize(device)
    return time.perf_counter() - start


def measure(method, args, device):
    run, model, optimizer, autocast, channels_last = setup(method, args, device)
    rows = {}
    if not args.loaders_only:
        sizes = [view_size(r, args.image_size) for r in model.view_recipes]
        fixed = [torch.randn(args.batch_size, 3, s, s, device=device) for s in sizes]
        seconds = timed_loop(run, model, optimizer, lambda epoch, skip: itertools.repeat((fixed, None)), autocast,
                             channels_last, device, args)
        rows["ceiling"] = args.batch_size * args.steps / seconds
    for pipeline in ("pil", "tensor"):
        batches = endless(loader(run, model, args, pipeline))
        if args.loaders_only:  # the data path alone: views on the device, no model
            seconds = timed(args.steps, args.warmup, lambda k, batches=batches: to_device_views(next(batches)[0],
                                                                                                device), device)
        else:
            seconds = timed_loop(run, model, optimizer, lambda epoch, skip, batches=batches: batches, autocast,
                                 channels_last, device, args)
        rows[pipeline] = args.batch_size * args.steps / seconds
        batches.close()  # this pipeline's workers stop before the next one is timed
    return rows


def endless(data_loader):
    """Batches epoch after epoch, each one loaded anew (itertools.cycle would replay the first epoch from memory)."""
    while True:
        yield from data_loader


def _ratio(rows, key, ceiling):
    return f"{rows[key] / ceiling:.2f}" if ceiling else "—"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="ImageFolder root (or a datasets root holding imagenet/)")
    parser.add_argument("--methods", nargs="+", default=["simsiam", "swav"])
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=256, help="images per step (pairs for two-view methods)")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--loaders-only", action="store_true", help="time the data paths alone")
    args = parser.parse_args()
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"device: {name}; batch {args.batch_size}, {args.image_size} px, {args.steps} steps after "
          f"{args.warmup}, {args.workers} workers" + ("; data paths only" if args.loaders_only else ""))
    print(f"{'method':8s} {'ceiling':>10s} {'pil':>10s} {'tensor':>10s}  pil/ceiling  tensor/ceiling  tensor/pil")
    for method in args.methods:
        rows = measure(method, args, device)
        ceiling = rows.get("ceiling")
        print(f"{method:8s} {ceiling or float('nan'):10.1f} {rows['pil']:10.1f} {rows['tensor']:10.1f}  "
              f"{_ratio(rows, 'pil', ceiling):>11s}  {_ratio(rows, 'tensor', ceiling):>14s}  "
              f"{rows['tensor'] / rows['pil']:10.2f}")
        print(json.dumps({"method": method, "device": name, "pairs_per_s": rows, "batch_size": args.batch_size,
                          "image_size": args.image_size, "workers": args.workers,
                          "loaders_only": args.loaders_only}))


if __name__ == "__main__":
    main()
