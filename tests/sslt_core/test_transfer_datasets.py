"""Every linear-transfer layout, written here in tiny form as its official archive extracts (as torchvision's own
tests fake its datasets), read back with the right labels and splits; missing and malformed datasets fail in one
line showing the expected layout; CIFAR's pickles never run code."""
import io
import pickle

import numpy as np
import pytest
from PIL import Image
from scipy.io import savemat

from sslt_core.errors import DatasetLayoutError
from sslt_core.transfer_datasets import TRANSFER_DATASETS


def _jpeg(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (6, 5), (10, 20, 30)).save(path)


def _text(path, lines):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in lines))


# Each writer returns {split: [expected label of each image, in order]} (class indices into the reader's classes).
def food101(root):
    folder = root / "food-101"
    _text(folder / "meta" / "classes.txt", ["apple_pie", "baklava"])
    _text(folder / "meta" / "train.txt", ["baklava/11", "apple_pie/12", "apple_pie/13"])
    _text(folder / "meta" / "test.txt", ["apple_pie/21", "baklava/22"])
    for line in ["baklava/11", "apple_pie/12", "apple_pie/13", "apple_pie/21", "baklava/22"]:
        _jpeg(folder / "images" / f"{line}.jpg")
    return {"train": [1, 0, 0], "test": [0, 1]}


def _cifar_file(path, labels, key):
    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.arange(len(labels) * 3072, dtype=np.uint64).astype(np.uint8).reshape(len(labels), 3072)
    path.write_bytes(pickle.dumps({b"data": data, key: labels}, protocol=2))


def cifar10(root):
    folder = root / "cifar-10-batches-py"
    for i in range(1, 6):
        _cifar_file(folder / f"data_batch_{i}", [i % 3, (i + 1) % 3], b"labels")
    _cifar_file(folder / "test_batch", [2, 1, 0], b"labels")
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": [b"a", b"b", b"c"]}, protocol=2))
    return {"train": [y for i in range(1, 6) for y in (i % 3, (i + 1) % 3)], "test": [2, 1, 0]}


def cifar100(root):
    folder = root / "cifar-100-python"
    _cifar_file(folder / "train", [3, 0, 1], b"fine_labels")
    _cifar_file(folder / "test", [2], b"fine_labels")
    # as Python 2 pickled it, read with latin1: str keys
    (folder / "meta").write_bytes(pickle.dumps({"fine_label_names": ["w", "x", "y", "z"]}, protocol=2))
    return {"train": [3, 0, 1], "test": [2]}


def birdsnap(root):
    folder = root / "birdsnap"
    _text(folder / "species.txt", ["id\tcommon\tscientific\tdir", "1\tAcadian Flycatcher\tE. v.\tAcadian_Flycatcher",
                                   "2\tAmerican Coot\tF. a.\tAmerican_Coot"])
    rows = [("A/1.jpg", 1), ("B/2.jpg", 2), ("B/3.jpg", 2), ("A/4.jpg", 1), ("A/5.jpg", 1)]
    _text(folder / "images.txt", ["url\tmd5\tpath\tspecies_id\tbb_x1"] + [f"http://x/{p}\tmd5\t{p}\t{s}\t1"
                                                                         for p, s in rows])
    _text(folder / "test_images.txt", ["path", "B/3.jpg"])
    for path, _ in rows[:-1]:  # the last one's URL is dead: not downloaded
        _jpeg(folder / "download" / "images" / path)
    return {"train": [0, 1, 0], "test": [1]}


def sun397(root):
    folder = root / "SUN397"
    train = ["/a/abbey/sun_1.jpg", "/b/beach/sun_2.jpg", "/o/office/cubicle/sun_3.jpg"]
    _text(folder / "Partitions" / "Training_01.txt", train)
    _text(folder / "Partitions" / "Testing_01.txt", ["/b/beach/sun_4.jpg"])
    for line in train + ["/b/beach/sun_4.jpg"]:
        _jpeg(folder / line[1:])
    return {"train": [0, 1, 2], "test": [1]}  # classes a/abbey, b/beach, o/office/cubicle


def _annotations(names, classes):
    return np.array([(n, c) for n, c in zip(names, classes)], dtype=[("fname", "O"), ("class", "O")])


