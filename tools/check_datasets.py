"""Resolve every dataset under a datasets root, check its layout and what its detection splits hold, and count
its images.

    python tools/check_datasets.py --data-root data/demo --verify-images
    DETECTRON2_DATASETS=/datasets python tools/check_datasets.py imagenet voc2007

Exits non-zero with a one-line error on a wrong root, a missing folder, a folder link that loops, a damaged VOC or
COCO annotation file or a listed image that is missing (the checks tools/train_det.py runs before training,
sslt_core/detection_data.py), a linear-transfer dataset its reader refuses (sslt_core/transfer_datasets.py), or
(with --verify-images) an image that does not decode. The images counted are those the tools read: an ImageFolder
split's class folders as ImageFolder lists them, a linear-transfer dataset's official splits as its reader gives
them (CIFAR's images are decoded from its batch files), every image of the other layouts (one listing,
sslt_core/listing.py).
"""
from sslt_core.cli import ToolParser, run
from sslt_core.datasets import LAYOUTS, dataset_path, datasets_root
from sslt_core.detection_data import DETECTION_SPLITS, check_coco_split, check_voc_split
from sslt_core.images import load_rgb
from sslt_core.listing import class_samples, image_files
from sslt_core.transfer_datasets import TRANSFER_DATASETS


def is_transfer(name):
    return name in TRANSFER_DATASETS and name != "voc2007"  # VOC2007's files are its detection layout's


def dataset_images(name, path):
    """({split: image count}, the image files the tools read) of dataset `name` at `path`."""
    if is_transfer(name):  # its official splits as its reader gives them: paths, or CIFAR's decoded arrays
        splits = TRANSFER_DATASETS[name].read(path).splits
        return ({split: len(part.images) for split, part in splits.items()},
                [image for part in splits.values() if isinstance(part.images, list) for image in part.images])
    check = check_voc_split if name.startswith("voc") else check_coco_split
    counts = {split: check(path, split) for split in DETECTION_SPLITS.get(name, ())}
    if LAYOUTS[name].class_dirs:
        return counts, [image for split in LAYOUTS[name].class_dirs for image, _ in class_samples(path / split)[1]]
    return counts, image_files(path)


def present(root):
    """The datasets whose folder is under the root (the first layout, to be reported missing, when none is)."""
    base = datasets_root(root)
    return [name for name, layout in LAYOUTS.items() if (base / layout.folder).exists()] or list(LAYOUTS)[:1]


def main(argv=None):
    parser = ToolParser(description=__doc__)
    parser.add_argument("datasets", nargs="*", help=f"any of {', '.join(LAYOUTS)} (default: those under the root)")
    parser.add_argument("--data-root", help="the folder holding the datasets (default: $DETECTRON2_DATASETS)")
    parser.add_argument("--verify-images", action="store_true", help="decode every image")
    args = parser.parse_args(argv)
    for name in args.datasets or present(args.data_root):
        path = dataset_path(name, args.data_root)
        splits, images = dataset_images(name, path)
        if args.verify_images:
            for image in images:
                load_rgb(image)
        total = sum(splits.values()) if is_transfer(name) else len(images)
        listed = "".join(f", {split} {count}" for split, count in splits.items())
        print(f"{name:10s} {path}  {total} images{listed}" + (", all decode" if args.verify_images else ""))

if __name__ == "__main__":
    run(main)
