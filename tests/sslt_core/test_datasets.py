"""Dataset roots resolve in one place; a wrong root or a corrupt image fails at once with a one-line error."""
import io
import os
import shutil

import pytest
from PIL import Image

from sslt_core.datasets import dataset_path, image_folder
from sslt_core.errors import CorruptImageError, DatasetError, DatasetLayoutError
from tests.conftest import REPO, run_tool


@pytest.mark.parametrize("name", ["imagenet", "voc2007", "voc2012", "coco"])
def test_every_dataset_resolves_under_the_demo_root(demo_root, name):
    path = dataset_path(name, demo_root)
    assert path.parent == demo_root
    assert dataset_path(name, path) == path  # a dataset's own folder works too


def test_the_flag_wins_over_the_environment_variable(demo_root, tmp_path, monkeypatch):
    monkeypatch.setenv("DETECTRON2_DATASETS", str(demo_root))
    assert dataset_path("coco") == demo_root / "coco"
    with pytest.raises(DatasetLayoutError):
        dataset_path("coco", tmp_path)


def test_a_wrong_root_names_what_was_expected_and_what_was_found(tmp_path):
    (tmp_path / "cats").mkdir()
    (tmp_path / "notes.txt").write_text("")
    with pytest.raises(DatasetLayoutError) as error:
        dataset_path("voc2007", tmp_path)
    message = str(error.value)
    assert "\n" not in message
    assert f"{tmp_path / 'VOC2007'} is not there" in message
    assert "expected ROOT/VOC2007/{JPEGImages/,Annotations/,ImageSets/Main/," in message
    assert "found in" in message and "cats/, notes.txt" in message
    assert "--data-root" in message and "DETECTRON2_DATASETS" in message


def test_a_half_present_layout_lists_what_is_missing(demo_root, tmp_path):
    shutil.copytree(demo_root / "VOC2007", tmp_path / "VOC2007")
    shutil.rmtree(tmp_path / "VOC2007" / "Annotations")
    (tmp_path / "VOC2007" / "ImageSets" / "Main" / "test.txt").unlink()
    with pytest.raises(DatasetLayoutError, match=r"is missing Annotations/, ImageSets/Main/test.txt;"):
        dataset_path("voc2007", tmp_path)


def test_check_datasets_tool_exits_nonzero_with_one_line_on_a_wrong_root(tmp_path):
    result = run_tool("tools/check_datasets.py", "coco", "--data-root", tmp_path)
    assert result.returncode != 0
    assert result.stderr.startswith("error: coco: ") and result.stderr.count("\n") == 1
    assert result.stdout == ""


def test_check_datasets_tool_reports_the_demo_root(demo_root):
    result = run_tool("tools/check_datasets.py", "--data-root", demo_root, "--verify-images")
    assert result.returncode == 0, result.stderr
    assert [line.split()[0] for line in result.stdout.splitlines()] == [  # every layout the demo writes
        "imagenet", "voc2007", "voc2012", "coco", "cifar10", "dtd", "flowers102"]


def truncated_jpeg():
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 10, 10)).save(buffer, "JPEG")
    return buffer.getvalue()[: len(buffer.getvalue()) // 3]


@pytest.mark.parametrize("content", [b"this is not an image", truncated_jpeg()], ids=["garbage", "truncated"])
def test_a_corrupt_image_raises_an_error_naming_the_file(demo_root, tmp_path, content):
    root = tmp_path / "datasets"
    shutil.copytree(demo_root / "imagenet", root / "imagenet")
    bad = root / "imagenet" / "val" / "star" / "star_00000.jpg"
    bad.write_bytes(content)
    dataset = image_folder("imagenet", "val", root)
    index = dataset.samples.index((str(bad), dataset.class_to_idx["star"]))
    with pytest.raises(CorruptImageError, match=rf"cannot decode image {bad} .*delete or re-download"):
        dataset[index]

    result = run_tool("tools/check_datasets.py", "imagenet", "--data-root", root, "--verify-images")
    assert result.returncode != 0 and f"cannot decode image {bad}" in result.stderr


def test_make_demo_data_tool_refuses_a_folder_holding_other_data(tmp_path):
    (tmp_path / "mine.txt").write_text("keep me")
    result = run_tool("tools/make_demo_data.py", "--out", tmp_path, "--size", "small")
    assert result.returncode != 0 and "--force" in result.stderr
    assert os.listdir(tmp_path) == ["mine.txt"]


def real_images(folder):
    """The image files under `folder` that are no links and lie under no link (what is really there)."""
    return sorted(os.path.join(d, f) for d, _, files in os.walk(folder) for f in files if f.endswith(".jpg"))


@pytest.mark.parametrize("target", ["..", ".", "../../train"], ids=["to-the-split", "to-itself", "to-the-split-2"])
def test_a_folder_link_that_loops_is_refused_by_every_reader_and_the_checker(demo_root, tmp_path, tool, target):
    root = tmp_path / "datasets"
    shutil.copytree(demo_root / "imagenet", root / "imagenet")
    link = root / "imagenet" / "train" / "circle" / "loop"
    link.symlink_to(target)  # os.walk(followlinks=True), as ImageFolder walks, reads the class again and again
    for split in ("val", "train"):
        if split == "val":  # the other split is unaffected
            assert len(image_folder("imagenet", "val", root)) == len(real_images(root / "imagenet" / "val"))
            continue
        with pytest.raises(DatasetError, match=f"{link} is a link to .*a folder that holds it.*remove that link"):
            image_folder("imagenet", split, root)
    for name, *args in (("check_datasets", "imagenet", "--data-root", root),
                        ("eval_knn", "--weights", "random", "--arch", "resnet18", "--data", root, "--image-size", 32,
                         "--workers", 0, "--cache-dir", tmp_path / "cache"),
                        ("pretrain_net", "--config", REPO / "configs/pretrain/simsiam_demo.yaml", "--data", root,
                         "--output-dir", tmp_path / "pretrain", "model.arch=resnet18")):
        code, out, err = tool(name, *args)
        assert code == 1 and err.strip().splitlines() == [err.strip()] and f"{link} is a link" in err, (name, err)


def test_a_linked_class_folder_and_a_linked_sub_folder_are_read_once_by_every_reader(demo_root, tmp_path, tool):
    root, elsewhere = tmp_path / "datasets", tmp_path / "elsewhere"
    shutil.copytree(demo_root / "imagenet", root / "imagenet")
    shutil.move(root / "imagenet" / "train" / "star", elsewhere / "star")  # a class folder kept elsewhere
    (root / "imagenet" / "train" / "star").symlink_to(elsewhere / "star")
    shutil.copytree(demo_root / "imagenet" / "val" / "heart", elsewhere / "more_hearts")  # and a linked sub-folder
    (root / "imagenet" / "train" / "heart" / "more").symlink_to(elsewhere / "more_hearts")
    from torchvision.datasets import ImageFolder

    reference = ImageFolder(str(root / "imagenet" / "train"))  # torchvision's own walk, with no loop to meet
    dataset = image_folder("imagenet", "train", root)
    expected = len(real_images(root / "imagenet" / "train")) + len(real_images(elsewhere))
    assert len(dataset) == len(reference) == expected and dataset.samples == reference.samples
    val = len(real_images(root / "imagenet" / "val"))
    code, out, _ = tool("check_datasets", "imagenet", "--data-root", root)
    assert code == 0 and f" {expected + val} images" in out
