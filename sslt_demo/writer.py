"""Writing the generated demo data in the real datasets' layouts (see sslt_core/datasets.py), atomically.

    OUT/imagenet/{train,val}/<class>/*.jpg                               ImageFolder, one object per image
    OUT/VOC2007/{JPEGImages,Annotations,ImageSets/Main}   trainval/test   VOC XML, several objects, `difficult`
    OUT/VOC2012/...                                       trainval        for the VOC07+12 protocol
    OUT/coco/{annotations/instances_{train,val}2017.json,train2017,val2017}  COCO polygons, area, iscrowd
    OUT/cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}    CIFAR's pickled batches, 32 x 32
    OUT/dtd/{images/<class>/*.jpg,labels/{train,val,test}1.txt}          DTD's split 1
    OUT/flowers-102/{jpg/image_NNNNN.jpg,imagelabels.mat,setid.mat}       Flowers-102's official splits
    OUT/MANIFEST.json                                                     seed, size, counts: written last

Every image draws from its own random stream, keyed by (seed, dataset, split, index), so a seed gives the
same bytes whatever the order or the machine's numpy state.
"""
import io
import json
import os
import pickle
import shutil
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from xml.etree import ElementTree

import numpy as np
from pycocotools import mask as mask_utils
from tqdm import tqdm

from sslt_core.atomic import open_output
from sslt_core.errors import DatasetError, OutputError
from sslt_core.lock import OutputLock
from sslt_demo.shapes import CLASSES, classification_image, render, sample_layout

GENERATOR_VERSION = 3  # bump when the drawing or the sizes change, so that old demo sets are regenerated
JPEG_QUALITY = 90


@dataclass(frozen=True)
class DemoSize:
    classification_size: int  # pixels, square
    train_per_class: int
    val_per_class: int
    scene_size: tuple  # (width, height) of a detection image, before a +-20% jitter per image
    voc2007_trainval: int
    voc2007_test: int
    voc2012_trainval: int
    coco_train: int
    coco_val: int
    max_objects: int
    transfer_per_class: int = 4  # images per class and split of the linear transfer's layouts (CIFAR: test)


SIZES = {
    # seconds: for tests
    "small": DemoSize(32, 8, 4, (96, 72), 16, 8, 8, 12, 6, 4),
    # sized for the demo pipeline: a 2-core machine pretrains and transfers on it in minutes
    "default": DemoSize(64, 160, 40, (192, 144), 400, 100, 200, 400, 60, 5, transfer_per_class=30),
}
CIFAR_SIZE = 32  # CIFAR's batches hold 32 x 32 images


def _rng(seed, *keys):
    return np.random.default_rng([seed] + [zlib.crc32(str(k).encode()) for k in keys])


