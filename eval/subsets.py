"""The labelled subsets of ImageNet train for semi-supervised fine-tuning: the official 1% and 10% lists (shipped in
eval/imagenet_subsets/, Apache 2.0, from google-research/simclr; see NOTICE there), a user's list file, or a
generated `per-class-K` list (the first K images of each class folder, for the demo data and quick runs).

A list holds one train file name per line, `<wnid>_<number>.JPEG`; the image is read from
ROOT/imagenet/train/<wnid>/<name> (the ImageFolder layout of sslt_core/datasets.py), its label the index of
<wnid> among the train split's class folders (sorted, as ImageFolder indexes them).
"""
import hashlib
import re
from pathlib import Path

import torch

from sslt_core.datasets import dataset_path
from sslt_core.errors import DatasetError
from sslt_core.images import load_rgb
from sslt_core.listing import class_folders, image_files

FOLDER = Path(__file__).resolve().parent / "imagenet_subsets"
# name -> (file, images, sha256 of the file as google-research/simclr ships it, commit 383d414)
OFFICIAL = {
    "1percent": ("1percent.txt", 12811, "71e82a48ba78252683ae334c4d019ebd5c6e855b9599c1389fbe83eb9549cf17"),
    "10percent": ("10percent.txt", 128116, "6d09de11e7bdaf5b1f3b1f249b6183695f97310cdd20f0c03e7235b6b9392091"),
}
PER_CLASS = re.compile(r"per-class-([1-9][0-9]*)")
SHOWN = 3  # missing images named in the error


def class_of(name):
    """The class folder of a list entry: n01641577_20505.JPEG -> n01641577 (the demo's circle_00003.jpg -> circle)."""
    return name.rsplit("_", 1)[0]


def parse_list(text, where):
    """The file names of a list's text, one per line (blank lines skipped); duplicates and paths refused."""
    names = [line.strip() for line in text.splitlines() if line.strip()]
    if not names:
        raise DatasetError(f"subset list {where} holds no file names; write one train file name per line")
    bad = next((n for n in names if "/" in n or "\\" in n or "_" not in n), None)
    if bad is not None:
        raise DatasetError(f"subset list {where}: entry {bad!r} is not a train file name <class>_<number>.<ext> "
                           "(one name per line, no folders)")
    if len(set(names)) != len(names):
        duplicate = next(n for i, n in enumerate(names) if n in names[:i])
        raise DatasetError(f"subset list {where} names {duplicate!r} twice; each image once")
    return names


def official_list(name):
    """(names, sha256) of a shipped list, its sha256 checked against the one recorded here."""
    file, count, expected = OFFICIAL[name]
    path = FOLDER / file
    try:
        data = path.read_bytes()
    except OSError:
        raise DatasetError(f"the shipped subset list {path} is missing; reinstall the toolkit "
                           "(pip install -e .)") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != expected:
        raise DatasetError(f"the shipped subset list {path} has sha256 {digest[:12]}..., not the official "
                           f"{expected[:12]}...: it was changed; reinstall the toolkit or pass your list as a file")
    names = parse_list(data.decode(), path)
    if len(names) != count:  # cannot happen with the right sha256; a cheap second check
        raise DatasetError(f"the shipped subset list {path} holds {len(names)} names, not {count}")
    return names, digest


def generated_list(train_dir, per_class):
    """The first `per_class` images (in ImageFolder's order) of each class folder of `train_dir`."""
    names = []
    for wnid in class_folders(train_dir):
        files = [Path(p).name for p in image_files(Path(train_dir) / wnid)]
        wrong = [f for f in files if class_of(f) != wnid]
        if wrong:
            raise DatasetError(f"{train_dir}/{wnid}/{wrong[0]} is not named {wnid}_<number>: a per-class list "
                               "needs ImageNet's file names")
        if len(files) < per_class:
            raise DatasetError(f"per-class-{per_class}: {train_dir}/{wnid} holds {len(files)} images; choose a "
                               f"smaller K")
        names += files[:per_class]
    return names


def subset_names(spec, train_dir):
    """(names, description) of subset `spec`: "1percent", "10percent", "per-class-K" or a list file's path."""
    if spec in OFFICIAL:
        names, digest = official_list(spec)
        source = f"official {spec} list (google-research/simclr)"
    elif PER_CLASS.fullmatch(spec):
        names = generated_list(train_dir, int(PER_CLASS.fullmatch(spec).group(1)))
        digest, source = hashlib.sha256("\n".join(names).encode()).hexdigest(), f"generated {spec} list"
    else:
        path = Path(spec).expanduser()
        if not path.is_file():
            raise DatasetError(f"subset '{spec}' is neither 1percent, 10percent, per-class-K nor a list file; "
                               "pass one of those")
        data = path.read_bytes()
        try:
            names = parse_list(data.decode(), path)
        except UnicodeDecodeError:
            raise DatasetError(f"subset list {path} is not UTF-8 text; write one file name per line") from None
        digest, source = hashlib.sha256(data).hexdigest(), f"list file {path.resolve()}"
    return names, {"subset": spec, "source": source, "sha256": digest, "images": len(names)}


def subset_samples(names, train_dir):
    """[(path, label)] of the named images in `train_dir`; a DatasetError naming how many are missing (and the
    first few) before anything is trained."""
    classes = class_folders(train_dir)
    index = {name: i for i, name in enumerate(classes)}
    samples, missing = [], []
    for name in names:
        path = Path(train_dir) / class_of(name) / name
        if class_of(name) in index and path.is_file():
            samples.append((str(path), index[class_of(name)]))
        else:
            missing.append(name)
    if missing:
        raise DatasetError(f"{len(missing)} of the {len(names)} subset images are not in {train_dir} (e.g. "
                           f"{', '.join(missing[:SHOWN])}); point --data at the full ImageNet train split or pass "
                           "a subset list of the images you have")
    return samples, classes


def resolve(spec, data_root):
    """(train samples, classes, description) of subset `spec` under the datasets root."""
    train_dir = dataset_path("imagenet", data_root) / "train"
    names, description = subset_names(spec, train_dir)
    samples, classes = subset_samples(names, train_dir)
    return samples, classes, description


class SampleDataset(torch.utils.data.Dataset):
    """(image, label) of [(path, label)], the transform's randomness drawn from a generator seeded by (seed,
    epoch, index): the same crops whatever the number of workers or processes, and after a resume."""

    def __init__(self, samples, transform, seed=0):
        self.samples, self.transform, self.seed, self.epoch = list(samples), transform, seed, 0

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, index):
        path, label = self.samples[index]
        image = load_rgb(path)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(((self.seed * 1_000_003 + self.epoch) * 10_000_019 + index) % 2**63)
            return self.transform(image), label
