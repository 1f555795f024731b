"""The label-free evaluation of any checkpoint the converter reads: RankMe, alpha-ReQ and the covariance spectrum
of the 2048-d pooled backbone features, and alignment / uniformity (eval/diagnostics.py), on `samples` images of
a split drawn with a recorded seed.

A checkpoint from outside has no projector we could trust to be wired as in training, so this evaluates the
backbone (the pretraining monitors, pretrain/label_free_monitor.py, also see the projector). Alignment uses two
views per image from a stated augmentation recipe (MoCo v2's, also SimSiam's, by default), drawn from the seed.
RankMe ranks runs of one method (checkpoints, hyperparameters), not methods against each other (Garrido et al.
2023, sec. 5).
"""
import time

import torch

from eval import diagnostics
from eval.features import check_features, eval_transform, feature_device
from sslt_core.datasets import image_folder
from sslt_core.errors import DatasetError

PAPER_SAMPLES = 25_600  # RankMe's N (Garrido et al. 2023)


def probe_indices(size, samples, seed):
    """The sorted indices of the probe images: the first `samples` of a permutation of range(size) from `seed`."""
    order = torch.randperm(size, generator=torch.Generator().manual_seed(seed))
    return sorted(order[:samples].tolist())


@torch.no_grad()
def _features(encoder, dataset, device, batch_size, workers, seed, pairs=False, collate_fn=None, to_device=None):
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=workers, collate_fn=collate_fn,
                                         generator=torch.Generator().manual_seed(seed))
    out = []
    for batch, _ in loader:
        if pairs:
            a, b = to_device(batch, device)[:2]
            out.append((encoder(a).double().cpu(), encoder(b).double().cpu()))
        else:
            out.append(encoder(batch.to(device)).double().cpu())
    if pairs:
        return torch.cat([a for a, _ in out]), torch.cat([b for _, b in out])
    return torch.cat(out)


def evaluate_label_free(encoder, data_root, image_size, view_dataset, samples=PAPER_SAMPLES, seed=0, split="train",
                        batch_size=256, workers=0, device=None, collate_fn=None, to_device=None):
    """(record, spectrum): the label-free numbers of `encoder`'s pooled features, and their covariance spectrum.

    `view_dataset(image_folder, indices)` gives the two-view dataset used for alignment (the caller picks the
    recipe: the augmentations live in the pretraining package, above this one)."""
    start = time.perf_counter()
    device = feature_device(device)
    encoder = encoder.to(device).eval()
    plain = image_folder("imagenet", split, data_root, transform=eval_transform(image_size))
    if len(plain) < 2:
        raise DatasetError(f"the {split} split of {plain.root} holds {len(plain)} image(s); the label-free "
                           "diagnostics need at least 2")
    indices = probe_indices(len(plain), samples, seed)
    features = _features(encoder, torch.utils.data.Subset(plain, indices), device, batch_size, workers, seed)
    check_features(features.numpy(), "label-free features")
    view_a, view_b = _features(encoder, view_dataset(image_folder("imagenet", split, data_root), indices), device,
                               batch_size, workers, seed, pairs=True, collate_fn=collate_fn, to_device=to_device)
    spectrum = diagnostics.covariance_spectrum(features)
    fit = diagnostics.alpha_req(spectrum)
    record = {"rankme": diagnostics.rankme(features), "alpha": fit["alpha"], "alpha_r2": fit["r2"],
              "alpha_fit_range": fit["fit_range"], "alpha_note": fit.get("note"),
              "alignment": diagnostics.alignment(view_a, view_b),
              "uniformity": diagnostics.uniformity(features), "samples": len(indices), "samples_asked": samples,
              "paper_samples": PAPER_SAMPLES, "seed": seed, "split": split, "dim": int(features.shape[1]),
              "image_size": image_size, "seconds": time.perf_counter() - start}
    return record, spectrum.tolist()
