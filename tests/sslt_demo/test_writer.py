"""The generated demo data loads with the standard readers and evaluators, and is what it claims to be."""
import hashlib
import json
import xml.etree.ElementTree as ElementTree

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog
from detectron2.data.datasets import load_coco_json, load_voc_instances, register_coco_instances
from detectron2.data.datasets.pascal_voc import register_pascal_voc
from detectron2.evaluation import PascalVOCDetectionEvaluator
from detectron2.structures import BitMasks, Boxes, BoxMode, Instances
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from torchvision.datasets import ImageFolder

from sslt_core.errors import DatasetError
from sslt_demo import writer as demo_data
from sslt_demo.shapes import CLASSES, classification_image
from sslt_demo.writer import SIZES, make_demo_data
from transfer.detectron2_env import coco_evaluator

SMALL = SIZES["small"]


def test_classification_set_is_an_image_folder_with_every_category(demo_root):
    assert len(CLASSES) >= 10
    for split, per_class in (("train", SMALL.train_per_class), ("val", SMALL.val_per_class)):
        dataset = ImageFolder(str(demo_root / "imagenet" / split))
        assert dataset.classes == sorted(CLASSES)
        assert len(dataset) == per_class * len(CLASSES)
        assert np.bincount(dataset.targets).tolist() == [per_class] * len(CLASSES)
        image, _ = dataset[0]
        assert image.size == (SMALL.classification_size,) * 2


@pytest.mark.parametrize("split", ["trainval", "test"])
def test_voc2007_loads_with_detectron2_and_boxes_lie_inside_images(demo_root, split):
    voc = demo_root / "VOC2007"
    ids = (voc / "ImageSets" / "Main" / f"{split}.txt").read_text().split()
    records = load_voc_instances(str(voc), split, CLASSES)
    assert len(records) == len(ids) == getattr(SMALL, f"voc2007_{split}")
    assert sum(len(r["annotations"]) for r in records) > len(records)  # several objects per image
    for record in records:
        assert record["file_name"].endswith(f"JPEGImages/{record['image_id']}.jpg")
        for annotation in record["annotations"]:
            x0, y0, x1, y1 = annotation["bbox"]
            assert annotation["bbox_mode"] == BoxMode.XYXY_ABS
            assert 0 <= x0 < x1 <= record["width"] and 0 <= y0 < y1 <= record["height"]
            assert 0 <= annotation["category_id"] < len(CLASSES)
        tree = ElementTree.parse(voc / "Annotations" / f"{record['image_id']}.xml")
        assert {o.findtext("difficult") for o in tree.iter("object")} <= {"0", "1"}
        assert int(tree.findtext("size/width")) == record["width"]


def test_voc_evaluator_scores_the_ground_truth_as_perfect_on_every_class_present(demo_root):
    name = "demo_voc_2007_test_ground_truth"
    register_pascal_voc(name, str(demo_root / "VOC2007"), "test", 2007, CLASSES)
    evaluator = PascalVOCDetectionEvaluator(name)
    evaluator.reset()
    present = set()
    for record in DatasetCatalog.get(name):
        instances = Instances((record["height"], record["width"]))
        instances.pred_boxes = Boxes(torch.tensor([a["bbox"] for a in record["annotations"]], dtype=torch.float32))
        instances.scores = torch.ones(len(record["annotations"]))
        instances.pred_classes = torch.tensor([a["category_id"] for a in record["annotations"]])
        evaluator.process([{"image_id": record["image_id"]}], [{"instances": instances}])
        tree = ElementTree.parse(demo_root / "VOC2007" / "Annotations" / f"{record['image_id']}.xml")
        present |= {o.findtext("name") for o in tree.iter("object") if o.findtext("difficult") == "0"}
    result = evaluator.evaluate()["bbox"]
    # A class with no non-difficult object in the split scores 0 in VOC's mean; every other one 100.
    assert result["AP50"] == pytest.approx(100.0 * len(present) / len(CLASSES))
    assert result["AP75"] == pytest.approx(100.0 * len(present) / len(CLASSES))


def test_coco_set_loads_and_masks_agree_with_boxes_and_areas(demo_root):
    coco_root = demo_root / "coco"
    for split, count in (("train2017", SMALL.coco_train), ("val2017", SMALL.coco_val)):
        json_file = coco_root / "annotations" / f"instances_{split}.json"
        coco = COCO(str(json_file))
        assert len(coco.getImgIds()) == count
        assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == list(CLASSES)
        for annotation in coco.loadAnns(coco.getAnnIds()):
            image = coco.loadImgs(annotation["image_id"])[0]
            assert annotation["iscrowd"] == 0 and isinstance(annotation["segmentation"], list)
            mask = coco.annToMask(annotation)
            rows, cols = np.nonzero(mask)
            x, y, w, h = annotation["bbox"]
            assert (x, y, w, h) == (cols.min(), rows.min(), cols.max() - cols.min() + 1, rows.max() - rows.min() + 1)
            assert annotation["area"] == mask.sum() > 0
            assert x + w <= image["width"] and y + h <= image["height"]
        records = load_coco_json(str(json_file), str(coco_root / split))
        assert len(records) == count
        assert all((coco_root / split).joinpath(r["file_name"].split("/")[-1]).is_file() for r in records)


