"""VOC2007 classification for the SVM benchmarks of Goyal et al. 2019 ("Scaling and benchmarking self-supervised
visual representation learning", sec. 5 and app. B; FAIR's fair_self_supervision_benchmark, VISSL): the image-level
labels of a VOC layout, and per-layer pooled features of a frozen torchvision ResNet trunk.

Labels come from ImageSets/Main/<class>_<split>.txt, as the benchmark's create_voc_data_files.py reads them: per
image and class 1 (present), -1 (absent) or 0 (only `difficult` instances). The matrix keeps VOC's values; what
each value means in training and at test is eval/voc_svm.py's business.

Features (Goyal et al. app. B, VISSL's benchmark/linear_image_classification/voc07 configs): shorter side resized
to 256, then to 224 x 224 (no crop), ImageNet normalisation; the trunk in eval mode; the outputs after the stem's
ReLU (conv1) and after each stage's last ReLU (res2..res5) average-pooled to about 9k dimensions, plus the 2048-d
global average pool; each layer L2-normalised as x / (||x|| + 1e-5) (VISSL's SVMTrainer._normalize_features).
"""
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torchvision import transforms

from eval.features import cached_features, extract_features
from sslt_core.detection_data import voc_image_ids
from sslt_core.errors import DatasetError
from sslt_core.images import IMAGENET_MEAN, IMAGENET_STD, load_rgb

# The 20 classes in the devkit's order (VOCdevkit VOCinit.m).
VOC_CLASSES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable",
               "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor")
# layer -> (torchvision module whose output it is, avg-pool kernel, stride, padding); "avgpool": the global pool.
# ResNet-50 at 224: conv1 64x112x112 -> 64x12x12 = 9216, res2 256x56x56 -> 256x6x6 = 9216, res3 512x28x28 ->
# 512x4x4 = 8192, res4 1024x14x14 -> 1024x3x3 = 9216, res5 2048x7x7 -> 2048x2x2 = 8192, pool 2048.
LAYERS = {
    "conv1": ("relu", 10, 10, 4),
    "res2": ("layer1", 16, 8, 0),
    "res3": ("layer2", 13, 5, 0),
    "res4": ("layer3", 8, 3, 0),
    "res5": ("layer4", 6, 1, 0),
    "pool": ("avgpool", None, None, None),
}
NORM_EPS = 1e-5


def _class_names(main):
    """The classes with a <class>_trainval.txt list: VOC's 20 in the devkit's order, else sorted (the demo's)."""
    found = sorted(p.name[:-len("_trainval.txt")] for p in main.glob("*_trainval.txt"))
    if not found:
        raise DatasetError(f"{main} has no <class>_trainval.txt image lists; VOC classification needs them "
                           "(regenerate the dataset, or restore ImageSets/Main from the VOC tar)")
    return VOC_CLASSES if set(found) == set(VOC_CLASSES) else tuple(found)


def voc_classification(folder, split, classes=None):
    """(image ids, classes, labels int8 [N, C] in {1, -1, 0}) of split `split` of the VOC layout at `folder`,
    from ImageSets/Main/<split>.txt and <class>_<split>.txt; DatasetError naming the file and line otherwise."""
    folder = Path(folder)
    main = folder / "ImageSets" / "Main"
    classes = tuple(classes or _class_names(main))
    listing = main / f"{split}.txt"
    if not listing.is_file():
        raise DatasetError(f"{listing}: no such file (the image list of VOC split {split}); restore it")
    ids = voc_image_ids(listing)
    row = {image_id: i for i, image_id in enumerate(ids)}
    labels = np.zeros((len(ids), len(classes)), dtype=np.int8)
    for c, name in enumerate(classes):
        path = main / f"{name}_{split}.txt"
        if not path.is_file():
            raise DatasetError(f"{path}: no such file (the labels of class {name}); restore it")
        seen = set()
        for number, line in enumerate(path.read_text().splitlines(), 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 2 or parts[1] not in ("1", "-1", "0") or parts[0] not in row:
                raise DatasetError(f"{path} line {number}: {line.strip()!r} is not '<image id of {listing.name}> "
                                   "1|-1|0'; restore the file")
            labels[row[parts[0]], c] = int(parts[1])
            seen.add(parts[0])
        if len(seen) != len(ids):
            missing = next(i for i in ids if i not in seen)
            raise DatasetError(f"{path} lacks image {missing} of {listing.name} ({len(ids) - len(seen)} images); "
                               "restore the file")
    for image_id in ids:
        if not (folder / "JPEGImages" / f"{image_id}.jpg").is_file():
            raise DatasetError(f"{folder / 'JPEGImages' / image_id}.jpg: no such file, but {listing} lists it; "
                               "restore the image")
    return ids, classes, labels


def svm_transform(image_size=224):
    """Shorter side to 256 (scaled with image_size), then image_size x image_size without a crop (Goyal et al.)."""
    return transforms.Compose([
        transforms.Resize(round(image_size * 256 / 224)),
        transforms.Resize((image_size, image_size)),
        transforms.ToTensor(),
        transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])


class VocImages(torch.utils.data.Dataset):
    """The JPEGs of a VOC split, each with its row index as the label (what eval/features.py's cache checks)."""

    def __init__(self, folder, ids, transform):
        self.root = str(folder)
        self.samples = [(str(Path(folder) / "JPEGImages" / f"{i}.jpg"), n) for n, i in enumerate(ids)]
        self.transform = transform

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, index):
        path, label = self.samples[index]
        return self.transform(load_rgb(path)), label


