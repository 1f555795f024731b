"""What re-runs when an input changes: the real specs, hashes and skip logic of run_pipeline, with every stage's
work replaced by a recorder (seconds, not the minutes of training). Changing any part of a stage's spec re-runs
that stage and everything downstream of it, and nothing else, for every stage kind."""
import os
import shutil

import pytest
import torch
import torchvision
import yaml

import sslt_pipeline.models as models
import sslt_pipeline.pipeline as pipeline
from sslt_pipeline.stages import run_stages
from tests.conftest import REPO


def _record(name, metrics):
    return {"record": {"evaluation": name, "protocol": f"{name}/stub", "metrics": metrics,
                       "trials": [{"seed": 0, "metrics": metrics}], "scored_on": "val"}}


OUTPUTS = {"pretrain": {"encoder": "encoder.safetensors", "final": {}}, "convert": {"pkl": "model.pkl"},
           "knn": _record("knn", {"top1": 10.0, "top5": 50.0}), "linear": _record("linear", {"top1": 10.0}),
           "detection": _record("voc07", {"bbox/AP": 1.0, "bbox/AP50": 2.0, "bbox/AP75": 0.5})}
MODELS = ("simsiam", "random_init", "ext")
KINDS = {"simsiam": ("pretrain", "knn", "linear", "convert", "voc07"), "random_init": ("knn", "linear", "voc07"),
         "ext": ("knn", "linear", "convert", "voc07")}
ALL = {f"{model}/{kind}" for model, kinds in KINDS.items() for kind in kinds}


def of(kind=None, model=None):
    """The stage ids of a kind (or every kind) of a model (or every model)."""
    return {s for s in ALL if (kind is None or s.endswith(f"/{kind}")) and (model is None or s.startswith(model))}


@pytest.fixture
def setup(demo_root, tmp_path, monkeypatch):
    shutil.copytree(demo_root, tmp_path / "data")
    for name in ("Base-RCNN-C4-BN.yaml", "voc07.yaml", "demo/voc07.yaml"):  # the detection config's _BASE_ chain
        (tmp_path / name).parent.mkdir(exist_ok=True)
        shutil.copy(REPO / "configs" / name, tmp_path / name)
    shutil.copy(REPO / "configs/pretrain/simsiam_demo.yaml", tmp_path / "simsiam.yaml")
    torch.save(torchvision.models.resnet18().state_dict(), tmp_path / "ext.pth")
    config = {"data_root": str(tmp_path / "data"), "image_size": 32,
              "methods": {"simsiam": {"config": str(tmp_path / "simsiam.yaml"),
                                      "overrides": ["train.epochs=1", "train.batch_size=16", "train.knn_every=0"]}},
              "random_baseline": True, "external": {"ext": str(tmp_path / "ext.pth")},
              "knn": {"k": [5]}, "linear": {"epochs": 1, "batch_size": 32},
              "detection": {"voc07": {"config": str(tmp_path / "demo/voc07.yaml"), "opts": ["SOLVER.MAX_ITER", 2]}}}
    ran = []

    def recording_run_stages(stages, output_dir, **kwargs):  # the real run_stages, each stage's work recorded
        for stage in stages:
            stage.run = lambda folder, inputs, stage=stage: ran.append(stage.id) or dict(OUTPUTS[stage.kind])
        return run_stages(stages, output_dir, **kwargs)

    monkeypatch.setattr(pipeline, "run_stages", recording_run_stages)
    monkeypatch.setattr(pipeline, "write_report", lambda *args: None)  # plots: not what is tested here
    monkeypatch.setattr(models, "read_encoder", lambda *args, **kwargs: None)  # the up-front check of ext.pth

    def rerun(change=None):
        """Apply `change` to the config dict (or the files), run the pipeline, return the set of stages run."""
        if change:
            change(config)
        (tmp_path / "pipeline.yaml").write_text(yaml.safe_dump(config))
        ran.clear()
        assert pipeline.run_pipeline(tmp_path / "pipeline.yaml", tmp_path / "out", log=lambda line: None) == 0
        assert len(ran) == len(set(ran))
        return set(ran)

    return tmp_path, rerun


