"""Frozen-encoder features of an ImageFolder split, cached on disk.

The encoder comes from any checkpoint the converter reads (sslt_core/checkpoints.py), as a torchvision ResNet
without `fc`, in eval mode. Images go through the evaluation protocol: resize to crop/0.875, center crop
(256 -> 224 on ImageNet). Features are cached as .npz next to a manifest keyed by content (the checkpoint's
sha256; the images' names, labels, sizes, mtimes and a sampled content hash, sslt_core/fingerprint.py; the
transform), so a second evaluation of the same encoder on the same images reuses them. A cache file is used only
when it holds what its manifest records (dtypes, one row per image with its label, the arrays' sha256); else it
is computed again and the log says why.
"""
import hashlib
import io
import json
import logging
import zipfile
from pathlib import Path

import numpy as np
import torch
import torchvision
from torchvision import transforms
from tqdm import tqdm

from sslt_core.atomic import check_replaceable, remove_orphans, write_bytes_atomic, write_json_atomic
from sslt_core.checkpoints import read_encoder
from sslt_core.datasets import image_folder
from sslt_core.errors import CheckpointError, DatasetError
from sslt_core.fingerprint import file_digest, samples_fingerprint
from sslt_core.images import CROP_RATIO, IMAGENET_MEAN, IMAGENET_STD
from sslt_core.resnets import RESNETS, resnet_structure

ARCHS = tuple(RESNETS.values())  # for the random-init baseline
logger = logging.getLogger(__name__)


def resnet_arch(state_dict):
    """The torchvision constructor name for a torchvision-named ResNet state dict."""
    structure = resnet_structure(state_dict)
    if structure not in RESNETS:
        raise CheckpointError(f"unsupported ResNet: blocks per stage {structure[1]}; supported: "
                              f"{', '.join(RESNETS.values())}")
    return RESNETS[structure]


def build_encoder(weights, arch="resnet50", seed=0, trust=False):
    """(encoder, description): a torchvision ResNet with fc = Identity, in eval mode, frozen.

    `weights` is a checkpoint path in any layout the converter reads (read without running its code unless
    `trust`), or "random" for the random-init baseline (drawn from `seed`; the global RNG is left as it was).
    """
    if weights == "random":
        if arch not in ARCHS:
            raise CheckpointError(f"unknown architecture {arch!r} for random init; choose one of {', '.join(ARCHS)}")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = getattr(torchvision.models, arch)()
        source = f"random init (seed {seed})"
    else:
        encoder = read_encoder(weights, trust=trust)
        state_dict = {k: v for k, v in encoder.state_dict.items() if not k.startswith("fc.")}
        arch = resnet_arch(state_dict)
        model, source = getattr(torchvision.models, arch)(), f"{encoder.source} checkpoint {weights}"
        if tuple(state_dict["conv1.weight"].shape[2:]) == (3, 3):  # CIFAR stem (solo-learn): 3x3 conv, no max-pool
            model.conv1 = torch.nn.Conv2d(3, 64, 3, 1, 1, bias=False)
            model.maxpool = torch.nn.Identity()
        try:
            missing, unexpected = model.load_state_dict(state_dict, strict=False)
        except RuntimeError as error:  # shapes of another width
            detail = next((line.strip() for line in str(error).splitlines() if "size mismatch" in line), "")
            raise CheckpointError(f"{weights}: weights do not fit torchvision's {arch} ({detail[:200]})") from None
        missing = [k for k in missing if not k.startswith("fc.") and not k.endswith("num_batches_tracked")]
        if missing or unexpected:
            raise CheckpointError(f"{weights}: weights do not fit {arch} (missing {missing[:2]}, unexpected "
                                  f"{unexpected[:2]})")
    model.fc = torch.nn.Identity()
    model.eval().requires_grad_(False)
    return model, f"{arch}, {source}"


def eval_transform(crop_size):
    return transforms.Compose([
        transforms.Resize(round(crop_size / CROP_RATIO)),
        transforms.CenterCrop(crop_size),
        transforms.ToTensor(),
        transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])


def feature_device(device=None):
    """The device features are computed on: `device`, else the GPU where there is one."""
    return torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))


@torch.no_grad()
def extract_features(encoder, dataset, batch_size=256, num_workers=0, device=None, desc="features"):
    """(features float32 [N, D], labels int64 [N]) of `dataset` through the frozen `encoder`."""
    if len(dataset) == 0:
        raise DatasetError(f"{desc}: the split is empty; it needs at least one image")
    device = feature_device(device)
    encoder = encoder.to(device).eval()
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=num_workers, shuffle=False,
                                         pin_memory=device.type == "cuda")
    features, labels = [], []
    for images, targets in tqdm(loader, desc=desc, leave=False):  # fp32, as the official linear evaluations
        features.append(encoder(images.to(device, non_blocking=True)).float().cpu())
        labels.append(targets)
    features = torch.cat(features).numpy()
    check_features(features, desc)
    return features, torch.cat(labels).numpy().astype(np.int64)


def check_features(features, desc):
    """A NaN or an infinity in a feature would give a kNN or linear-probe accuracy that means nothing."""
    bad = ~np.isfinite(features).all(axis=1)
    if bad.any():
        raise CheckpointError(f"{desc}: the encoder gives NaN or infinite features for {int(bad.sum())} of "
                              f"{len(features)} images; its weights are broken (check them with python "
                              "tools/convert_to_d2.py CHECKPOINT --verify)")


