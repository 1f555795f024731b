"""Resolve every dataset under a datasets root, check its layout, and count what it holds.

    python tools/check_datasets.py --data-root data/demo --verify-images
    DETECTRON2_DATASETS=/datasets python tools/check_datasets.py imagenet voc2007

Exits non-zero with a one-line error on a wrong root, a missing folder, a folder link that loops or (with
--verify-images) an image that does not decode. The images counted are those the tools read: an ImageFolder
split's class folders as ImageFolder lists them, every image of the other layouts (one listing,
sslt_core/listing.py).
"""
from sslt_core.cli import ToolParser, run
from sslt_core.datasets import LAYOUTS, dataset_path
from sslt_core.images import load_rgb
from sslt_core.listing import class_samples, image_files


def dataset_images(name, path):
    """The images the tools read from dataset `name` at `path`."""
    if LAYOUTS[name].class_dirs:
        return [image for split in LAYOUTS[name].class_dirs for image, _ in class_samples(path / split)[1]]
    return image_files(path)


def main(argv=None):
    parser = ToolParser(description=__doc__)
    parser.add_argument("datasets", nargs="*", default=list(LAYOUTS),
                        help=f"any of {', '.join(LAYOUTS)}")
    parser.add_argument("--data-root", help="the folder holding the datasets (default: $DETECTRON2_DATASETS)")
    parser.add_argument("--verify-images", action="store_true", help="decode every image")
    args = parser.parse_args(argv)
    for name in args.datasets:
        path = dataset_path(name, args.data_root)
        images = dataset_images(name, path)
        if args.verify_images:
            for image in images:
                load_rgb(image)
        print(f"{name:9s} {path}  {len(images)} images" + (", all decode" if args.verify_images else ""))


if __name__ == "__main__":
    run(main)