def append(path, text="\n# changed\n"):
    with open(path, "a") as file:
        file.write(text)


def rewrite_in_place(path, keep_mtime=False):
    """New bytes of the same size under the same name; a later mtime unless `keep_mtime`."""
    stat = os.stat(path)
    data = bytearray(path.read_bytes())
    if path.suffix == ".xml":  # still valid XML (the dataset checks read it): a newline between tags becomes a space
        data[data.index(b">\n") + 1] = ord(" ")
    else:
        data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns if keep_mtime else stat.st_mtime_ns + 10**9))
    assert os.stat(path).st_size == stat.st_size


def set_override(index, value):
    def change(config):
        config["methods"]["simsiam"]["overrides"][index] = value
    return change


def test_a_changed_spec_reruns_its_stage_and_what_is_downstream_and_nothing_else(setup):
    tmp, rerun = setup
    data = tmp / "data"
    assert rerun() == ALL
    assert rerun() == set()
    simsiam, ext = of(model="simsiam"), of(model="ext")
    evaluation = of("knn") | of("linear")
    cases = [  # (what changes, the stages that must run again)
        ("pretraining config text", lambda c: append(tmp / "simsiam.yaml"), simsiam),
        ("override 1", set_override(0, "train.epochs=2"), simsiam),
        ("override 2", set_override(1, "train.batch_size=32"), simsiam),
        ("override 3", set_override(2, "train.knn_every=2"), simsiam),
        ("an override added", lambda c: c["methods"]["simsiam"]["overrides"].append("model.proj_dim=64"), simsiam),
        ("kNN settings", lambda c: c["knn"].update(k=[7]), of("knn")),
        ("linear settings", lambda c: c["linear"].update(epochs=2), of("linear")),
        ("evaluation crop size", lambda c: c.update(image_size=48), evaluation),
        ("detection opts", lambda c: c["detection"]["voc07"]["opts"].extend(["SOLVER.BASE_LR", 0.01]), of("voc07")),
        ("detection trials", lambda c: c["detection"]["voc07"].update(trials=2), of("voc07")),
        ("detection config text", lambda c: append(tmp / "demo/voc07.yaml"), of("voc07")),
        ("its _BASE_", lambda c: append(tmp / "voc07.yaml"), of("voc07")),
        ("its _BASE_'s _BASE_", lambda c: append(tmp / "Base-RCNN-C4-BN.yaml"), of("voc07")),
        ("external checkpoint bytes", lambda c: torch.save(torchvision.models.resnet18().state_dict(),
                                                            tmp / "ext.pth"), ext),
        # the data fingerprint: every split a stage reads, images rewritten in place under the same names
        ("a val image rewritten (same size, later mtime)",
         lambda c: rewrite_in_place(data / "imagenet/val/star/star_00001.jpg"), evaluation | simsiam),
        ("a val image rewritten (same size, same mtime)",
         lambda c: rewrite_in_place(data / "imagenet/val/heart/heart_00002.jpg", keep_mtime=True),
         evaluation | simsiam),
        ("a train image rewritten", lambda c: rewrite_in_place(data / "imagenet/train/bolt/bolt_00003.jpg"),
         simsiam | evaluation),
        ("a val image removed", lambda c: (data / "imagenet/val/star/star_00000.jpg").unlink(),
         evaluation | simsiam),
        ("a VOC image rewritten", lambda c: rewrite_in_place(next((data / "VOC2007/JPEGImages").iterdir())),
         of("voc07")),
        ("a VOC annotation rewritten", lambda c: rewrite_in_place(next((data / "VOC2007/Annotations").iterdir())),
         of("voc07")),
        ("a COCO image, which no stage reads", lambda c: rewrite_in_place(next((data / "coco/val2017").iterdir())),
         set()),
        ("override 3 back: the kNN monitor off", set_override(2, "train.knn_every=0"), simsiam),
        ("a val image, with the monitor off", lambda c: rewrite_in_place(data / "imagenet/val/star/star_00002.jpg"),
         evaluation),
    ]
    for what, change, expected in cases:
        assert rerun(change) == expected, what
