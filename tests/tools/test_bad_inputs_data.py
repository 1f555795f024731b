"""More hostile inputs (issue 28): damaged torch.save zips, folder links that loop inside a dataset, a linked
demo --out replaced with --force, a corrupt JPEG met by pretraining. As tests/tools/test_bad_inputs.py: one case
a row; one line `error: ...`, a non-zero exit, no traceback, nothing left in the output folder (its lock aside),
nothing outside it changed, no payload run."""
import shutil

import pytest
import torch
import torchvision

from tests.sslt_core import hostile
from tests.tools.test_bad_inputs import _fill, _outputs, files, knn, pretrain  # noqa: F401 (files: a fixture)


@pytest.fixture(scope="module")
def more(files, tmp_path_factory):  # noqa: F811 (the fixture imported above)
    d = tmp_path_factory.mktemp("hostile_data")
    f = dict(files)
    torch.save(torchvision.models.resnet18().state_dict(), d / "whole.pth")
    data = (d / "whole.pth").read_bytes()
    (d / "cut_zip.pth").write_bytes(data[: len(data) // 2])  # a download cut short
    damaged = bytearray(data)
    damaged[len(data) // 2: len(data) // 2 + 1000] = bytes(1000)  # zeros in the middle: torch.load alone loads it
    (d / "damaged_zip.pth").write_bytes(bytes(damaged))
    shutil.copytree(files["data"] / "imagenet", d / "loop" / "imagenet")
    (d / "loop" / "imagenet" / "train" / "circle" / "loop").symlink_to("..")
    (d / "elsewhere").mkdir()
    (d / "elsewhere" / "keep.txt").write_text("keep me")
    for name in ("cut_zip.pth", "damaged_zip.pth", "loop", "elsewhere"):
        f[name] = d / name
    return f


def link_out(out, f):
    (out / "linked").symlink_to(f["elsewhere"])


# (tool and arguments, what the one line must say, set-up in the output folder or None)
CASES = {
    "convert/truncated-zip": (["convert_to_d2", "{cut_zip.pth}", "-o", "{out}/x.pkl"],
                              "damaged or truncated zip archive", None),
    "convert/damaged-zip": (["convert_to_d2", "{damaged_zip.pth}", "-o", "{out}/x.pkl"], "fails its checksum", None),
    "knn/truncated-zip": (knn()[:1] + ["--weights", "{cut_zip.pth}"] + knn()[3:], "damaged or truncated zip", None),
    "check/loop-link": (["check_datasets", "imagenet", "--data-root", "{loop}"], "a folder that holds it", None),
    "knn/loop-link": (knn()[:3] + ["--data", "{loop}"] + knn()[5:], "a folder that holds it", None),
    "pretrain/loop-link": ([*pretrain()[:3], "--data", "{loop}", *pretrain()[5:]], "a folder that holds it", None),
    "pretrain/corrupt-jpeg": ([*pretrain()[:3], "--data", "{corrupt}", *pretrain()[5:]], "cannot decode image",
                              None),
    "demo/force-linked-out": (["make_demo_data", "--out", "{out}/linked", "--size", "small", "--force"],
                              "is a link", link_out),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_gives_one_line_and_no_partial_output(case, more, tool, tmp_path, monkeypatch):
    command, expected, setup = CASES[case]
    out, cwd = tmp_path / "out", tmp_path / "cwd"
    out.mkdir()
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    if setup:
        setup(out, more)
    before = _outputs(out)
    elsewhere = sorted(p.name for p in more["elsewhere"].iterdir())
    code, stdout, stderr = tool(*_fill(command, more, out))
    assert not more["marker"].exists()
    hostile.assert_one_line_error(code, stderr, expected)
    assert _outputs(out) == before
    assert not any(cwd.iterdir())
    assert sorted(p.name for p in more["elsewhere"].iterdir()) == elsewhere
    assert (out / "linked").is_symlink() or setup is None