def cars(root):
    folder = root / "stanford_cars"
    (folder / "devkit").mkdir(parents=True)
    savemat(folder / "devkit" / "cars_meta.mat", {"class_names": np.array(["AM General Hummer", "Acura RL"],
                                                                          dtype=object)})
    savemat(folder / "devkit" / "cars_train_annos.mat", {"annotations": _annotations(["00001.jpg", "00002.jpg"],
                                                                                      [2, 1])})
    savemat(folder / "cars_test_annos_withlabels.mat", {"annotations": _annotations(["00001.jpg"], [1])})
    for path in ("cars_train/00001.jpg", "cars_train/00002.jpg", "cars_test/00001.jpg"):
        _jpeg(folder / path)
    return {"train": [1, 0], "test": [0]}


def aircraft(root):
    data = root / "fgvc-aircraft-2013b" / "data"
    _text(data / "variants.txt", ["707-320", "Cessna 172"])
    splits = {"train": [("1025794", "Cessna 172"), ("1340192", "707-320")], "val": [("0056978", "707-320")],
              "test": [("0062781", "Cessna 172")]}
    for split, rows in splits.items():
        _text(data / f"images_variant_{split}.txt", [f"{i} {v}" for i, v in rows])
        for i, _ in rows:
            _jpeg(data / "images" / f"{i}.jpg")
    return {s: [["707-320", "Cessna 172"].index(v) for _, v in rows] for s, rows in splits.items()}


def dtd(root):
    folder = root / "dtd"
    splits = {"train": ["banded/banded_0002.jpg", "zigzagged/zigzagged_0001.jpg"], "val": ["banded/banded_0004.jpg"],
              "test": ["zigzagged/zigzagged_0003.jpg"]}
    for split, lines in splits.items():
        _text(folder / "labels" / f"{split}1.txt", lines)
        for line in lines:
            _jpeg(folder / "images" / line)
    _text(folder / "labels" / "train2.txt", ["banded/banded_0004.jpg"])  # other splits: not read
    return {"train": [0, 1], "val": [0], "test": [1]}


def pets(root):
    folder = root / "oxford-iiit-pet"
    _text(folder / "annotations" / "trainval.txt", ["Abyssinian_100 1 1 1", "american_bulldog_10 2 2 1"])
    _text(folder / "annotations" / "test.txt", ["Abyssinian_201 1 1 1"])
    for name in ("Abyssinian_100", "american_bulldog_10", "Abyssinian_201"):
        _jpeg(folder / "images" / f"{name}.jpg")
    return {"train": [0, 1], "test": [0]}


def caltech101(root):
    categories = root / "caltech101" / "101_ObjectCategories"
    for name, count in (("BACKGROUND_Google", 2), ("Faces", 2), ("accordion", 3)):
        for i in range(count):
            _jpeg(categories / name / f"image_{i + 1:04d}.jpg")
    return {"all": [0, 0, 1, 1, 1]}


def flowers102(root):
    folder = root / "flowers-102"
    folder.mkdir(parents=True)
    labels = [3, 1, 2, 1, 3, 2]
    savemat(folder / "imagelabels.mat", {"labels": np.array([labels], dtype=np.uint8)})
    savemat(folder / "setid.mat", {"trnid": np.array([[1, 2]]), "valid": np.array([[3]]),
                                   "tstid": np.array([[4, 5, 6]])})
    for i in range(1, 7):
        _jpeg(folder / "jpg" / f"image_{i:05d}.jpg")
    return {"train": [2, 0], "val": [1], "test": [0, 2, 1]}


def voc2007(root):
    main = root / "VOC2007" / "ImageSets" / "Main"
    ids = {"train": ["000012", "000017"], "val": ["000005"], "test": ["000001", "000002"]}
    labels = {"cat": {"000012": 1, "000017": -1, "000005": 0, "000001": -1, "000002": 1},
              "dog": {"000012": -1, "000017": 1, "000005": 1, "000001": 1, "000002": 0}}
    for split, names in ids.items():
        _text(main / f"{split}.txt", names)
        for cls, of in labels.items():
            _text(main / f"{cls}_{split}.txt", [f"{i} {of[i]:2d}" for i in names])
        for i in names:
            _jpeg(root / "VOC2007" / "JPEGImages" / f"{i}.jpg")
    _text(main / "trainval.txt", ids["train"] + ids["val"])
    (root / "VOC2007" / "Annotations").mkdir()
    return {s: [[labels["cat"][i], labels["dog"][i]] for i in names] for s, names in ids.items()}


WRITERS = {f.__name__: f for f in (food101, cifar10, cifar100, birdsnap, sun397, cars, aircraft, voc2007, dtd, pets,
                                   caltech101, flowers102)}


def test_a_fixture_for_every_dataset():
    assert set(WRITERS) == set(TRANSFER_DATASETS)


