"""detectron2's own Faster R-CNN R50-C4 and Mask R-CNN R50-FPN train and infer on CPU, on the demo data."""
import math

import pytest
import torch
from detectron2 import model_zoo
from detectron2.config import get_cfg
from detectron2.data import DatasetMapper
from detectron2.data.datasets import load_coco_json, load_voc_instances
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage

from sslt_demo.shapes import CLASSES

MODELS = {
    "faster_rcnn_R_50_C4": ("COCO-Detection/faster_rcnn_R_50_C4_1x.yaml", "voc"),
    "mask_rcnn_R_50_FPN": ("COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.yaml", "coco"),
}


def small_cpu_config(zoo_config):
    cfg = get_cfg()
    cfg.merge_from_file(model_zoo.get_config_file(zoo_config))
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.WEIGHTS = ""
    # torchvision-style input, as for converted self-supervised weights (MoCo's detection configs)
    cfg.INPUT.FORMAT = "RGB"
    cfg.MODEL.PIXEL_MEAN, cfg.MODEL.PIXEL_STD = [123.675, 116.28, 103.53], [58.395, 57.12, 57.375]
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = len(CLASSES)
    cfg.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE = 64
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = 0.0  # so that a random model still returns detections
    cfg.MODEL.RPN.POST_NMS_TOPK_TRAIN = cfg.MODEL.RPN.POST_NMS_TOPK_TEST = 100
    cfg.INPUT.MIN_SIZE_TRAIN, cfg.INPUT.MAX_SIZE_TRAIN = (96,), 160
    cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST = 96, 160
    return cfg


def demo_records(demo_root, kind, split):
    if kind == "voc":
        return load_voc_instances(str(demo_root / "VOC2007"), split, CLASSES)
    coco = demo_root / "coco"
    return load_coco_json(str(coco / "annotations" / f"instances_{split}2017.json"), str(coco / f"{split}2017"))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_detectron2_model_trains_a_step_and_infers_on_cpu(name, demo_root):
    zoo_config, kind = MODELS[name]
    cfg = small_cpu_config(zoo_config)
    torch.manual_seed(0)
    model = build_model(cfg)
    train_split, test_split = ("trainval", "test") if kind == "voc" else ("train", "val")
    batch = [DatasetMapper(cfg, is_train=True)(r) for r in demo_records(demo_root, kind, train_split)[:2]]

    model.train()
    # the first step of detectron2's schedule: base lr 0.02 x warm-up factor 0.001
    optimizer = torch.optim.SGD(model.parameters(), lr=0.02 * 0.001, momentum=0.9)
    watched = model.roi_heads.box_predictor.cls_score.weight
    before = watched.detach().clone()
    with EventStorage():
        losses = model(batch)
    expected = {"loss_cls", "loss_box_reg", "loss_rpn_cls", "loss_rpn_loc"}
    expected |= {"loss_mask"} if kind == "coco" else set()
    assert set(losses) == expected
    assert all(math.isfinite(v.item()) for v in losses.values()), losses
    sum(losses.values()).backward()
    optimizer.step()
    assert not torch.equal(before, watched.detach())

    model.eval()
    record = demo_records(demo_root, kind, test_split)[0]
    with torch.no_grad():
        (output,) = model([DatasetMapper(cfg, is_train=False)(record)])
    instances = output["instances"]
    assert instances.image_size == (record["height"], record["width"])
    assert len(instances) > 0, losses
    fields = {"pred_boxes", "scores", "pred_classes"} | ({"pred_masks"} if kind == "coco" else set())
    assert fields <= set(instances.get_fields())
    assert int(instances.pred_classes.max()) < len(CLASSES)