def _save_jpeg(image, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open_output(path, "wb") as file:  # never through a link
        image.save(file, "JPEG", quality=JPEG_QUALITY)


def _write_text(path, text):
    with open_output(path, "w") as file:
        file.write(text)


def write_image_folder(root, seed, size):
    counts = {}
    for split, per_class in (("train", size.train_per_class), ("val", size.val_per_class)):
        for class_index, name in enumerate(tqdm(CLASSES, desc=f"imagenet/{split}", leave=False)):
            for i in range(per_class):
                rng = _rng(seed, "imagenet", split, name, i)
                image = classification_image(rng, class_index, size.classification_size)
                _save_jpeg(image, root / split / name / f"{name}_{i:05d}.jpg")
        counts[split] = per_class * len(CLASSES)
    return counts


def _write_bytes(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open_output(path, "wb") as file:
        file.write(data)


def write_cifar10(root, seed, size):
    """CIFAR-10's python batches: pickled dicts of bytes keys, 'data' uint8 [N, 3072] (channel planes, row-major),
    'labels'; train split over data_batch_1..5, test_batch; batches.meta with 'label_names'."""
    def images(split, count):
        pairs = [(c, i) for i in range(count) for c in range(len(CLASSES))]  # classes interleaved, as CIFAR's
        data = np.stack([np.asarray(classification_image(_rng(seed, "cifar10", split, c, i), c, CIFAR_SIZE))
                         for c, i in pairs])
        return data.transpose(0, 3, 1, 2).reshape(len(pairs), -1), [c for c, _ in pairs]

    train, train_labels = images("train", size.train_per_class)
    for number, part in enumerate(np.array_split(np.arange(len(train)), 5), 1):
        batch = {b"batch_label": f"training batch {number} of 5".encode(), b"labels": [train_labels[i] for i in part],
                 b"data": train[part], b"filenames": [f"{i:05d}.png".encode() for i in part]}
        _write_bytes(root / f"data_batch_{number}", pickle.dumps(batch, protocol=2))
    test, test_labels = images("test", size.transfer_per_class)
    _write_bytes(root / "test_batch", pickle.dumps({b"batch_label": b"testing batch 1 of 1", b"labels": test_labels,
                                                    b"data": test}, protocol=2))
    meta = {b"label_names": [c.encode() for c in CLASSES], b"num_cases_per_batch": len(train) // 5,
            b"num_vis": CIFAR_SIZE * CIFAR_SIZE * 3}
    _write_bytes(root / "batches.meta", pickle.dumps(meta, protocol=2))
    return {"train": len(train), "test": len(test)}


def write_dtd(root, seed, size):
    """DTD's layout, split 1 only: images/<class>/<class>_NNNN.jpg, labels/{train,val,test}1.txt."""
    counts = {}
    for split_index, split in enumerate(("train", "val", "test")):
        lines = []
        for class_index, name in enumerate(CLASSES):
            for i in range(size.transfer_per_class):
                file = f"{name}_{split_index * size.transfer_per_class + i + 1:04d}.jpg"
                image = classification_image(_rng(seed, "dtd", split, name, i), class_index, size.classification_size)
                _save_jpeg(image, root / "images" / name / file)
                lines.append(f"{name}/{file}\n")
        _write_bytes(root / "labels" / f"{split}1.txt", "".join(lines).encode())
        counts[split] = len(lines)
    return counts


def write_flowers102(root, seed, size):
    """Flowers-102's layout: jpg/image_NNNNN.jpg (numbered from 1), imagelabels.mat ('labels' 1..K of every
    image), setid.mat ('trnid', 'valid', 'tstid': image numbers)."""
    from scipy.io import savemat

    labels, ids, number = [], {}, 0
    for split, key in (("train", "trnid"), ("val", "valid"), ("test", "tstid")):
        ids[key] = []
        for i in range(size.transfer_per_class):
            for class_index in range(len(CLASSES)):
                number += 1
                image = classification_image(_rng(seed, "flowers102", split, class_index, i), class_index,
                                             size.classification_size)
                _save_jpeg(image, root / "jpg" / f"image_{number:05d}.jpg")
                labels.append(class_index + 1)
                ids[key].append(number)
    for name, data in (("imagelabels.mat", {"labels": np.array([labels], dtype=np.uint8)}),
                       ("setid.mat", {k: np.array([v], dtype=np.uint16) for k, v in ids.items()})):
        buffer = io.BytesIO()
        savemat(buffer, data)
        # the MAT header's 116 bytes of text hold the time of writing: a fixed text keeps a seed's bytes the same
        header = b"MATLAB 5.0 MAT-file, written by the ssl-transfer demo generator".ljust(116)
        _write_bytes(root / name, header + buffer.getvalue()[116:])
    return {split: len(ids[key]) for split, key in (("train", "trnid"), ("val", "valid"), ("test", "tstid"))}


def scene(seed, dataset, split, index, size):
    """One detection image and its objects: a list of dicts with class_index, polygon, mask, box (x0,y0,x1,y1)."""
    rng = _rng(seed, dataset, split, index)
    width, height = (int(round(s * rng.uniform(0.8, 1.2))) for s in size.scene_size)
    layout = sample_layout(rng, height, width, int(rng.integers(2, size.max_objects + 1)))
    image, masks = render(rng, height, width, [polygon for _, polygon in layout])
    objects = []
    for (class_index, polygon), mask in zip(layout, masks):
        rows, cols = np.nonzero(mask)
        box = (int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1)  # pixel edges
        objects.append(dict(class_index=class_index, polygon=polygon, mask=mask, box=box))
    return image, objects


def _voc_xml(file_id, folder, width, height, objects):
    annotation = ElementTree.Element("annotation")
    for tag, text in (("folder", folder), ("filename", f"{file_id}.jpg")):
        ElementTree.SubElement(annotation, tag).text = text
    source = ElementTree.SubElement(annotation, "source")
    ElementTree.SubElement(source, "database").text = "ssl-transfer generated demo data"
    size = ElementTree.SubElement(annotation, "size")
    for tag, value in (("width", width), ("height", height), ("depth", 3)):
        ElementTree.SubElement(size, tag).text = str(value)
    ElementTree.SubElement(annotation, "segmented").text = "0"
    for obj in objects:
        node = ElementTree.SubElement(annotation, "object")
        x0, y0, x1, y1 = obj["box"]
        for tag, text in (("name", CLASSES[obj["class_index"]]), ("pose", "Unspecified"), ("truncated", "0"),
                          ("difficult", str(int(obj["difficult"])))):
            ElementTree.SubElement(node, tag).text = text
        box = ElementTree.SubElement(node, "bndbox")
        # VOC boxes are 1-based and inclusive: the first pixel column is 1, the last is x1 (x1 - 1 zero-based).
        for tag, value in (("xmin", x0 + 1), ("ymin", y0 + 1), ("xmax", x1), ("ymax", y1)):
            ElementTree.SubElement(box, tag).text = str(value)
    ElementTree.indent(annotation)
    return ElementTree.tostring(annotation, encoding="unicode")


def write_voc(root, seed, size, year, splits):
    """VOC`year` with `splits` = {split: count}; ImageSets/Main gets per-split and per-class lists."""
    main = root / "ImageSets" / "Main"
    main.mkdir(parents=True)
    (root / "Annotations").mkdir()
    ids_of, presence, number = {}, {}, 0
    for split, count in splits.items():
        ids_of[split] = []
        for index in tqdm(range(count), desc=f"VOC{year}/{split}", leave=False):
            number += 1  # ids run across splits, as in VOC: 000001 ... (VOC2007), 2012_000001 ... (VOC2012)
            file_id = f"{number:06d}" if year == 2007 else f"{year}_{number:06d}"
            image, objects = scene(seed, f"VOC{year}", split, index, size)
            presence[file_id] = {}  # per class: 1 present, 0 only difficult instances, -1 absent
            for obj in objects:
                x0, y0, x1, y1 = obj["box"]
                # As in VOC, small objects are difficult: the VOC evaluator neither rewards nor punishes them.
                obj["difficult"] = max(x1 - x0, y1 - y0) < 0.15 * min(image.width, image.height)
                name = CLASSES[obj["class_index"]]
                presence[file_id][name] = max(presence[file_id].get(name, 0), 0 if obj["difficult"] else 1)
            _save_jpeg(image, root / "JPEGImages" / f"{file_id}.jpg")
            xml = _voc_xml(file_id, f"VOC{year}", image.width, image.height, objects)
            _write_text(root / "Annotations" / f"{file_id}.xml", xml)
            ids_of[split].append(file_id)
    if "trainval" in splits:  # VOC's train/val halves of trainval
        ids_of["train"], ids_of["val"] = ids_of["trainval"][0::2], ids_of["trainval"][1::2]
    for split, ids in ids_of.items():
        _write_text(main / f"{split}.txt", "".join(f"{i}\n" for i in ids))
        for name in CLASSES:
            lines = "".join(f"{i} {presence[i].get(name, -1):2d}\n" for i in ids)
            _write_text(main / f"{name}_{split}.txt", lines)
    return {split: len(ids) for split, ids in ids_of.items()}


def write_coco(root, seed, size, splits):
    """COCO 2017 layout with `splits` = {"train2017": n, "val2017": m}; one polygon per object."""
    (root / "annotations").mkdir(parents=True)
    categories = [{"id": i + 1, "name": name, "supercategory": "shape"} for i, name in enumerate(CLASSES)]
    counts = {}
    for split, count in splits.items():
        images, annotations = [], []
        for index in tqdm(range(count), desc=f"coco/{split}", leave=False):
            image, objects = scene(seed, "coco", split, index, size)
            image_id = index + 1
            file_name = f"{image_id:012d}.jpg"
            _save_jpeg(image, root / split / file_name)
            images.append({"id": image_id, "file_name": file_name, "width": image.width, "height": image.height})
            for obj in objects:
                rle = mask_utils.encode(np.asfortranarray(obj["mask"]))
                annotations.append({
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": obj["class_index"] + 1,
                    "segmentation": [obj["polygon"].reshape(-1).tolist()],
                    "area": float(mask_utils.area(rle)),
                    "bbox": [float(v) for v in mask_utils.toBbox(rle)],  # [x, y, w, h] of the mask
                    "iscrowd": 0,
                })
        data = {"info": {"description": "ssl-transfer generated demo data", "version": str(GENERATOR_VERSION)},
                "licenses": [], "images": images, "annotations": annotations, "categories": categories}
        _write_text(root / "annotations" / f"instances_{split}.json", json.dumps(data))
        counts[split] = {"images": len(images), "annotations": len(annotations)}
    return counts


def _settings(seed, size_name):
    return {"generator_version": GENERATOR_VERSION, "seed": seed, "size": size_name, "classes": list(CLASSES)}


def _existing(out, seed, size_name, force):
    """The manifest of `out` if it already holds this demo set (reuse it), None if it must be (re)generated."""
    manifest_path = out / "MANIFEST.json"
    if not out.exists() or force:
        return None
    try:
        manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    except (json.JSONDecodeError, UnicodeDecodeError):
        manifest = {}
    if {k: manifest.get(k) for k in _settings(seed, size_name)} == _settings(seed, size_name):
        return manifest
    outdated = manifest.get("generator_version", GENERATOR_VERSION) < GENERATOR_VERSION
    same_set = {k: manifest.get(k) for k in ("seed", "size")} == {"seed": seed, "size": size_name}
    if not (outdated and same_set):  # the same demo set from an older generator is replaced
        raise DatasetError(f"{out} already exists and is not demo data with seed {seed} and size {size_name}; "
                           "pass --force to replace it, or choose another --out")
    return None


def make_demo_data(out, seed=0, size_name="default", force=False):
    """Write all demo datasets under `out`; return the manifest. Reuses `out` if it holds the same settings.

    Everything is written into a sibling folder first and renamed into place at the end, so an interrupted
    run leaves no half-written set at `out`; a lock beside `out` (.NAME.lock) keeps a second generator out,
    so the partial folders found under it are those of killed runs, and only they are removed.
    """
    if size_name not in SIZES:
        raise DatasetError(f"unknown demo size '{size_name}'; choose one of {', '.join(SIZES)}")
    out, size = Path(out), SIZES[size_name]
    manifest = _existing(out, seed, size_name, force)
    if manifest is not None:
        return manifest
    if out.is_symlink():  # the new set is renamed into place: it would replace the link, not what it points to
        raise OutputError(f"{out} is a link (to {os.path.realpath(out)}); give that folder as --out, or remove the "
                          "link")
    with OutputLock(out, lock_path=out.parent / f".{out.name}.lock"):
        manifest = _existing(out, seed, size_name, force)  # another run may have written it meanwhile
        if manifest is not None:
            return manifest
        for pattern in (f".{out.name}.partial-*", f".{out.name}.old-*"):  # killed runs' (we hold the lock)
            for stale in out.parent.glob(pattern):
                shutil.rmtree(stale, ignore_errors=True)
        return _generate(out, seed, size_name, size)


def _generate(out, seed, size_name, size):
    partial = out.parent / f".{out.name}.partial-{os.getpid()}"
    if partial.is_symlink():  # planted: the stale folders were removed above, a link is not followed
        partial.unlink()
    partial.mkdir(parents=True)
    try:
        counts = {
            "imagenet": write_image_folder(partial / "imagenet", seed, size),
            "VOC2007": write_voc(partial / "VOC2007", seed, size, 2007,
                                 {"trainval": size.voc2007_trainval, "test": size.voc2007_test}),
            "VOC2012": write_voc(partial / "VOC2012", seed, size, 2012, {"trainval": size.voc2012_trainval}),
            "coco": write_coco(partial / "coco", seed, size,
                               {"train2017": size.coco_train, "val2017": size.coco_val}),
            "cifar-10-batches-py": write_cifar10(partial / "cifar-10-batches-py", seed, size),
            "dtd": write_dtd(partial / "dtd", seed, size),
            "flowers-102": write_flowers102(partial / "flowers-102", seed, size),
        }
        manifest = {**_settings(seed, size_name), "sizes": asdict(size), "counts": counts}
        _write_text(partial / "MANIFEST.json", json.dumps(manifest, indent=2) + "\n")
        if out.exists():
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            os.replace(out, old)
            os.replace(partial, out)
            shutil.rmtree(old)
        else:
            os.replace(partial, out)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return manifest