class LayerFeatures(nn.Module):
    """The trunk's pooled, L2-normalised features of every layer of LAYERS, concatenated [B, sum of dims], taken by
    forward hooks (the trunk itself is not changed). `dims` gives each layer's width, in LAYERS' order.

    Note: for images smaller than 224 a kernel larger than its feature map is cut to the map (padding to half the
    kernel), so that every layer has a feature; at 224 the published kernels are used unchanged."""

    def __init__(self, trunk, image_size=224):
        super().__init__()
        self.trunk, self._outputs, self.pools = trunk.eval(), {}, {}
        for name, (module, _, _, _) in LAYERS.items():
            getattr(trunk, module).register_forward_hook(self._hook(name))
        with torch.no_grad():  # the map sizes, from one blank image
            trunk(torch.zeros(1, 3, image_size, image_size))
        self.dims = {}
        for name, (_, kernel, stride, padding) in LAYERS.items():
            size = self._outputs[name].shape[-1]
            if kernel is not None:
                kernel = min(kernel, size)
                self.pools[name] = (kernel, stride, min(padding, kernel // 2))
            self.dims[name] = self._pool(name, self._outputs[name]).shape[1]
        self._outputs.clear()

    def _hook(self, name):
        def hook(module, inputs, output):
            self._outputs[name] = output
        return hook

    def _pool(self, name, output):
        if name not in self.pools:
            return output.flatten(1)
        kernel, stride, padding = self.pools[name]
        return nn.functional.avg_pool2d(output, kernel, stride, padding).flatten(1)  # count_include_pad, as VISSL

    def describe(self):
        return "; ".join(f"{n} {self.pools.get(n, 'global')} -> {d}" for n, d in self.dims.items())

    @torch.no_grad()
    def forward(self, images):
        self.trunk(images)
        parts = []
        for name in LAYERS:
            x = self._pool(name, self._outputs.pop(name)).float()
            parts.append(x / (x.norm(dim=1, keepdim=True) + NORM_EPS))
        return torch.cat(parts, 1)


def split_layers(features, dims):
    """{layer: features[:, its columns]} of a concatenated [N, sum of dims] array."""
    if features.shape[1] != sum(dims.values()):
        raise DatasetError(f"features of width {features.shape[1]} do not hold the layers {dims}")
    out, start = {}, 0
    for name, dim in dims.items():
        out[name], start = features[:, start:start + dim], start + dim
    return out


def voc_layer_features(encoder, description, weights, folder, splits, image_size=224, cache_dir=None, **kwargs):
    """{split: ({layer: features [N, D]}, labels int8 [N, C])}, the classes and whether each split was cached.

    One pass of the trunk per split gives every layer (so voc07_svm and voc07_lowshot share one cache file per
    split, keyed by content as eval/features.py keys the kNN features)."""
    layers = LayerFeatures(encoder, image_size)
    description = f"{description}; VOC SVM layers {layers.describe()}"
    out, reused, classes = {}, {}, None
    for split in splits:
        ids, classes, labels = voc_classification(folder, split, classes)
        dataset = VocImages(folder, ids, svm_transform(image_size))
        name = f"voc-{Path(folder).name}-{split}"
        if cache_dir is None:
            features, _ = extract_features(layers, dataset, desc=f"features {name}", **kwargs)
            reused[split] = False
        else:
            features, _, reused[split] = cached_features(layers, description, weights, dataset, name, image_size,
                                                         cache_dir, **kwargs)
        out[split] = (split_layers(features, layers.dims), labels)
    return out, classes, reused, layers.dims
