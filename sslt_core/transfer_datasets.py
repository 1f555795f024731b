"""The 12 datasets of the linear transfer (Kornblith, Shlens & Le 2019; SimCLR Table 8, BYOL Table 3), read from the
layouts their official archives extract to under the datasets root (sslt_core/datasets.py LAYOUTS; never
downloaded). Each reader returns the image paths (CIFAR: the decoded uint8 arrays) and labels of the official
splits, and checks before any feature is extracted that every listed image is there: a missing or malformed file
is one line naming it, the expected layout and what was found.

Readers of the toolkit's own rather than torchvision's: with download=False torchvision's CIFAR and Flowers-102
readers refuse a file whose md5 differs from the release (a test fixture, a re-packed copy), its DTD reader wants
ROOT/dtd/dtd/, its SUN397 reader ignores the official partitions, and CIFAR's batch files are pickles: here they
load with the restricted unpickler of sslt_core/safe_load.py (dicts, bytes, lists and numpy arrays only).
"""
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sslt_core.datasets import LAYOUTS, dataset_path
from sslt_core.detection_data import voc_image_ids
from sslt_core.errors import CheckpointError, DatasetLayoutError
from sslt_core.listing import class_folders, image_files
from sslt_core.safe_load import load_plain_pickle


@dataclass(frozen=True)
class Split:
    images: list | np.ndarray  # image paths, or uint8 [N, H, W, 3] (CIFAR)
    labels: np.ndarray  # int64 [N]; VOC2007: int8 [N, C] of 1 (present), -1 (absent), 0 (difficult only)
    sources: tuple = ()  # the files the arrays were decoded from (CIFAR): what keys their feature cache


@dataclass(frozen=True)
class TransferData:
    name: str
    root: Path  # the dataset's folder
    classes: tuple
    splits: dict  # "train", "test", and "val" where the dataset has an official one


@dataclass(frozen=True)
class Validation:
    """How the validation split is made (BYOL app. D): the official one, `count` held out of train (BYOL's number,
    for a train split of `paper_train` images: scaled by the same fraction on a smaller copy), or `per_class`
    held out of each class."""

    official: bool = False
    count: int = 0
    paper_train: int = 0
    per_class: int = 0


@dataclass(frozen=True)
class TransferDataset:
    name: str
    title: str  # the table's column
    metric: str  # "top1", "mean_per_class" or "map11"
    validation: Validation
    read: Callable  # (folder) -> TransferData
    train_per_class: int = 0  # Caltech-101: sampled per class out of the images (the rest is test)
    note: str = ""
    layout: str = field(default="")  # the key of LAYOUTS (default: name)

    def load(self, root=None):
        """The dataset under the datasets root, checked (DatasetLayoutError in one line otherwise)."""
        return self.read(dataset_path(self.layout or self.name, root))


def _bad(folder, name, problem):
    layout = LAYOUTS[name]
    return DatasetLayoutError(f"{name}: {problem}; expected ROOT/{layout.describe()} (the official archive "
                              f"extracted), found in {folder}: {_found(folder)}")


def _found(folder, limit=6):
    names = sorted(p.name + ("/" if p.is_dir() else "") for p in Path(folder).iterdir())
    return ", ".join(names[:limit]) + (f", ... ({len(names)} entries)" if len(names) > limit else "")


def _lines(path, folder, name):
    try:
        return [line.rstrip("\r\n") for line in path.read_text().splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as error:
        raise _bad(folder, name, f"{path} cannot be read ({type(error).__name__})") from None


def _check_images(paths, folder, name):
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise _bad(folder, name, f"{len(missing)} listed images are missing, e.g. {missing[0]}")
    return list(paths)


def _indexed(names, classes, folder, name, where):
    index = {c: i for i, c in enumerate(classes)}
    unknown = sorted(set(names) - set(index))
    if unknown:
        raise _bad(folder, name, f"{where} names classes not in its class list, e.g. {unknown[0]!r}")
    return np.array([index[n] for n in names], dtype=np.int64)


def _image_split(folder, name, paths, labels):
    return Split(_check_images(paths, folder, name), np.asarray(labels, dtype=np.int64))


def _split_lines(folder, name, path, pattern, where):
    """(groups of each line matching `pattern`) of a list file; the first line that does not is the error."""
    rows = []
    for number, line in enumerate(_lines(path, folder, name), 1):
        match = re.fullmatch(pattern, line.strip())
        if not match:
            raise _bad(folder, name, f"{path}:{number} is {line[:60]!r}, not a line of {where}")
        rows.append(match.groups())
    if not rows:
        raise _bad(folder, name, f"{path} lists no image")
    return rows


def read_food101(folder):
    classes = tuple(_lines(folder / "meta" / "classes.txt", folder, "food101"))
    splits = {}
    for split in ("train", "test"):
        rows = _split_lines(folder, "food101", folder / "meta" / f"{split}.txt", r"([^/]+)/(\S+)", "CLASS/ID")
        splits[split] = _image_split(folder, "food101", [folder / "images" / c / f"{i}.jpg" for c, i in rows],
                                     _indexed([c for c, _ in rows], classes, folder, "food101", f"meta/{split}.txt"))
    return TransferData("food101", folder, classes, splits)


def _unpickle(path, folder, name):
    try:
        data = load_plain_pickle(path)
    except CheckpointError as error:  # what the restricted unpickler refuses: an object that could run code
        raise _bad(folder, name, f"{path} is not a plain CIFAR batch ({str(error).split(' holds ')[-1][:80]})"
                   ) from None
    except Exception as error:
        raise _bad(folder, name, f"{path} is not a readable pickle ({type(error).__name__})") from None
    if not isinstance(data, dict):
        raise _bad(folder, name, f"{path} holds a {type(data).__name__}, not a dict")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in data.items()}


