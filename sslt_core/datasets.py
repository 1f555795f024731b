"""Where the datasets live, and reading their images: the one place every tool resolves a dataset root.

A datasets root holds the standard layouts side by side, as detectron2's builtin datasets expect
($DETECTRON2_DATASETS); `tools/make_demo_data.py --out DIR` writes the same layouts:

    ROOT/imagenet/{train,val}/<class>/*.JPEG          ImageFolder
    ROOT/VOC2007/{JPEGImages,Annotations,ImageSets/Main}
    ROOT/VOC2012/{JPEGImages,Annotations,ImageSets/Main}
    ROOT/coco/{annotations/instances_{train,val}2017.json,train2017,val2017}
    ROOT/cifar-10-batches-py/, ROOT/dtd/, ROOT/flowers-102/, ...   the linear transfer's 12 (LAYOUTS below)

A root given by flag wins over DETECTRON2_DATASETS, which wins over ./datasets. A dataset's own folder
(e.g. .../imagenet) may also be given directly.
"""
import os
from dataclasses import dataclass
from pathlib import Path

from sslt_core.errors import DatasetError, DatasetLayoutError
from sslt_core.images import load_rgb
from sslt_core.listing import class_folders, class_samples

ENV_VAR = "DETECTRON2_DATASETS"
# The generated demo data's categories (sslt_demo draws them; transfer registers its detection sets with them).
DEMO_CLASSES = ("circle", "triangle", "square", "star", "cross", "crescent", "arrow", "heart", "hourglass", "bolt")


@dataclass(frozen=True)
class Layout:
    folder: str  # name under the datasets root
    dirs: tuple  # sub-folders that must exist
    files: tuple = ()  # files that must exist
    class_dirs: tuple = ()  # sub-folders that must hold one folder per class (ImageFolder)

    def describe(self):
        parts = [f"{d}/" for d in self.dirs if d not in self.class_dirs]
        parts += [f"{d}/<class>/*.jpg" for d in self.class_dirs] + list(self.files)
        return f"{self.folder}/{{{','.join(parts)}}}"

    def missing(self, path):
        missing = [f"{d}/" for d in self.dirs if not (path / d).is_dir()]
        missing += [f for f in self.files if not (path / f).is_file()]
        missing += [f"{d}/<class>/" for d in self.class_dirs
                    if (path / d).is_dir() and not any(p.is_dir() for p in (path / d).iterdir())]
        return missing


LAYOUTS = {
    "imagenet": Layout("imagenet", dirs=("train", "val"), class_dirs=("train", "val")),
    "voc2007": Layout("VOC2007", dirs=("JPEGImages", "Annotations", "ImageSets/Main"),
                      files=("ImageSets/Main/trainval.txt", "ImageSets/Main/test.txt")),
    "voc2012": Layout("VOC2012", dirs=("JPEGImages", "Annotations", "ImageSets/Main"),
                      files=("ImageSets/Main/trainval.txt",)),
    "coco": Layout("coco", dirs=("train2017", "val2017"),
                   files=("annotations/instances_train2017.json", "annotations/instances_val2017.json")),
    # the linear transfer's datasets (sslt_core/transfer_datasets.py reads them), as their official archives extract
    "food101": Layout("food-101", dirs=("images", "meta"), files=("meta/classes.txt", "meta/train.txt",
                                                                  "meta/test.txt")),
    "cifar10": Layout("cifar-10-batches-py", dirs=(), files=(*(f"data_batch_{i}" for i in range(1, 6)),
                                                             "test_batch", "batches.meta")),
    "cifar100": Layout("cifar-100-python", dirs=(), files=("train", "test", "meta")),
    "birdsnap": Layout("birdsnap", dirs=("download/images",), files=("species.txt", "images.txt",
                                                                     "test_images.txt")),
    "sun397": Layout("SUN397", dirs=("Partitions",), files=("Partitions/Training_01.txt",
                                                            "Partitions/Testing_01.txt")),
    "cars": Layout("stanford_cars", dirs=("cars_train", "cars_test"), files=(
        "devkit/cars_meta.mat", "devkit/cars_train_annos.mat", "cars_test_annos_withlabels.mat")),
    "aircraft": Layout("fgvc-aircraft-2013b", dirs=("data/images",), files=(
        "data/variants.txt", "data/images_variant_train.txt", "data/images_variant_val.txt",
        "data/images_variant_test.txt")),
    "dtd": Layout("dtd", dirs=("images", "labels"), files=("labels/train1.txt", "labels/val1.txt",
                                                           "labels/test1.txt"), class_dirs=("images",)),
    "pets": Layout("oxford-iiit-pet", dirs=("images", "annotations"), files=("annotations/trainval.txt",
                                                                             "annotations/test.txt")),
    "caltech101": Layout("caltech101", dirs=("101_ObjectCategories",), class_dirs=("101_ObjectCategories",)),
    "flowers102": Layout("flowers-102", dirs=("jpg",), files=("imagelabels.mat", "setid.mat")),
}


