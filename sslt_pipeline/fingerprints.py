"""What each stage reads, by content: the fingerprint of every split in its spec's "data" (as the feature caches
key them: names, labels, sizes, mtimes and a sampled content hash), so that a split rewritten in place re-runs
what reads it."""
from sslt_core.datasets import dataset_path, image_folder
from sslt_core.fingerprint import samples_fingerprint
from sslt_core.listing import files_under


def split_fingerprint(split, data_root):
    """The fingerprint of a split: "imagenet/<split>", or a detection layout (a key of sslt_core.datasets.LAYOUTS:
    every file of that dataset), as it is now; "absent" when an ImageNet split is not there."""
    if split.startswith("imagenet/"):
        folder = dataset_path("imagenet", data_root) / split.split("/", 1)[1]
        return samples_fingerprint(image_folder("imagenet", folder.name, data_root).samples) if folder.is_dir() \
            else "absent"
    return samples_fingerprint([(path, "") for path in files_under(dataset_path(split, data_root))])


def data_fingerprints(stages, data_root):
    """Each stage's spec["data"] (the splits it reads) replaced by {split: its fingerprint now}, each split
    fingerprinted once."""
    known = {}
    for stage in stages:
        for split in stage.spec.get("data", ()):
            if split not in known:
                known[split] = split_fingerprint(split, data_root)
        stage.spec["data"] = {split: known[split] for split in stage.spec.get("data", ())}