@pytest.mark.parametrize("name", list(WRITERS))
def test_every_layout_reads_back_with_its_labels_and_splits(name, tmp_path):
    expected = WRITERS[name](tmp_path)
    data = TRANSFER_DATASETS[name].load(tmp_path)
    assert set(data.splits) == set(expected)
    for split, labels in expected.items():
        got = data.splits[split]
        assert got.labels.tolist() == labels, split
        assert len(got.images) == len(labels)
        if not isinstance(got.images, np.ndarray):
            assert all(np.asarray(Image.open(p)).shape == (5, 6, 3) for p in got.images)
    assert len(data.classes) >= max(np.max(np.abs(v)) for v in expected.values()) + (name != "voc2007")


def test_cifar_pixels_are_the_channel_planes_of_each_row(tmp_path):
    cifar10(tmp_path)
    images = TRANSFER_DATASETS["cifar10"].load(tmp_path).splits["test"].images
    row = (np.arange(3 * 3072, dtype=np.uint64).astype(np.uint8).reshape(3, 3072))[1]
    assert images.shape == (3, 32, 32, 3) and np.array_equal(images[1, 2, 5], row[[2 * 32 + 5, 1024 + 2 * 32 + 5,
                                                                                   2048 + 2 * 32 + 5]])


def test_class_names_come_from_each_datasets_own_list(tmp_path):
    for name in ("sun397", "pets", "caltech101", "aircraft"):
        WRITERS[name](tmp_path)
    classes = {n: TRANSFER_DATASETS[n].load(tmp_path).classes for n in ("sun397", "pets", "caltech101", "aircraft")}
    assert classes == {"sun397": ("a/abbey", "b/beach", "o/office/cubicle"),
                       "pets": ("Abyssinian", "american_bulldog"), "caltech101": ("Faces", "accordion"),
                       "aircraft": ("707-320", "Cessna 172")}


@pytest.mark.parametrize("name", list(WRITERS))
def test_a_missing_dataset_fails_in_one_line_with_the_expected_layout(name, tmp_path):
    (tmp_path / "elsewhere").mkdir()
    with pytest.raises(DatasetLayoutError) as error:
        TRANSFER_DATASETS[name].load(tmp_path)
    message = str(error.value)
    assert "\n" not in message and "expected ROOT/" in message and "found in" in message and "elsewhere/" in message


def test_a_missing_image_fails_before_any_feature_naming_it(tmp_path):
    dtd(tmp_path)
    (tmp_path / "dtd" / "images" / "banded" / "banded_0004.jpg").unlink()
    with pytest.raises(DatasetLayoutError, match=r"1 listed images are missing, e.g. .*banded_0004.jpg.*expected "
                                                 r"ROOT/dtd/"):
        TRANSFER_DATASETS["dtd"].load(tmp_path)


def test_a_malformed_list_line_is_named(tmp_path):
    aircraft(tmp_path)
    _text(tmp_path / "fgvc-aircraft-2013b" / "data" / "images_variant_val.txt", ["0056978"])
    with pytest.raises(DatasetLayoutError, match=r"images_variant_val.txt:1 is '0056978', not a line of ID VARIANT"):
        TRANSFER_DATASETS["aircraft"].load(tmp_path)


class _Hostile:
    def __reduce__(self):
        import os

        return os.system, ("echo pwned > /dev/null",)


def test_a_cifar_batch_that_would_run_code_is_refused_without_running_it(tmp_path):
    cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(pickle.dumps({b"data": _Hostile()}))
    with pytest.raises(DatasetLayoutError, match=r"data_batch_3 is not a plain CIFAR batch \(a posix.system"):
        TRANSFER_DATASETS["cifar10"].load(tmp_path)


def test_a_cifar_batch_of_the_wrong_shape_is_named(tmp_path):
    cifar10(tmp_path)
    buffer = io.BytesIO()
    pickle.dump({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, buffer)
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(buffer.getvalue())
    with pytest.raises(DatasetLayoutError, match="test_batch: 'data' is not a uint8 array of N x 3072 pixels"):
        TRANSFER_DATASETS["cifar10"].load(tmp_path)


def test_the_demo_data_holds_three_transfer_layouts(demo_root):
    for name, sizes in (("cifar10", {"train": 80, "test": 40}), ("dtd", {"train": 40, "val": 40, "test": 40}),
                        ("flowers102", {"train": 40, "val": 40, "test": 40})):
        data = TRANSFER_DATASETS[name].load(demo_root)
        assert {s: len(v.labels) for s, v in data.splits.items()} == sizes
        for split in data.splits.values():  # every class in every split, equally often
            assert np.array_equal(np.bincount(split.labels), [len(split.labels) // 10] * 10)