def _cifar_batch(path, folder, name, label_key, num_classes):
    batch = _unpickle(path, folder, name)
    data, labels = batch.get("data"), batch.get(label_key)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise _bad(folder, name, f"{path}: 'data' is not a uint8 array of N x 3072 pixels")
    labels = np.asarray(labels if labels is not None else [], dtype=np.int64)
    if labels.shape != (len(data),) or labels.min(initial=0) < 0 or labels.max(initial=0) >= num_classes:
        raise _bad(folder, name, f"{path}: '{label_key}' is not {len(data)} labels in 0..{num_classes - 1}")
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


def _cifar(folder, name, train_files, test_file, meta_file, label_key, names_key):
    meta = _unpickle(folder / meta_file, folder, name)
    classes = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in meta.get(names_key, ()))
    if not classes:
        raise _bad(folder, name, f"{folder / meta_file} has no '{names_key}'")
    splits = {}
    for split, files in (("train", train_files), ("test", (test_file,))):
        parts = [_cifar_batch(folder / f, folder, name, label_key, len(classes)) for f in files]
        splits[split] = Split(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]),
                              tuple(folder / f for f in files))
    return TransferData(name, folder, classes, splits)


def read_cifar10(folder):
    return _cifar(folder, "cifar10", [f"data_batch_{i}" for i in range(1, 6)], "test_batch", "batches.meta",
                  "labels", "label_names")


def read_cifar100(folder):
    return _cifar(folder, "cifar100", ["train"], "test", "meta", "fine_labels", "fine_label_names")


def read_birdsnap(folder):
    """species.txt (id, common, scientific, dir), images.txt (url, md5, path, species_id, ...), test_images.txt
    (path), images under download/images/ as get_birdsnap.py saves them. Images that are not there (dead URLs)
    are left out: the papers' 47,386 / 2,443 are what their download got."""
    species = [line.split("\t") for line in _lines(folder / "species.txt", folder, "birdsnap")[1:]]
    classes = tuple(row[1] for row in species)
    index = {row[0]: i for i, row in enumerate(species)}
    rows = [line.split("\t") for line in _lines(folder / "images.txt", folder, "birdsnap")[1:]]
    if any(len(r) < 4 or r[3] not in index for r in rows):
        raise _bad(folder, "birdsnap", "images.txt has a line without path and a species id of species.txt")
    test = set(_lines(folder / "test_images.txt", folder, "birdsnap")[1:])
    splits = {}
    for split in ("train", "test"):
        chosen = [(folder / "download" / "images" / r[2], index[r[3]]) for r in rows if (r[2] in test) == (
            split == "test")]
        present = [(p, y) for p, y in chosen if p.is_file()]
        if not present:
            raise _bad(folder, "birdsnap", f"none of the {len(chosen)} {split} images is under download/images/")
        splits[split] = Split([p for p, _ in present], np.array([y for _, y in present], dtype=np.int64))
    return TransferData("birdsnap", folder, classes, splits)


def read_sun397(folder):
    """Split 1 of the official ten (Partitions/Training_01.txt, Testing_01.txt: lines /a/abbey/sun_x.jpg)."""
    rows = {}
    for split, file in (("train", "Training_01.txt"), ("test", "Testing_01.txt")):
        rows[split] = _split_lines(folder, "sun397", folder / "Partitions" / file, r"/((?:[^/]+/)*[^/]+)/([^/]+)",
                                   "/LETTER/CLASS/IMAGE.jpg")
    classes = tuple(sorted({c for c, _ in rows["train"]}))
    splits = {split: _image_split(folder, "sun397", [folder / c / f for c, f in r],
                                  _indexed([c for c, _ in r], classes, folder, "sun397", f"Partitions ({split})"))
              for split, r in rows.items()}
    return TransferData("sun397", folder, classes, splits)


