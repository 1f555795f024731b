"""train_det, the pipeline's detection stages and check_datasets on hostile input (issue 26's N57-N88, issue 28's
disk-full checkpoint): exit status != 0 with one line `error: ...` naming the file and the problem, no traceback,
no payload run, nothing written (a resumed run's folder left as it was) and nothing outside the output folder
changed. One case a row; every row is refused before training, so none trains."""
import errno
import json
import os
import pickle
import shutil
import subprocess
import sys
from xml.etree import ElementTree

import numpy as np
import pytest
import torch
import yaml
from detectron2.config import get_cfg

from tests.conftest import REPO
from tests.sslt_core import hostile
from tests.sslt_core.layouts import random_resnet
from tests.tools.test_bad_inputs import DEMO_VOC, _fill, pipeline_config
from transfer.convert import to_detectron2
from transfer.detection_recipe import load_recipe
from transfer.detection_run import DetectionRun

DEMO_COCO = REPO / "configs" / "demo" / "coco_det.yaml"


def det(*extra, config=DEMO_VOC, data="{data}"):
    return ["train_det", "--config", str(config), "--weights", "random", "--data-root", data, "--output-dir",
            "{out}/det", *extra]


def _copy(source, target, layout):
    shutil.copytree(source / layout, target / layout)
    return target


def _voc(root, damage):
    """A copy of the demo VOC2007 whose first trainval image is damaged by `damage(xml_path, jpeg_path)`."""
    first = (root / "VOC2007" / "ImageSets" / "Main" / "trainval.txt").read_text().split()[0]
    damage(root / "VOC2007" / "Annotations" / f"{first}.xml", root / "VOC2007" / "JPEGImages" / f"{first}.jpg")
    return root


def _edit_xml(change):
    def damage(xml, jpeg):
        tree = ElementTree.parse(xml)
        change(tree.getroot())
        tree.write(xml)
    return damage


def _coco(root, change):
    """A copy of the demo COCO whose train2017 json is changed by `change(data, root)` (which may return text)."""
    path = root / "coco" / "annotations" / "instances_train2017.json"
    data = json.loads(path.read_text())
    text = change(data, root)
    path.write_text(text if isinstance(text, str) else json.dumps(data))
    return root


