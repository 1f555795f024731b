"""The detectron2 install route: a compiled build is kept, otherwise FAIR's Python code with the stand-in _C."""
import base64
import hashlib
import importlib.util
import sys
import zipfile

import pytest
import torch

from tests.conftest import REPO, run_tool
from transfer.detectron2_env import coco_evaluator, has_compiled_ops

INSTALLER = REPO / "tools" / "install_detectron2.py"


def load_installer():
    spec = importlib.util.spec_from_file_location("install_detectron2", INSTALLER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_compiled_detectron2_is_kept_untouched(tmp_path):
    package = tmp_path / "detectron2"
    package.mkdir()
    (package / "__init__.py").write_text("")
    compiled = package / f"_C.cpython-{sys.version_info.major}{sys.version_info.minor}-x86_64-linux-gnu.so"
    compiled.write_bytes(b"\x7fELF")
    result = run_tool(INSTALLER, env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    assert f"detectron2: compiled ({package / '__init__.py'})" in result.stdout
    assert "pip" not in result.stdout + result.stderr  # nothing was downloaded or installed
    assert compiled.read_bytes() == b"\x7fELF"


def test_rebuilt_wheel_drops_the_compiled_extension_and_has_a_valid_record(tmp_path, monkeypatch):
    installer = load_installer()
    source = tmp_path / "sal_detectron2-0.7.2-cp310-none-any.whl"
    with zipfile.ZipFile(source, "w") as wheel:
        wheel.writestr("detectron2/__init__.py", "__version__ = '0.7.2'\n")
        wheel.writestr("detectron2/_C.cpython-310-x86_64-linux-gnu.so", b"\x7fELF")
        wheel.writestr("sal_detectron2-0.7.2.dist-info/WHEEL", "Wheel-Version: 1.0\nTag: cp310-cp310-linux_x86_64\n")
        wheel.writestr("sal_detectron2-0.7.2.dist-info/METADATA", "Name: sal-detectron2\nVersion: 0.7.2\n")
        wheel.writestr("sal_detectron2-0.7.2.dist-info/RECORD", "stale\n")
    monkeypatch.setattr(installer, "WHEEL_SHA256", hashlib.sha256(source.read_bytes()).hexdigest())
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    rebuilt = installer.rebuild_as_pure_python(source, out_dir)

    assert rebuilt.name == "sal_detectron2-0.7.2-py3-none-any.whl"
    with zipfile.ZipFile(rebuilt) as wheel:
        names = set(wheel.namelist())
        assert not any(n.endswith(".so") for n in names)
        assert wheel.read("detectron2/_C.py") == (REPO / "tools" / "detectron2_stand_in" / "_C.py").read_bytes()
        assert "Tag: py3-none-any" in wheel.read("sal_detectron2-0.7.2.dist-info/WHEEL").decode()
        record = wheel.read("sal_detectron2-0.7.2.dist-info/RECORD").decode().splitlines()
        assert {line.split(",")[0] for line in record} == names
        for line in record:
            name, digest, size = line.split(",")
            if name.endswith("RECORD"):
                continue
            data = wheel.read(name)
            expected = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            assert digest == f"sha256={expected}" and int(size) == len(data)


def test_a_wheel_with_the_wrong_hash_is_refused(tmp_path):
    installer = load_installer()
    bad = tmp_path / "sal_detectron2-0.7.2-cp310-none-any.whl"
    bad.write_bytes(b"not the wheel")
    with pytest.raises(SystemExit, match="sha256"):
        installer.rebuild_as_pure_python(bad, tmp_path)


def test_ops_needing_compiled_code_name_the_op_and_the_fix():
    from detectron2.layers import nms_rotated

    boxes = torch.tensor([[10.0, 10, 8, 4, 30], [10.0, 10, 8, 4, 35]])
    scores = torch.tensor([0.9, 0.8])
    if has_compiled_ops():
        assert nms_rotated(boxes, scores, 0.5).tolist() == [0]
        return
    with pytest.raises(RuntimeError, match="detectron2 op 'nms_rotated' needs the compiled detectron2._C.*build "
                                           "detectron2 from source"):
        nms_rotated(boxes, scores, 0.5)
    from detectron2 import _C
    with pytest.raises(RuntimeError, match="'deform_conv_forward'"):
        _C.deform_conv_forward  # noqa: B018 (the attribute access is what raises)


def test_compiled_ops_are_detected_as_the_installer_sees_them(demo_root):
    """Two views of one fact: the installer looks at the _C file on disk, detectron2_env imports it. The COCO
    evaluator's C++ COCOeval is used only with a compiled build (else pycocotools')."""
    from detectron2.data.datasets import register_coco_instances

    on_disk = load_installer().installed_detectron2()
    assert on_disk in ("compiled", "stand-in", "python-only")
    assert has_compiled_ops() == (on_disk == "compiled")
    name = "demo_coco_val_evaluator_choice"
    coco = demo_root / "coco"
    register_coco_instances(name, {}, str(coco / "annotations" / "instances_val2017.json"), str(coco / "val2017"))
    assert coco_evaluator(name)._use_fast_impl is (on_disk == "compiled")