def cached_features(encoder, description, weights, dataset, split_name, crop_size, cache_dir, **kwargs):
    """extract_features, reusing cache_dir/<key>.npz when checkpoint, dataset and transform are unchanged."""
    manifest = {
        "weights": "random" if weights == "random" else str(Path(weights).resolve()),
        "weights_sha256": description if weights == "random" else file_digest(weights),  # content, not path
        "encoder": description,
        "dataset": str(Path(dataset.root).resolve()),
        "split": split_name,
        # decoded arrays (CIFAR's batches, eval/transfer.py) say their own: the content of the files read
        "samples_sha256": dataset.fingerprint() if hasattr(dataset, "fingerprint") else samples_fingerprint(
            dataset.samples),
        "transform": repr(dataset.transform),
        "crop_size": crop_size,
        "device": feature_device(kwargs.get("device")).type,  # a GPU's convolutions (TF32) round differently
    }
    key = hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()[:20]
    cache_dir = Path(cache_dir)
    if cache_dir.is_dir():
        remove_orphans(cache_dir)  # temporary files of killed writes
    path = cache_dir / f"{split_name}-{key}.npz"
    if path.is_file() or path.is_symlink():
        cached, problem = _read_cache(path, dataset)
        if cached:
            return *cached, True
        logger.warning(f"cached features {path} {problem}: computing them again")
    for output in (path, path.with_suffix(".json")):  # a link planted there is refused before the work, not after
        check_replaceable(output)
    features, labels = extract_features(encoder, dataset, desc=f"features {split_name}", **kwargs)
    buffer = io.BytesIO()
    np.savez(buffer, features=features, labels=labels)
    write_bytes_atomic(path, buffer.getvalue())
    write_json_atomic(cache_dir / f"{path.stem}.json", {**manifest, "arrays_sha256": _arrays_digest(features, labels)})
    return features, labels, False


def _arrays_digest(features, labels):
    return hashlib.sha256(features.tobytes() + labels.tobytes()).hexdigest()


def _read_cache(path, dataset):
    """((features, labels), None) from a cache file that holds what its manifest says, else (None, what is wrong):
    the arrays' dtypes and shapes, one row per image of `dataset` with its label, and their sha256 as recorded when
    they were written (rows permuted or cut, a label changed, a file swapped). No pickled objects are loaded."""
    try:
        if path.is_symlink():
            return None, "is a link, not a file this toolkit wrote"
        recorded = json.loads(path.with_suffix(".json").read_text()).get("arrays_sha256")
    except (OSError, ValueError, AttributeError, RecursionError):
        return None, "has no readable manifest beside it"
    try:
        with np.load(path, allow_pickle=False) as data:
            features, labels = data["features"], data["labels"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, MemoryError) as error:  # cut, object
        return None, f"cannot be read ({type(error).__name__})"  # arrays, other keys, a header asking for TiBs
    expected = np.array([label for _, label in dataset.samples], dtype=np.int64)
    if features.dtype != np.float32 or features.ndim != 2 or labels.dtype != np.int64 or labels.shape != (
            len(features),):
        return None, (f"holds {features.dtype} features of shape {features.shape} and {labels.dtype} labels of shape "
                      f"{labels.shape}, not float32 [N, D] and int64 [N]")
    if len(labels) != len(expected) or not np.array_equal(labels, expected):
        return None, f"holds {len(labels)} rows whose labels are not those of the {len(expected)} images"
    if recorded != _arrays_digest(features, labels):
        return None, "does not hold the arrays its manifest records (sha256)"
    check_features(features, f"cached features {path}")
    return (features, labels), None


def aligned_class_lists(train_set, test_set):
    """Labels of `test_set` re-indexed to `train_set`'s classes (ImageFolder indexes each split on its own).

    A test split may lack classes; a test class that the training split lacks is an error.
    """
    unknown = sorted(set(test_set.classes) - set(train_set.classes))
    if unknown:
        raise DatasetError(f"mismatched class lists: {test_set.root} has classes {unknown[:5]} that "
                           f"{train_set.root} lacks; both splits must share one class list")
    mapping = np.array([train_set.class_to_idx[name] for name in test_set.classes], dtype=np.int64)
    return mapping


def split_features(encoder, description, weights, data_root, crop_size=224, cache_dir=None,
                   splits=("train", "val"), **kwargs):
    """{split: (features, labels in the first split's class indices)}, the class names, and for each split
    whether it came from the cache."""
    datasets = {s: image_folder("imagenet", s, data_root, transform=eval_transform(crop_size)) for s in splits}
    for split, dataset in datasets.items():
        if len(dataset) == 0:
            raise DatasetError(f"the {split} split of {dataset.root} is empty")
    reference = datasets[splits[0]]
    out, reused = {}, {}
    for split, dataset in datasets.items():
        mapping = aligned_class_lists(reference, dataset)
        if cache_dir is None:
            features, labels = extract_features(encoder, dataset, desc=f"features {split}", **kwargs)
            reused[split] = False
        else:
            features, labels, reused[split] = cached_features(encoder, description, weights, dataset, split,
                                                              crop_size, cache_dir, **kwargs)
        out[split] = (features, mapping[labels])
    return out, reference.classes, reused