def test_coco_evaluator_scores_the_ground_truth_as_perfect(demo_root):
    name = "demo_coco_val_ground_truth"
    coco_root = demo_root / "coco"
    register_coco_instances(name, {}, str(coco_root / "annotations" / "instances_val2017.json"),
                            str(coco_root / "val2017"))
    evaluator = coco_evaluator(name)
    evaluator.reset()
    for record in DatasetCatalog.get(name):
        height, width = record["height"], record["width"]
        annotations = record["annotations"]
        instances = Instances((height, width))
        boxes = [BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYXY_ABS) for a in annotations]
        instances.pred_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32))
        instances.scores = torch.ones(len(annotations))
        instances.pred_classes = torch.tensor([a["category_id"] for a in annotations])
        masks = [mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(a["segmentation"], height, width)))
                 for a in annotations]
        instances.pred_masks = BitMasks(torch.tensor(np.stack(masks), dtype=torch.bool)).tensor
        evaluator.process([{"image_id": record["image_id"]}], [{"instances": instances}])
    results = evaluator.evaluate()
    assert results["bbox"]["AP"] == pytest.approx(100.0)
    assert results["segm"]["AP"] == pytest.approx(100.0)


def tree_digest(root):
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(root)).encode() + path.read_bytes())
    return digest.hexdigest()


def test_generation_is_deterministic_for_a_seed(demo_root, tmp_path):
    assert tree_digest(make_demo_data(tmp_path / "again", seed=0, size_name="small") and tmp_path / "again") == \
        tree_digest(demo_root)
    assert tree_digest(make_demo_data(tmp_path / "other", seed=1, size_name="small") and tmp_path / "other") != \
        tree_digest(demo_root)


def test_a_second_run_reuses_the_set_and_other_settings_are_refused(tmp_path):
    out = tmp_path / "demo"
    make_demo_data(out, seed=0, size_name="small")
    stamp = (out / "MANIFEST.json").stat().st_mtime_ns
    make_demo_data(out, seed=0, size_name="small")
    assert (out / "MANIFEST.json").stat().st_mtime_ns == stamp
    with pytest.raises(DatasetError, match="already exists.*--force"):
        make_demo_data(out, seed=3, size_name="small")
    make_demo_data(out, seed=3, size_name="small", force=True)
    assert '"seed": 3' in (out / "MANIFEST.json").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".demo.lock", "demo"]  # the generator's lock file


def test_an_interrupted_generation_leaves_no_half_set(tmp_path, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(demo_data, "write_coco", interrupted)
    with pytest.raises(KeyboardInterrupt):
        make_demo_data(tmp_path / "demo", seed=0, size_name="small")
    assert [p.name for p in tmp_path.iterdir()] == [".demo.lock"]  # no half set, no partial folder


def test_category_is_not_readable_from_mean_colour():
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score

    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(len(CLASSES)), 60)
    features = np.stack([np.asarray(classification_image(rng, int(c), 32), float).mean((0, 1)) for c in labels])
    accuracy = cross_val_score(LogisticRegression(max_iter=2000), features, labels, cv=5).mean()
    assert accuracy < 0.2  # chance is 0.1


@pytest.mark.slow
def test_a_trained_encoder_clearly_beats_a_random_one_on_the_classification_set():
    """Shape must be learnt: kNN on random-init ResNet-18 features stays near chance, a briefly trained one not."""
    import torchvision

    torch.manual_seed(0)
    rng = np.random.default_rng(0)

    def images(per_class):
        labels = np.repeat(np.arange(len(CLASSES)), per_class)
        pixels = np.stack([np.asarray(classification_image(rng, int(c), 48)) for c in labels])
        return (torch.tensor(pixels).permute(0, 3, 1, 2).float() / 255 - 0.45) / 0.25, torch.tensor(labels)

    train_x, train_y = images(200)
    test_x, test_y = images(40)

    def knn_accuracy(encoder, k=20, temperature=0.07):  # the weighted kNN of InstDisc/DINO, written plainly
        encoder.eval()
        with torch.no_grad():
            bank = torch.nn.functional.normalize(encoder(train_x), dim=1)
            queries = torch.nn.functional.normalize(encoder(test_x), dim=1)
        similarity, index = (queries @ bank.T).topk(k, dim=1)
        votes = torch.zeros(len(queries), len(CLASSES))
        votes.scatter_add_(1, train_y[index], (similarity / temperature).exp())
        return (votes.argmax(1) == test_y).float().mean().item()

    model = torchvision.models.resnet18(num_classes=len(CLASSES))
    head, model.fc = model.fc, torch.nn.Identity()
    random_accuracy = knn_accuracy(model)
    model.fc = head
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(10):
        model.train()
        for batch in torch.randperm(len(train_x)).split(64):
            loss = torch.nn.functional.cross_entropy(model(train_x[batch]), train_y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.fc = torch.nn.Identity()
    trained_accuracy = knn_accuracy(model)
    assert random_accuracy < 0.2  # chance is 0.1
    assert trained_accuracy > random_accuracy + 0.1, (random_accuracy, trained_accuracy)


def test_a_demo_set_from_an_older_generator_is_replaced(tmp_path):
    out = tmp_path / "demo"
    make_demo_data(out, seed=0, size_name="small")
    manifest = json.loads((out / "MANIFEST.json").read_text())
    (out / "MANIFEST.json").write_text(json.dumps({**manifest, "generator_version": 0}))
    assert make_demo_data(out, seed=0, size_name="small")["generator_version"] == demo_data.GENERATOR_VERSION
