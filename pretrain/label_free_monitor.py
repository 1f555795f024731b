"""The label-free monitors of pretraining (train.diagnostics_every): RankMe, the covariance spectrum and alpha-ReQ
of the backbone and projector outputs, and alignment / uniformity (eval/diagnostics.py), on a fixed probe set.

The probe set is `train.diagnostics_samples` training images drawn once from `train.diagnostics_seed` (the same
images at every epoch and after a resume; fewer when the split is smaller, recorded as `samples`). The backbone
and projector embed them under the evaluation transform (resize, centre crop) with the model in eval mode;
alignment uses two views of each probe image drawn by the method's own first two view recipes from the same seed,
so they too are the same at every epoch. No global generator is touched (exact resume).
"""
import time

import torch

from eval import diagnostics
from eval.features import eval_transform
from eval.label_free import probe_indices
from pretrain.augment import SeededViews, collate, to_device_views
from sslt_core.datasets import image_folder
from sslt_core.rng import rng_scope


class ProbeSet:
    """The probe images under the evaluation transform (`plain_subset`) and as two seeded views each (`views`)."""

    def __init__(self, data, samples, seed, image_size, recipes):
        self.plain = image_folder("imagenet", "train", data, transform=eval_transform(image_size))
        self.indices = probe_indices(len(self.plain), samples, seed)
        views = SeededViews(image_folder("imagenet", "train", data), recipes[:2], image_size, seed=seed)
        self.views = torch.utils.data.Subset(views, self.indices)
        self.plain_subset = torch.utils.data.Subset(self.plain, self.indices)
        self.seed = seed


@torch.no_grad()
def _embed(method, loader, device, autocast, pairs):
    backbone, projector, view_a, view_b = [], [], [], []
    for batch, _ in loader:
        if pairs:
            a, b = to_device_views(batch, device)[:2]
            with autocast:
                view_a.append(method.projector(method.encoder(a)).float().cpu())
                view_b.append(method.projector(method.encoder(b)).float().cpu())
        else:
            with autocast:
                h = method.encoder(batch.to(device))
                backbone.append(h.float().cpu())
                projector.append(method.projector(h).float().cpu())
    if pairs:
        return torch.cat(view_a), torch.cat(view_b)
    return torch.cat(backbone), torch.cat(projector)


def label_free_monitor(method, probe, device, autocast, batch_size=256, workers=0):
    """{"backbone_rankme", ..., "projector_rankme", ..., "alignment", "uniformity", "samples", "seconds"}:
    RankMe / alpha-ReQ / spectrum of both outputs, alignment of the projector's two-view embeddings and
    uniformity of its single-view embeddings (the space the loss acts on), in eval mode; training mode restored."""
    start = time.perf_counter()
    was_training = method.training
    method.eval()
    try:
        with rng_scope():  # data loaders draw their base seed from the global generator
            plain = torch.utils.data.DataLoader(probe.plain_subset, batch_size=batch_size, num_workers=workers,
                                                generator=torch.Generator().manual_seed(probe.seed))
            views = torch.utils.data.DataLoader(probe.views, batch_size=batch_size, num_workers=workers,
                                                collate_fn=collate, generator=torch.Generator().manual_seed(probe.seed))
            backbone, projector = _embed(method, plain, device, autocast, pairs=False)
            view_a, view_b = _embed(method, views, device, autocast, pairs=True)
    finally:
        method.train(was_training)
    record = {**diagnostics.summary(backbone, "backbone_"), **diagnostics.summary(projector, "projector_"),
              "alignment": diagnostics.alignment(view_a, view_b), "uniformity": diagnostics.uniformity(projector),
              "samples": len(probe.indices), "probe_seed": probe.seed}
    record["seconds"] = time.perf_counter() - start
    return record


SPECTRA = ("backbone_spectrum", "projector_spectrum")


def scalars(record):
    """The monitor's numbers for metrics.jsonl and TensorBoard: the spectra go to spectra.jsonl, the time to the
    log (a resumed run's record must equal the uninterrupted one's)."""
    return {f"diag_{k}": v for k, v in record.items()
            if k not in (*SPECTRA, "probe_seed", "seconds") and isinstance(v, (int, float))}
