"""Listing a dataset's images: the one walk that every reader (kNN, linear probe, feature caches, pretraining in
both data paths, the pipeline's data fingerprints) and tools/check_datasets.py use, so that all count the same
images.

As torchvision's ImageFolder (os.walk with followlinks=True, sorted by folder then name, the suffixes of
torchvision.datasets.folder.IMG_EXTENSIONS), links to folders are followed: a split assembled from links to
folders elsewhere is common. A link to a folder that holds it (directly or through other links) would be walked
again and again, each time with a longer path, until the path is too long: os.walk does that without a word (a
class folder of 8 images read as 40). Such a link is refused, naming it.
"""
import os
from pathlib import Path

from sslt_core.errors import DatasetError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")  # torchvision's


def _walk(folder, above):
    """(folder, sorted file names) of `folder` and every folder below it; `above`: the real paths it is inside."""
    real = os.path.realpath(folder)
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as error:
        raise DatasetError(f"cannot list {folder} ({error.strerror}); check its permissions") from None
    yield folder, [e.name for e in entries if e.is_file()]
    for entry in entries:
        if not entry.is_dir():
            continue
        target = os.path.realpath(entry.path) if entry.is_symlink() else None
        if target and (target in above or Path(real).is_relative_to(target)):  # through other links, or directly
            raise DatasetError(f"{entry.path} is a link to {target}, a folder that holds it: "
                               "a loop whose images would be read again and again; remove that link")
        yield from _walk(entry.path, (*above, real))


def files_under(folder, suffixes=None):
    """Every file under `folder` (of `suffixes`, case-insensitive, when given), links to folders followed, in
    ImageFolder's order."""
    found = []
    for root, names in sorted(_walk(os.fspath(folder), ()), key=lambda item: item[0]):
        found += [os.path.join(root, n) for n in names if suffixes is None or n.lower().endswith(suffixes)]
    return found


def image_files(folder):
    return files_under(folder, IMAGE_SUFFIXES)


def class_folders(split):
    """The class names of an ImageFolder split: its sub-folders (links included), sorted."""
    return sorted(e.name for e in os.scandir(split) if e.is_dir())


def class_samples(split):
    """(classes, [(image path, class index), ...]) of an ImageFolder split, as torchvision's ImageFolder lists
    them."""
    classes = class_folders(split)
    return classes, [(path, index) for index, name in enumerate(classes)
                     for path in image_files(os.path.join(split, name))]
