"""What a detection split holds, checked before detectron2 reads it: the one check that tools/check_datasets.py and
tools/train_det.py (and the pipeline's detection stages) share.

detectron2 reads VOC and COCO annotations lazily, when the trainer is built, and meets a damaged file with a
traceback (a json cut in half, an XML without <xmin>, a category id not in `categories`), or not at all: a box of
negative width trains and evaluates, and an image listed but missing fails only when the loader reaches it.
Each check here follows what detectron2's loaders read (data/datasets/pascal_voc.py load_voc_instances,
data/datasets/coco.py load_coco_json) and names the file and the problem.
"""
import json
import math
import os
from collections import Counter
from pathlib import Path
from xml.etree import ElementTree

from sslt_core.errors import DatasetError

# The splits of each detection layout (a key of sslt_core.datasets.LAYOUTS) that the detection sets read.
DETECTION_SPLITS = {"voc2007": ("trainval", "test"), "voc2012": ("trainval",), "coco": ("train2017", "val2017")}


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _read_text(path, what):
    if not path.is_file():
        raise DatasetError(f"{path}: no such file ({what}); restore it, or regenerate the dataset")
    try:
        return path.read_text()
    except UnicodeDecodeError:
        raise DatasetError(f"{path} is not UTF-8 text ({what}); restore the original file") from None


def voc_image_ids(listing, what="a VOC image list"):
    """The image ids of a VOC image list (ImageSets/Main/<split>.txt): one id per line, blank lines only at the end;
    DatasetError naming the line of a byte-order mark, a line of several words, a blank line before the last id or a
    repeated id, or a list of none (`what` names the file in a read error)."""
    text = _read_text(listing, what)
    if text.startswith("\ufeff"):
        raise DatasetError(f"{listing} starts with a byte-order mark, which VOC's lists do not; save it as plain "
                           "UTF-8 without a BOM")
    lines = text.split("\n")
    while lines and not lines[-1].strip():  # blank lines at the end are harmless
        lines.pop()
    ids, seen = [], {}
    for number, line in enumerate(lines, 1):
        words = line.split()
        if len(words) > 1:
            raise DatasetError(f"{listing} line {number}: {line.strip()!r} is not one image id (an image list holds "
                               "one id per line, as VOC's); fix the list")
        if not words:  # detectron2's VOC evaluator reads the list itself and takes a blank line for an image
            raise DatasetError(f"{listing} line {number} is blank; remove it (detectron2's evaluator reads every "
                               "line as an image id)")
        if words[0] in seen:
            raise DatasetError(f"{listing} line {number}: image '{words[0]}' is listed again (first at line "
                               f"{seen[words[0]]}); remove the repeat")
        seen[words[0]] = number
        ids.append(words[0])
    if not ids:
        raise DatasetError(f"{listing} lists no image; restore it, or regenerate the dataset")
    return ids


def _voc_box(obj, xml, classes):
    name = obj.findtext("name")
    if not name or not name.strip():
        raise DatasetError(f"{xml}: an <object> has no <name>; fix the annotation")
    if classes is not None and name.strip() not in classes:
        raise DatasetError(f"{xml}: object class '{name.strip()}' is not one of the dataset's {len(classes)} "
                           f"classes ({', '.join(classes[:5])}, ...); fix the annotation")
    box = obj.find("bndbox")
    if box is None:
        raise DatasetError(f"{xml}: object '{name}' has no <bndbox>; fix the annotation")
    values = []
    for key in ("xmin", "ymin", "xmax", "ymax"):
        text = box.findtext(key)
        try:
            value = float(text)
        except (TypeError, ValueError):
            value = None
        if value is None or not math.isfinite(value):
            what = "no" if text is None else f"a non-numeric ({text!r})"
            raise DatasetError(f"{xml}: object '{name}' has {what} <{key}>; fix the annotation")
        values.append(value)
    if values[2] < values[0] or values[3] < values[1]:
        raise DatasetError(f"{xml}: object '{name}' has a box of negative size (xmin {values[0]:g} xmax {values[2]:g}, "
                           f"ymin {values[1]:g} ymax {values[3]:g}); fix the annotation")


def check_voc_split(folder, split, classes=None):
    """The number of images of VOC split `split` under `folder` (.../VOC2007); DatasetError naming the file if an
    image listed in ImageSets/Main/<split>.txt lacks its JPEG or its XML, or an XML is not what detectron2 reads:
    <size> with a positive <width> and <height>, each <object> with a <name> (one of `classes` when given) and a
    <bndbox> of four numbers with xmin <= xmax, ymin <= ymax."""
    folder = Path(folder)
    listing = folder / "ImageSets" / "Main" / f"{split}.txt"
    ids = voc_image_ids(listing, f"the image list of VOC split {split}")
    for file_id in ids:
        if "/" in file_id or "\\" in file_id or file_id in (".", ".."):
            raise DatasetError(f"{listing}: '{file_id}' is not an image id (a name without folders); fix the list")
        jpeg = folder / "JPEGImages" / f"{file_id}.jpg"
        if not jpeg.is_file():
            raise DatasetError(f"{jpeg}: no such file, but {listing} lists image '{file_id}'; restore the image or "
                               "remove it from the list")
        xml = folder / "Annotations" / f"{file_id}.xml"
        text = _read_text(xml, f"the annotation of image '{file_id}' listed in {listing}")
        try:
            root = ElementTree.fromstring(text)
        except ElementTree.ParseError as error:
            raise DatasetError(f"{xml} is not valid XML ({error}); restore the annotation") from None
        for key in ("width", "height"):
            value = root.findtext(f"size/{key}")
            if value is None or not value.strip().isdigit() or int(value) < 1:
                raise DatasetError(f"{xml}: <size><{key}> must be a positive integer, got {value!r}; fix the "
                                   "annotation")
        for obj in root.findall("object"):
            _voc_box(obj, xml, classes)
    return len(ids)