def _cut_in_half(data, root):
    text = json.dumps(data)
    return text[: len(text) // 2]


def _drop_image(data, root):
    (root / "coco" / "train2017" / data["images"][0]["file_name"]).unlink()


def _set_box(index, value):
    def change(data, root):
        data["annotations"][0]["bbox"][index] = value
    return change


@pytest.fixture(scope="module")
def files(tmp_path_factory, demo_root):
    d = tmp_path_factory.mktemp("hostile_det")
    marker = d / "PAYLOAD_RAN"
    f = {"data": demo_root, "marker": marker, "root": d}
    f["evil.pth"] = hostile.malicious_pth(d / "evil.pth", marker)
    f["evil.pkl"] = hostile.malicious_pkl(d / "evil.pkl", marker)
    # detectron2's proposal file format (data/build.py load_proposals_into_dataset) with a payload
    (d / "proposals.pkl").write_bytes(pickle.dumps({"ids": [], "boxes": [], "objectness_logits": [],
                                                    "payload": hostile.Payload(marker)}))
    f["proposals.pkl"] = d / "proposals.pkl"
    keys = ("MODEL:\n  LOAD_PROPOSALS: True\nDATASETS:\n  PROPOSAL_FILES_TRAIN: ('{p}',)\n"
            "  PROPOSAL_FILES_TEST: ('{p}',)\n").format(p=d / "proposals.pkl")
    (d / "proposals.yaml").write_text(f"_BASE_: {DEMO_VOC}\n{keys}")
    (d / "proposals_base.yaml").write_text(f"_BASE_: {DEMO_VOC}\n{keys}")
    (d / "child.yaml").write_text("_BASE_: proposals_base.yaml\nSOLVER:\n  MAX_ITER: 2\n")
    f["proposals.yaml"], f["child.yaml"] = d / "proposals.yaml", d / "child.yaml"
    checkpoint = d / "checkpoint.pth"
    torch.save({"model": {"w": torch.zeros(4096)}, "iteration": 99}, checkpoint)
    f["checkpoint.pth"] = checkpoint
    voc, coco = (lambda name: _copy(demo_root, d / name, "VOC2007")), (lambda name: _copy(demo_root, d / name, "coco"))
    f["voc_no_xmin"] = _voc(voc("voc_no_xmin"), _edit_xml(
        lambda root: root.find("object/bndbox").remove(root.find("object/bndbox/xmin"))))
    f["voc_empty_xml"] = _voc(voc("voc_empty_xml"), lambda xml, jpeg: xml.write_text(""))
    f["voc_broken_xml"] = _voc(voc("voc_broken_xml"), lambda xml, jpeg: xml.write_text("<annotation><size>"))
    f["voc_no_jpeg"] = _voc(voc("voc_no_jpeg"), lambda xml, jpeg: jpeg.unlink())
    f["voc_negative_width"] = _voc(voc("voc_negative_width"), _edit_xml(
        lambda root: setattr(root.find("object/bndbox/xmax"), "text", "-5")))
    f["voc_unknown_class"] = _voc(voc("voc_unknown_class"), _edit_xml(
        lambda root: setattr(root.find("object/name"), "text", "dog")))
    f["voc_extra_word"] = voc("voc_extra_word")
    listing = f["voc_extra_word"] / "VOC2007" / "ImageSets" / "Main" / "trainval.txt"
    first, *rest = listing.read_text().splitlines()
    listing.write_text("\n".join([f"{first} 1", *rest]) + "\n")  # a class list's line given as the image list's
    for name, edit in (("voc_blank_line", lambda ids: [ids[0], "", *ids[1:]]),
                       ("voc_repeated_id", lambda ids: [*ids, ids[0]]),
                       ("voc_bom", lambda ids: ["\ufeff" + ids[0], *ids[1:]])):
        f[name] = voc(name)
        listing = f[name] / "VOC2007" / "ImageSets" / "Main" / "trainval.txt"
        listing.write_text("\n".join(edit(listing.read_text().split())) + "\n")
    f["coco_cut"] = _coco(coco("coco_cut"), _cut_in_half)
    f["coco_no_image"] = _coco(coco("coco_no_image"), _drop_image)
    f["coco_unknown_category"] = _coco(coco("coco_unknown_category"),
                                       lambda data, root: data["annotations"][0].update(category_id=999))
    f["coco_negative_width"] = _coco(coco("coco_negative_width"), _set_box(2, -4.0))
    f["coco_negative_height"] = _coco(coco("coco_negative_height"), _set_box(3, -4.0))
    for name, base in (("home_base.yaml", "~/b.yaml"), ("url_base.yaml", "https://example.org/b.yaml")):
        (d / name).write_text(f'_BASE_: "{base}"\n')
        f[name] = d / name
    f["coco_no_categories"] = _coco(coco("coco_no_categories"), lambda data, root: data.update(categories=[],
                                                                                              annotations=[]))
    return f


# A started run of det() (config DEMO_VOC, no overrides, random weights, seed 0) in {out}/det, whose trial_0 holds
# what `plant(trial_folder, files)` puts there; the command resumes it.
def started(plant):
    def setup(out, files):
        folder = out / "det" / "trial_0"
        folder.mkdir(parents=True)
        (out / "det" / "run.json").write_text(json.dumps(DetectionRun(load_recipe(DEMO_VOC), "random", out / "det")
                                                         .identity()))
        plant(folder, files)
    return setup


def tag(name, make=None):
    """trial_0/last_checkpoint naming `name`; `make(path, files)` creates that file."""
    def plant(folder, files):
        (folder / "last_checkpoint").write_text(name)
        if make:
            make(folder / name, files)
    return started(plant)


def _truncated(path, files):
    hostile.truncated(path, files["checkpoint.pth"])


def _nan_checkpoint(path, files):  # found by the fresh-clone probe: it was resumed and scored AP 0 with exit 0
    torch.save({"model": {"backbone.w": torch.full((4,), float("nan"))}, "iteration": 1}, path)


PROPOSALS = "detectron2 unpickles proposal files"
# (tool and arguments, what the one line must say, a setup of the output folder or None)
CASES = {
    # code run from a file: detectron2 unpickles precomputed proposals (N57, N58, N79)
    "det/N57-proposals-as-overrides": (det("MODEL.LOAD_PROPOSALS", "True", "DATASETS.PROPOSAL_FILES_TRAIN",
                                           "('{proposals.pkl}',)"), PROPOSALS, None),
    "det/N57-proposal-files-alone": (det("DATASETS.PROPOSAL_FILES_TEST", "('{proposals.pkl}',)"), PROPOSALS, None),
    "det/N58-proposals-in-the-config": (det(config="{proposals.yaml}"), PROPOSALS, None),
    "det/N58-proposals-in-a-base": (det(config="{child.yaml}"), PROPOSALS, None),
    "pipeline/N79-proposals-in-opts": (pipeline_config(detection={"voc07": {"config": str(DEMO_VOC), "opts": [
        "MODEL.LOAD_PROPOSALS", "True", "DATASETS.PROPOSAL_FILES_TRAIN", "('{proposals.pkl}',)"]}}), PROPOSALS, None),
    # --resume follows trial_*/last_checkpoint only to a checkpoint of the trial's folder (N73, N74, N76, 28)
    "det/N73-last-checkpoint-outside": (det("--resume"), "not a checkpoint of this folder", tag("../../../evil.pth")),
    "det/N73-last-checkpoint-absolute": (det("--resume"), "not a checkpoint of this folder", tag("{evil.pth}")),
    "det/N74-last-checkpoint-planted-pkl": (det("--resume"), "not a checkpoint of this folder",
                                            tag("evil.pkl", lambda p, f: shutil.copy(f["evil.pkl"], p))),
    "det/N74-checkpoint-a-link-outside": (det("--resume"), "model_final.pth exists and is not a regular file",
                                          tag("model_final.pth", lambda p, f: p.symlink_to(f["evil.pth"]))),
    "det/N74-malicious-checkpoint-inside": (det("--resume"), "--trust-checkpoint",
                                            tag("model_final.pth", lambda p, f: shutil.copy(f["evil.pth"], p))),
    "det/N76-last-checkpoint-deleted": (det("--resume"), "model_0000099.pth: no such file",
                                        tag("model_0000099.pth")),
    "det/28-truncated-checkpoint": (det("--resume"), "model_final.pth is not a PyTorch checkpoint",
                                    tag("model_final.pth", _truncated)),
    "det/nan-checkpoint-on-resume": (det("--resume"), "model_final.pth: tensor backbone.w holds 4 NaN",
                                     tag("model_final.pth", _nan_checkpoint)),
    "det/last-checkpoint-a-link": (det("--resume"), "last_checkpoint exists and is not a regular file", started(
        lambda folder, f: (folder / "last_checkpoint").symlink_to(f["evil.pth"]))),
    "det/N75-result-not-json": (det("--resume"), "result.json is not a trial result", started(
        lambda folder, f: (folder / "result.json").write_text('{"seed": 0, "results": {"bbox": {"AP": 1'))),
    # config values that detectron2 fails on with a traceback (N61, N62)
    "det/N61-nested-steps": (det("SOLVER.STEPS", "((1, 2),)"), "SOLVER.STEPS must be an increasing list", None),
    "det/steps-decreasing": (det("SOLVER.STEPS", "(400, 300)"), "SOLVER.STEPS must be an increasing list", None),
    "det/N62-two-pixel-means": (det("MODEL.PIXEL_MEAN", "[103.5, 116.3]"), "MODEL.PIXEL_MEAN must be 3 numbers",
                                None),
    "det/base-from-home": (det(config="{home_base.yaml}"), "starts with ~ or is a URL", None),
    "det/base-a-url": (det(config="{url_base.yaml}"), "starts with ~ or is a URL", None),
    "det/28-no-training-set": (det("DATASETS.TRAIN", "()"), "DATASETS.TRAIN must be one or more dataset names",
                               None),
    "det/28-no-test-set": (det("DATASETS.TEST", "()"), "DATASETS.TEST must be one or more dataset names", None),
    "det/pixel-std-zero": (det("MODEL.PIXEL_STD", "[1.0, 0.0, 1.0]"), "MODEL.PIXEL_STD must be 3 numbers > 0", None),
    # damaged COCO annotations (N63-N67)
    "det/N63-coco-negative-width": (det(config=DEMO_COCO, data="{coco_negative_width}"),
                                    "has a negative width or height", None),
    "det/N64-coco-negative-height": (det(config=DEMO_COCO, data="{coco_negative_height}"),
                                     "has a negative width or height", None),
    "det/N65-coco-unknown-category": (det(config=DEMO_COCO, data="{coco_unknown_category}"),
                                      "names category_id 999, which is not in 'categories'", None),
    "det/28-coco-empty-class-list": (det(config=DEMO_COCO, data="{coco_no_categories}"), "lists no categories",
                                     None),
    "det/N66-coco-image-missing": (det(config=DEMO_COCO, data="{coco_no_image}"), "no such file, but", None),
    "det/N67-coco-json-cut-in-half": (det(config=DEMO_COCO, data="{coco_cut}"),
                                      "instances_train2017.json is not valid JSON", None),
    # damaged VOC annotations and images (N68-N72)
    "det/N68-voc-no-xmin": (det(data="{voc_no_xmin}"), "has no <xmin>", None),
    "det/N69-voc-empty-xml": (det(data="{voc_empty_xml}"), ".xml is not valid XML", None),
    "det/N72-voc-broken-xml": (det(data="{voc_broken_xml}"), ".xml is not valid XML", None),
    "det/N70-voc-jpeg-missing": (det(data="{voc_no_jpeg}"), ".jpg: no such file, but", None),
    "det/voc-negative-width": (det(data="{voc_negative_width}"), "a box of negative size", None),
    "det/voc-unknown-class": (det(data="{voc_unknown_class}"), "object class 'dog' is not one of", None),
    # the dataset checker runs the same checks (N87, N88)
    "check/N87-coco-json-cut-in-half": (["check_datasets", "coco", "--data-root", "{coco_cut}"],
                                        "instances_train2017.json is not valid JSON", None),
    "check/N88-voc-jpeg-missing": (["check_datasets", "voc2007", "--data-root", "{voc_no_jpeg}"],
                                   ".jpg: no such file, but", None),
    "check/coco-negative-width": (["check_datasets", "coco", "--data-root", "{coco_negative_width}"],
                                  "has a negative width or height", None),
    "check/voc-no-xmin": (["check_datasets", "voc2007", "--data-root", "{voc_no_xmin}"], "has no <xmin>", None),
    # an image list's line of two words is named as such, not as a missing image '1'
    "det/voc-list-extra-word": (det(data="{voc_extra_word}"), "trainval.txt line 1: ", None),
    "check/voc-list-extra-word": (["check_datasets", "voc2007", "--data-root", "{voc_extra_word}"],
                                  "is not one image id", None),
    "check/voc-list-blank-line": (["check_datasets", "voc2007", "--data-root", "{voc_blank_line}"],
                                  "trainval.txt line 2 is blank", None),
    "det/voc-list-blank-line": (det(data="{voc_blank_line}"), "trainval.txt line 2 is blank", None),
    "svm/voc-list-repeated-id": (["evaluate", "voc07_svm", "--weights", "random", "--data", "{voc_repeated_id}"],
                                 "is listed again (first at line 1)", None),
    "check/voc-list-bom": (["check_datasets", "voc2007", "--data-root", "{voc_bom}"], "byte-order mark", None),
    "svm/voc-list-extra-word": (["evaluate", "voc07_svm", "--weights", "random", "--data", "{voc_extra_word}"],
                                "trainval.txt line 1: ", None),
}


def _state(folder):
    """Every file and link under `folder` with its size and modification time (links as their target)."""
    return {str(p.relative_to(folder)): os.readlink(p) if p.is_symlink() else (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_symlink() or p.is_file()}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_detection_input_gives_one_line_and_changes_nothing(case, files, tool, tmp_path, monkeypatch):
    command, expected, setup = CASES[case]
    out, cwd = tmp_path / "out", tmp_path / "cwd"
    out.mkdir()
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    if isinstance(command, dict):  # a pipeline config
        (out / "pipeline.yaml").write_text(yaml.safe_dump(_fill(command, files, out)))
        command = ["run_pipeline", "--config", str(out / "pipeline.yaml"), "--output-dir", str(out / "p")]
    if setup:
        setup(out, files)
    before, outside = _state(out), {"hostile": _state(files["root"]), "demo": _state(files["data"])}
    code, _, stderr = tool(*_fill(command, files, out))
    assert not files["marker"].exists()
    hostile.assert_one_line_error(code, stderr, _fill(expected, files, out))
    assert {k: v for k, v in _state(out).items() if not k.endswith(".lock")} == before
    assert {"hostile": _state(files["root"]), "demo": _state(files["data"])} == outside
    assert not any(cwd.iterdir())


def test_the_damaged_copies_are_the_damage_named_and_the_demo_data_passes(files, tool):
    """The rows above fail for their damage, not for a broken copy: the undamaged demo passes both checks."""
    code, stdout, stderr = tool("check_datasets", "voc2007", "coco", "--data-root", files["data"])
    assert code == 0, stderr
    # counts from the files themselves: the image lists and the json's images
    voc = files["data"] / "VOC2007" / "ImageSets" / "Main"
    coco = json.loads((files["data"] / "coco" / "annotations" / "instances_val2017.json").read_text())
    assert f"trainval {len((voc / 'trainval.txt').read_text().split())}" in stdout
    assert f"val2017 {len(coco['images'])}" in stdout


def test_check_datasets_counts_the_linear_transfer_splits_from_their_files(files, tool):
    """CIFAR's images live in pickled batches and DTD's splits in label lists: the counts come from those files
    (read here with the standard library), not from a count of image files (which is 0 for CIFAR)."""
    code, stdout, stderr = tool("check_datasets", "cifar10", "dtd", "--data-root", files["data"], "--verify-images")
    assert code == 0, stderr
    cifar = files["data"] / "cifar-10-batches-py"
    train = sum(len(pickle.loads((cifar / f"data_batch_{i}").read_bytes(), encoding="bytes")[b"labels"])
                for i in range(1, 6))
    test = len(pickle.loads((cifar / "test_batch").read_bytes(), encoding="bytes")[b"labels"])
    assert f"{train + test} images, train {train}, test {test}, all decode" in stdout
    labels = files["data"] / "dtd" / "labels"
    dtd = {s: len((labels / f"{s}1.txt").read_text().split()) for s in ("train", "val", "test")}
    assert f"train {dtd['train']}, val {dtd['val']}, test {dtd['test']}, all decode" in stdout


class _FullDisk:
    """A file on a disk with `room` bytes left: a write past it fails as the OS fails it (ENOSPC)."""

    def __init__(self, path, mode, room):
        self.file, self.room = open(path, mode), room  # noqa: SIM115 (closed by __exit__)

    def write(self, data):
        if len(data) > self.room:
            self.file.write(bytes(data[: self.room]))
            self.room = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return self.file.write(data)

    def __getattr__(self, name):
        return getattr(self.file, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.file.close()


def test_N77_a_full_disk_while_saving_names_the_file_and_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    """Issue 26 N77 / issue 28: detectron2's checkpointer wrote model_final.pth in place (torch.save's
    'enforce fail' traceback, a truncated file that the next --resume read). The save names the file and the cause,
    and the last complete checkpoint stays what last_checkpoint names."""
    import transfer.detection as detection
    from sslt_core.errors import OutputError

    model = torch.nn.Linear(64, 64)
    checkpointer = detection.SafeCheckpointer(model, str(tmp_path))
    checkpointer.save("model_0000001")
    good = (tmp_path / "model_0000001.pth").read_bytes()
    monkeypatch.setattr(detection, "open", lambda path, mode: _FullDisk(path, mode, room=1000), raising=False)
    with pytest.raises(OutputError) as error:
        checkpointer.save("model_final")
    message = str(error.value)
    assert f"{tmp_path / 'model_final.pth'}" in message and os.strerror(errno.ENOSPC) in message
    assert "\n" not in message
    assert not (tmp_path / "model_final.pth").exists() and sorted(p.name for p in tmp_path.iterdir()) == [
        "last_checkpoint", "model_0000001.pth"]  # no half-written file left, not even the temporary one
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000001.pth"
    assert (tmp_path / "model_0000001.pth").read_bytes() == good
    monkeypatch.undo()
    # what torch itself reads back: the content of fvcore's save (model state and the extra data)
    checkpointer.save("model_final", iteration=7)
    loaded = torch.load(tmp_path / "model_final.pth", weights_only=True)
    assert loaded["iteration"] == 7 and torch.equal(loaded["model"]["weight"], model.weight.detach())
    assert (tmp_path / "last_checkpoint").read_text() == "model_final.pth"


def _mount_tmpfs(folder, size):
    if os.geteuid() != 0 or not shutil.which("mount"):
        return False
    folder.mkdir()
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                          capture_output=True).returncode == 0


@pytest.mark.slow
def test_N77_a_really_full_disk_during_detection_is_one_line_naming_the_checkpoint(demo_root, tmp_path):
    """The same on a real full disk (a 4 MiB tmpfs; needs root): train_det trains, and saving model_final.pth
    (hundreds of MB) fails with ENOSPC; the tool says so in one line, and leaves no model_final.pth."""
    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk, "4m"):
        pytest.skip("needs root to mount a tmpfs")
    try:
        result = subprocess.run(
            [sys.executable, "tools/train_det.py", "--config", str(DEMO_VOC), "--weights", "random", "--data-root",
             str(demo_root), "--output-dir", str(disk / "det"), "SOLVER.MAX_ITER", "1", "SOLVER.IMS_PER_BATCH", "2",
             "INPUT.MIN_SIZE_TRAIN", "(96,)", "INPUT.MIN_SIZE_TEST", "96"], cwd=REPO, capture_output=True, text=True)
        last = result.stderr.strip().splitlines()[-1]
        assert result.returncode == 1 and last.startswith("error: cannot save checkpoint"), result.stderr[-3000:]
        assert str(disk / "det" / "trial_0" / "model_final.pth") in last and "No space left on device" in last
        assert "Traceback" not in result.stderr + result.stdout
        assert not (disk / "det" / "trial_0" / "model_final.pth").exists()
        assert not list((disk / "det" / "trial_0").glob(".model_final*"))
    finally:
        subprocess.run(["umount", str(disk)], check=False)


def test_detection_trains_in_fp32_by_default_even_with_a_gpu(monkeypatch, tmp_path):
    """Issue 27 item 4: MoCo's detection protocol trains in fp32 (its configs leave detectron2's default,
    SOLVER.AMP.ENABLED False); AMP only when asked for, and then recorded in the trial's result.json."""
    import transfer.trials as trials

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    cfg, notes = load_recipe(DEMO_VOC).trial_config("", tmp_path / "trial_0", 0, 1)
    assert cfg.MODEL.DEVICE == "cuda"
    assert cfg.SOLVER.AMP.ENABLED is False and cfg.SOLVER.AMP.ENABLED == get_cfg().SOLVER.AMP.ENABLED
    assert any("SOLVER.AMP.ENABLED False" in note for note in notes)
    cfg, _ = load_recipe(DEMO_VOC, ["SOLVER.AMP.ENABLED", "True"]).trial_config("", tmp_path / "trial_0", 0, 1)
    assert cfg.SOLVER.AMP.ENABLED is True

    class Trainer:  # detectron2's training and evaluation stand aside: what is recorded is the question
        def __init__(self, cfg, trust=False):
            self._trainer = self

        def resume_or_load(self, resume):
            pass

        def train(self):
            pass

        model = None

        @staticmethod
        def test(cfg, model):
            return {"bbox": {"AP": 1.0, "AP50": 2.0, "AP75": float("nan")}}

    monkeypatch.setattr(trials, "_Trainer", Trainer)
    monkeypatch.setattr(trials, "register_detection_sets", lambda names, root: None)
    trials.run_trial(cfg, None)
    result = json.loads((tmp_path / "trial_0" / "result.json").read_text())
    assert result["precision"] == "amp" and result["device"] == "cuda"
    assert result["results"] == {"bbox": {"AP": 1.0, "AP50": 2.0, "AP75": None}}


def test_amp_on_a_cpu_is_one_line_before_anything_is_written(files, tool, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code, _, stderr = tool(*_fill(det("SOLVER.AMP.ENABLED", "True"), files, tmp_path))
    assert code == 1 and stderr.strip().splitlines()[-1].startswith("error: SOLVER.AMP.ENABLED True needs a GPU")
    assert not (tmp_path / "det").exists()


class _ZeroStrideArray:  # numpy.ndarray((10**9,), 'f4', 4 bytes, 0, (0,)): a 4 GB view of 4 bytes of the file
    def __reduce__(self):
        return (np.ndarray, ((10 ** 9,), "f4", b"\0\0\0\0", 0, (0,)))


def _weights(path, change):
    """A detectron2 .pkl of a random R50 (as convert_to_d2 writes it), changed by `change(checkpoint)`."""
    checkpoint = {"model": to_detectron2(random_resnet()), "__author__": "x", "matching_heuristics": True}
    change(checkpoint)
    path.write_bytes(pickle.dumps(checkpoint, protocol=3))
    return path


def _first(checkpoint, value):
    checkpoint["model"][sorted(checkpoint["model"])[0]] = value


@pytest.mark.parametrize("change, expected", [
    (lambda c: _first(c, _ZeroStrideArray()), "asks for 4000000000 bytes"),  # found by the re-check probe
    (lambda c: c["model"].update({k: np.full(1, 0.5, "f4") for k in c["model"]}),
     "265 tensors have another shape than detectron2's R50"),  # detectron2 would skip each with a warning
    (lambda c: c.pop("matching_heuristics"), "lacks 'matching_heuristics': True"),
])
def test_weights_detectron2_would_not_load_are_refused_before_training(change, expected, files, tool, tmp_path):
    weights = _weights(tmp_path / "w.pkl", change)
    command = [str(weights) if a == "random" else a for a in det()]
    code, _, stderr = tool(*_fill(command, files, tmp_path / "out"))
    lines = stderr.strip().splitlines()
    assert code != 0 and lines[-1].startswith("error: ") and expected in lines[-1], stderr[-1500:]
    assert "Traceback" not in stderr
    assert not (tmp_path / "out" / "det").exists() or not any((tmp_path / "out" / "det").rglob("*.json"))