def _loadmat(path, folder, name):
    from scipy.io import loadmat  # MATLAB files hold arrays and structs: nothing in them runs

    try:
        return loadmat(path, squeeze_me=True)
    except Exception as error:
        raise _bad(folder, name, f"{path} is not a readable .mat file ({type(error).__name__})") from None


def read_cars(folder):
    """devkit/cars_meta.mat (class_names), devkit/cars_train_annos.mat and cars_test_annos_withlabels.mat
    (annotations: fname, class 1..196); images in cars_train/ and cars_test/ (torchvision's stanford_cars/)."""
    classes = tuple(str(c) for c in np.atleast_1d(_loadmat(folder / "devkit" / "cars_meta.mat", folder,
                                                           "cars").get("class_names", [])))
    splits = {}
    for split, mat, images in (("train", folder / "devkit" / "cars_train_annos.mat", "cars_train"),
                               ("test", folder / "cars_test_annos_withlabels.mat", "cars_test")):
        annotations = np.atleast_1d(_loadmat(mat, folder, "cars").get("annotations", []))
        try:
            names = [str(a["fname"]) for a in annotations]
            labels = np.array([int(a["class"]) - 1 for a in annotations], dtype=np.int64)
        except (ValueError, IndexError, KeyError, TypeError):
            raise _bad(folder, "cars", f"{mat}: 'annotations' has no fname and class fields") from None
        if not names or labels.min() < 0 or labels.max() >= len(classes):
            raise _bad(folder, "cars", f"{mat}: no annotation, or a class outside 1..{len(classes)}")
        splits[split] = _image_split(folder, "cars", [folder / images / n for n in names], labels)
    return TransferData("cars", folder, classes, splits)


def read_aircraft(folder):
    """The variant task (100 classes): data/images_variant_{train,val,test}.txt lines 'ID VARIANT'."""
    data = folder / "data"
    classes = tuple(_lines(data / "variants.txt", folder, "aircraft"))
    splits = {}
    for split in ("train", "val", "test"):
        rows = _split_lines(folder, "aircraft", data / f"images_variant_{split}.txt", r"(\S+) (.+)", "ID VARIANT")
        splits[split] = _image_split(folder, "aircraft", [data / "images" / f"{i}.jpg" for i, _ in rows],
                                     _indexed([v for _, v in rows], classes, folder, "aircraft",
                                              f"images_variant_{split}.txt"))
    return TransferData("aircraft", folder, classes, splits)


def read_dtd(folder):
    """Split 1: labels/{train,val,test}1.txt lines 'CLASS/IMAGE.jpg'; classes are the folders of images/."""
    classes = tuple(class_folders(folder / "images"))
    splits = {}
    for split in ("train", "val", "test"):
        rows = _split_lines(folder, "dtd", folder / "labels" / f"{split}1.txt", r"([^/]+)/(\S+)", "CLASS/IMAGE")
        splits[split] = _image_split(folder, "dtd", [folder / "images" / c / f for c, f in rows],
                                     _indexed([c for c, _ in rows], classes, folder, "dtd", f"labels/{split}1.txt"))
    return TransferData("dtd", folder, classes, splits)


def read_pets(folder):
    """annotations/{trainval,test}.txt lines 'NAME CLASS_ID SPECIES BREED_ID' (class 1..37); images/NAME.jpg."""
    splits, names = {}, {}
    for split, file in (("train", "trainval.txt"), ("test", "test.txt")):
        rows = [r for r in _split_lines(folder, "pets", folder / "annotations" / file, r"(#.*)|(\S+) (\d+) \d+ \d+",
                                        "NAME CLASS_ID SPECIES BREED_ID") if r[0] is None]
        for _, image, label in rows:
            names.setdefault(int(label) - 1, image.rsplit("_", 1)[0])
        splits[split] = _image_split(folder, "pets", [folder / "images" / f"{i}.jpg" for _, i, _ in rows],
                                     [int(label) - 1 for _, _, label in rows])
    if sorted(names) != list(range(len(names))):
        raise _bad(folder, "pets", f"the class ids are not 1..{len(names)}")
    return TransferData("pets", folder, tuple(names[i] for i in range(len(names))), splits)