def _entries(data, key, json_file):
    entries = data.get(key)
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise DatasetError(f"{json_file}: '{key}' must be a list of objects, got {type(entries).__name__}; is this a "
                           "COCO instances file?")
    return entries


def _ids(entries, key, json_file, what):
    ids = [e.get(key) for e in entries]
    bad = next((i for i in ids if not isinstance(i, (int, str)) or isinstance(i, bool)), False)
    if bad is not False:
        raise DatasetError(f"{json_file}: {what} id {bad!r} must be an integer or a string; fix the file")
    if len(set(ids)) != len(ids):
        twice = next(i for i, n in Counter(ids).items() if n > 1)
        raise DatasetError(f"{json_file}: {what} id {twice!r} appears more than once; ids must be unique")
    return set(ids)


def _check_annotation(ann, json_file, image_ids, category_ids):
    where = f"{json_file}: annotation {ann.get('id')!r}"
    if ann.get("image_id") not in image_ids:
        raise DatasetError(f"{where} names image_id {ann.get('image_id')!r}, which is not in 'images'; fix the file")
    if ann.get("category_id") not in category_ids:
        raise DatasetError(f"{where} names category_id {ann.get('category_id')!r}, which is not in 'categories' "
                           f"(ids {sorted(category_ids, key=str)[:10]}); fix the file")
    box = ann.get("bbox")
    if not isinstance(box, list) or len(box) != 4 or not all(_is_number(v) for v in box):
        raise DatasetError(f"{where}: bbox must be [x, y, width, height] of finite numbers, got {box!r}; fix the file")
    if box[2] < 0 or box[3] < 0:
        raise DatasetError(f"{where}: bbox {box} has a negative width or height; fix the file")
    if ann.get("iscrowd", 0) not in (0, 1):
        raise DatasetError(f"{where}: iscrowd must be 0 or 1, got {ann.get('iscrowd')!r}; fix the file")
    if ann.get("ignore", 0) != 0:  # detectron2's load_coco_json asserts it away
        raise DatasetError(f"{where} has 'ignore' set, which detectron2 does not support; remove the annotation")


def check_coco_split(folder, split):
    """The number of images of COCO split `split` under `folder` (.../coco); DatasetError naming the file if
    annotations/instances_<split>.json is not complete JSON in COCO's layout, an image it lists is missing from
    <split>/, or an annotation names an unknown image or category, or has a box that is not four finite numbers
    with a width and height >= 0."""
    folder = Path(folder)
    json_file = folder / "annotations" / f"instances_{split}.json"
    text = _read_text(json_file, f"the annotations of COCO split {split}")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise DatasetError(f"{json_file} is not valid JSON ({error.msg} at line {error.lineno} column "
                           f"{error.colno}); is the file complete?") from None
    if not isinstance(data, dict):
        raise DatasetError(f"{json_file} holds a {type(data).__name__}, not a COCO instances object; is this the "
                           "right file?")
    images = _entries(data, "images", json_file)
    categories = _entries(data, "categories", json_file)
    annotations = _entries(data, "annotations", json_file)
    for key, entries in (("images", images), ("categories", categories)):
        if not entries:  # detectron2 takes min() of the category ids, and trains on no image
            raise DatasetError(f"{json_file} lists no {key}; a COCO instances file needs at least one (is this the "
                               "right file?)")
    image_ids = _ids(images, "id", json_file, "image")
    category_ids = _ids(categories, "id", json_file, "category")
    _ids(annotations, "id", json_file, "annotation")  # detectron2 asserts unique annotation ids
    image_dir = folder / split
    present = set(os.listdir(image_dir)) if image_dir.is_dir() else set()
    for image in images:
        name = image.get("file_name")
        if not isinstance(name, str) or not name or name.startswith("/") or ".." in Path(name).parts:
            raise DatasetError(f"{json_file}: image {image.get('id')!r} has file_name {name!r}; it must name a file "
                               f"inside {image_dir}")
        if name not in present and not (image_dir / name).is_file():
            raise DatasetError(f"{image_dir / name}: no such file, but {json_file} lists it (image "
                               f"{image.get('id')!r}); restore the image or remove it from the json")
        for key in ("width", "height"):
            if not isinstance(image.get(key), int) or isinstance(image.get(key), bool) or image[key] < 1:
                raise DatasetError(f"{json_file}: image {image.get('id')!r} has {key} {image.get(key)!r}; it must "
                                   "be a positive integer")
    for ann in annotations:
        _check_annotation(ann, json_file, image_ids, category_ids)
    return len(images)