def datasets_root(root=None):
    """The datasets root: `root` (a flag), else $DETECTRON2_DATASETS, else ./datasets."""
    return Path(root or os.environ.get(ENV_VAR) or "datasets").expanduser()


def _listing(path, limit=8):
    if not path.is_dir():
        return "nothing (no such folder)" if not path.exists() else "a file, not a folder"
    names = sorted(p.name + ("/" if p.is_dir() else "") for p in path.iterdir())
    more = f", ... ({len(names)} entries)" if len(names) > limit else ""
    return (", ".join(names[:limit]) + more) if names else "an empty folder"


def dataset_path(name, root=None):
    """The folder of dataset `name` (a key of LAYOUTS) under the datasets root, checked against its layout."""
    if name not in LAYOUTS:
        raise DatasetError(f"unknown dataset '{name}'; known: {', '.join(LAYOUTS)}")
    layout, base = LAYOUTS[name], datasets_root(root)
    for candidate in (base / layout.folder, base):
        if candidate.is_dir() and not layout.missing(candidate):
            return candidate
    path = base / layout.folder
    problem = f"missing {', '.join(layout.missing(path))}" if path.is_dir() else "not there"
    raise DatasetLayoutError(
        f"{name}: {path} is {problem}; expected ROOT/{layout.describe()}, found in {base}: {_listing(base)}; "
        f"point the datasets root (the tool's --data or --data-root, a pipeline's data_root:, or {ENV_VAR}) at the "
        f"folder that holds {layout.folder}/"
    )


def _listed_image_folder():
    """torchvision's ImageFolder listing its images with sslt_core/listing.py (the walk every reader shares);
    made on first use (torchvision imported then), kept as this module's ListedImageFolder (so that it pickles)."""
    if "ListedImageFolder" not in globals():
        from torchvision.datasets import ImageFolder

        class ListedImageFolder(ImageFolder):
            @staticmethod
            def find_classes(directory):
                classes = class_folders(directory)
                if not classes:
                    raise FileNotFoundError(f"no class folder in {directory}")
                return classes, {name: index for index, name in enumerate(classes)}

            @staticmethod
            def make_dataset(directory, class_to_idx, extensions=None, is_valid_file=None, allow_empty=False):
                return class_samples(directory)[1]

        ListedImageFolder.__qualname__ = "ListedImageFolder"
        globals()["ListedImageFolder"] = ListedImageFolder
    return globals()["ListedImageFolder"]


def __getattr__(name):  # pickle finds ListedImageFolder here in a process that has not made it yet
    if name == "ListedImageFolder":
        return _listed_image_folder()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def image_folder(name, split, root=None, transform=None):
    """torchvision's ImageFolder over `split` of an ImageFolder dataset, reading images with load_rgb and listing
    them with sslt_core/listing.py."""
    path = dataset_path(name, root) / split
    if not path.is_dir():
        raise DatasetLayoutError(f"{name}: no '{split}' split in {path.parent} (found: {_listing(path.parent)})")
    try:
        # allow_empty: a class folder without images is kept (a test split may lack classes); an empty split
        # is refused by whoever needs images.
        return _listed_image_folder()(str(path), transform=transform, loader=load_rgb, allow_empty=True)
    except FileNotFoundError as error:
        raise DatasetLayoutError(f"{name}: {path} holds no class folders ({error}); expected "
                                 f"{split}/<class>/*.jpg") from None