def read_caltech101(folder):
    """101_ObjectCategories/<class>/*.jpg, the background class (BACKGROUND_Google) left out as SimCLR; one split
    "all": the protocol samples 30 training images per class from it."""
    categories = folder / "101_ObjectCategories"
    classes = tuple(c for c in class_folders(categories) if c != "BACKGROUND_Google")
    paths, labels = [], []
    for index, name in enumerate(classes):
        files = image_files(categories / name)
        paths += files
        labels += [index] * len(files)
    return TransferData("caltech101", folder, classes, {"all": Split(paths, np.array(labels, dtype=np.int64))})


def read_flowers102(folder):
    """jpg/image_NNNNN.jpg, imagelabels.mat (labels 1..102 of every image), setid.mat (trnid, valid, tstid)."""
    labels = np.atleast_1d(_loadmat(folder / "imagelabels.mat", folder, "flowers102").get("labels", [])).astype(int)
    ids = _loadmat(folder / "setid.mat", folder, "flowers102")
    if not len(labels) or labels.min() < 1:
        raise _bad(folder, "flowers102", "imagelabels.mat has no 'labels' of 1..102")
    classes = tuple(str(c) for c in range(1, labels.max() + 1))
    splits = {}
    for split, key in (("train", "trnid"), ("val", "valid"), ("test", "tstid")):
        chosen = np.atleast_1d(ids.get(key, [])).astype(int)
        if not len(chosen) or chosen.min() < 1 or chosen.max() > len(labels):
            raise _bad(folder, "flowers102", f"setid.mat has no '{key}' of image numbers 1..{len(labels)}")
        splits[split] = _image_split(folder, "flowers102", [folder / "jpg" / f"image_{i:05d}.jpg" for i in chosen],
                                     labels[chosen - 1] - 1)
    return TransferData("flowers102", folder, classes, splits)


def read_voc2007_classification(folder):
    """VOC2007's official train / val / test, 20 binary labels per image from ImageSets/Main/<class>_<split>.txt
    (1 present, -1 absent, 0 difficult objects only: left out of that class's training and scoring)."""
    main = folder / "ImageSets" / "Main"
    classes = tuple(sorted(p.name[:-len("_train.txt")] for p in main.glob("*_train.txt")))
    if not classes:
        raise _bad(folder, "voc2007", f"{main} has no <class>_train.txt")
    splits = {}
    for split in ("train", "val", "test"):
        ids = voc_image_ids(main / f"{split}.txt")
        position = {i: n for n, i in enumerate(ids)}
        labels = np.zeros((len(ids), len(classes)), dtype=np.int8)
        for c, name in enumerate(classes):
            rows = _split_lines(folder, "voc2007", main / f"{name}_{split}.txt", r"(\S+)\s+(-?[01])", "ID LABEL")
            if {i for i, _ in rows} != set(ids):
                raise _bad(folder, "voc2007", f"{name}_{split}.txt does not list the images of {split}.txt")
            for image, label in rows:
                labels[position[image], c] = int(label)
        splits[split] = Split(_check_images([folder / "JPEGImages" / f"{i}.jpg" for i in ids], folder, "voc2007"),
                              labels)
    return TransferData("voc2007", folder, classes, splits)


# BYOL appendix D's validation splits; the order of SimCLR's Table 8.
TRANSFER_DATASETS = {d.name: d for d in (
    TransferDataset("food101", "Food", "top1", Validation(count=7575, paper_train=75750), read_food101),
    TransferDataset("cifar10", "CIFAR-10", "top1", Validation(count=5000, paper_train=50000), read_cifar10),
    TransferDataset("cifar100", "CIFAR-100", "top1", Validation(count=5000, paper_train=50000), read_cifar100),
    TransferDataset("birdsnap", "Birdsnap", "top1", Validation(count=4981, paper_train=47386), read_birdsnap,
                    note="images only as URLs: the images you have"),
    TransferDataset("sun397", "SUN397", "top1", Validation(per_class=10), read_sun397),
    TransferDataset("cars", "Cars", "top1", Validation(count=1650, paper_train=8144), read_cars),
    TransferDataset("aircraft", "Aircraft", "mean_per_class", Validation(official=True), read_aircraft),
    TransferDataset("voc2007", "VOC2007", "map11", Validation(official=True), read_voc2007_classification),
    TransferDataset("dtd", "DTD", "top1", Validation(official=True), read_dtd),
    TransferDataset("pets", "Pets", "mean_per_class", Validation(per_class=20), read_pets),
    TransferDataset("caltech101", "Caltech-101", "mean_per_class", Validation(per_class=5), read_caltech101,
                    train_per_class=30),
    TransferDataset("flowers102", "Flowers", "mean_per_class", Validation(official=True), read_flowers102),
)}
