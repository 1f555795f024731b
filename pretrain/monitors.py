"""What pretraining watches, as hooks of the engine's loop: each step's loss and output std and their epoch
means, and at the end of an epoch the kNN monitor, the label-free monitors and the collapse warnings."""
import json
import math

import torch

from eval.diagnostics import dimensional_collapse_warning
from eval.features import split_features
from eval.knn import accuracy, knn_classify
from pretrain.label_free_monitor import label_free_monitor, scalars
from pretrain.method import output_std
from sslt_core.atomic import open_output
from sslt_core.datasets import dataset_path
from sslt_core.engine import EpochMonitor, HookBase


@torch.no_grad()
def knn_monitor(encoder, data, image_size, k, temperature, device):
    """kNN top-1 of the backbone's features, train split as bank and val split as queries (None without val)."""
    if not (dataset_path("imagenet", data) / "val").is_dir():
        return None
    was_training = encoder.training
    splits, classes, _ = split_features(encoder, "pretraining monitor", None, data, image_size, batch_size=256,
                                        device=device)
    encoder.train(was_training)
    (bank_x, bank_y), (query_x, query_y) = splits["train"], splits["val"]
    rankings = knn_classify(bank_x, bank_y, query_x, (k,), temperature, len(classes), backend="torch")
    return accuracy(rankings[k], query_y)["top1"]


class EpochStatistics(HookBase):
    """Each step's output std (SimSiam sec. 4.1) into loop.metrics; the epoch's mean loss and output std into its
    summary. `partial`: (losses, stds) of the epoch a checkpoint stopped in, so that a resumed epoch's means are
    the uninterrupted run's."""

    def __init__(self, partial=((), ())):
        self.partial = (list(partial[0]), list(partial[1]))
        self.losses, self.stds = [], []

    def before_epoch(self, loop):
        self.losses, self.stds = self.partial
        self.partial = ([], [])

    def after_step(self, loop):
        self.losses.append(loop.metrics["loss"])
        self.stds.append(output_std(loop.outputs["embedding"]))
        loop.metrics["output_std"] = self.stds[-1]

    def after_epoch(self, loop):
        if loop.summary is not None:
            dim = loop.outputs["embedding"].shape[1]
            loop.summary.update({"epoch": loop.epoch + 1, "step": loop.step,
                                 "loss": sum(self.losses) / len(self.losses),
                                 "output_std": sum(self.stds) / len(self.stds),
                                 "output_std_reference": 1 / math.sqrt(dim), "knn_top1": None})

    def partial_epoch(self, loop):
        """What a checkpoint records of the epoch under way (nothing at an epoch's end)."""
        return (self.losses, self.stds) if loop.step % loop.steps_per_epoch else ([], [])


def knn_hook(monitor, every, enabled):
    """summary["knn_top1"] = monitor() every `every` epochs."""
    def record(loop):
        loop.summary["knn_top1"] = monitor()

    return EpochMonitor(record, every, enabled)


def label_free_hook(method, probe, device, autocast, cfg, output_dir, say):
    """The label-free monitors (pretrain/label_free_monitor.py) on rank 0 every train.diagnostics_every epochs:
    their scalars into the summary, the two covariance spectra into spectra.jsonl, a dimensional-collapse warning
    into the log."""
    def record(loop):
        epoch_number = loop.epoch + 1
        result = label_free_monitor(method, probe, device, autocast, workers=min(cfg.workers, 4))
        if epoch_number == cfg.diagnostics_every:  # its cost, once
            say(f"label-free monitors: {result['seconds']:.1f} s on {result['samples']} probe images "
                f"(train.diagnostics_samples {cfg.diagnostics_samples}, seed {cfg.diagnostics_seed})")
        with open_output(output_dir / "spectra.jsonl", "a") as file:
            file.write(json.dumps({"epoch": epoch_number, "step": loop.step, "backbone": result["backbone_spectrum"],
                                   "projector": result["projector_spectrum"]}) + "\n")
        loop.summary.update(scalars(result))
        dim = loop.outputs["embedding"].shape[1]
        dimensional = dimensional_collapse_warning(result["projector_rankme"], result["samples"], dim,
                                                   loop.summary["output_std"])
        if dimensional:
            say(f"warning: epoch {epoch_number}: projector output: {dimensional}")

    return EpochMonitor(record, cfg.diagnostics_every, probe is not None)


def collapse_hook(method, say, is_main):
    """The method's own collapse warning after every epoch: summary["collapse_warning"], and the log on rank 0."""
    def record(loop):
        warning = method.collapse_warning(loop.summary["loss"], loop.summary["output_std"],
                                          loop.outputs["embedding"].shape[1])
        loop.summary["collapse_warning"] = warning
        if warning and is_main:
            say(f"warning: epoch {loop.epoch + 1}: {warning}")

    return EpochMonitor(record)
