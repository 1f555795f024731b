"""Loading never runs code from a checkpoint unless the user says they trust it, through every entry point:
the converter, kNN, linear probe, detection, the pipeline's external checkpoints and a pretraining --resume over a
planted checkpoint. Every published layout still converts, and our export needs no pickle."""

import pickle

import numpy as np
import pytest
import torch
import yaml

from sslt_core.checkpoints import read_encoder
from sslt_core.errors import CheckpointError
from sslt_core.safe_load import load_file
from tests.conftest import REPO, run_tool
from tests.sslt_core import hostile
from tests.sslt_core.layouts import LAYOUTS, make_layout, random_resnet


@pytest.fixture
def marker(tmp_path):
    return tmp_path / "PAYLOAD_RAN"


def test_a_malicious_torch_checkpoint_is_refused_naming_the_type_and_the_flag(tmp_path, marker):
    path = hostile.malicious_pth(tmp_path / "evil.pth", marker)
    with pytest.raises(CheckpointError, match=r"holds a posix\.system object.*pass --trust-checkpoint"):
        load_file(path)
    assert not marker.exists()


def test_a_malicious_detectron2_pickle_is_refused(tmp_path, marker):
    path = hostile.malicious_pkl(tmp_path / "evil.pkl", marker)
    with pytest.raises(CheckpointError, match=r"holds a posix\.system object.*--trust-checkpoint"):
        load_file(path)
    assert not marker.exists()


def test_trust_is_the_opt_in_for_a_full_unpickle(tmp_path, marker):
    """With trust=True Python's pickle runs in full: the payload runs, as the flag's help says it can."""
    load_file(hostile.malicious_pth(tmp_path / "evil.pth", marker), trust=True)
    assert marker.exists()


def test_argparse_namespace_and_numpy_arrays_are_admitted(tmp_path):
    encoder = read_encoder(hostile.dino_with_args(tmp_path / "dino.pth"))
    assert encoder.source == "dino"


def test_other_types_are_refused_unless_trusted(tmp_path):
    path = hostile.lightning_like(tmp_path / "solo.ckpt")
    with pytest.raises(CheckpointError, match=r"holds a tests\.sslt_core\.hostile\.AttributeDict object"):
        read_encoder(path)
    assert read_encoder(path, trust=True).source == "solo"


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_every_published_layout_loads_weights_only(layout, tmp_path):
    path = tmp_path / "checkpoint.pth"
    torch.save(make_layout(layout, random_resnet(seed=0), random_resnet(seed=1)), path)
    assert read_encoder(path).source == LAYOUTS[layout]


def test_a_safetensors_file_reads_as_tensors(tmp_path):
    from safetensors.torch import save_file

    save_file(random_resnet(), tmp_path / "resnet50.safetensors")
    encoder = read_encoder(tmp_path / "resnet50.safetensors")
    assert encoder.source == "torchvision" and len(encoder.state_dict) > 300


def written(path, data):
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("make, message", [
    (lambda d: d / "folder", "is a folder, not a checkpoint file"),
    (lambda d: d / "missing.pth", "no such file"),
    (lambda d: written(d / "empty.pth", b""), "is empty"),
    (lambda d: written(d / "text.pth", b"hello\n"), "not a PyTorch checkpoint"),
    (lambda d: hostile.plain_pickle(d / "plain.pth"), "plain pickle, not a torch.save checkpoint"),
    (lambda d: written(d / "garbage.pkl", bytes(range(256)) * 4), "not a readable pickle"),
    (lambda d: hostile.truncated(d / "cut.pth", hostile.dino_with_args(d / "full.pth")), "not a PyTorch checkpoint"),
    (lambda d: written(d / "bad.safetensors", b"\x10\x00\x00\x00junk"), "not a readable safetensors file"),
])
def test_unreadable_files_fail_with_one_line(tmp_path, make, message):
    (tmp_path / "folder").mkdir()
    with pytest.raises(CheckpointError, match=message) as raised:
        load_file(make(tmp_path))
    assert "\n" not in str(raised.value)


def test_random_bytes_inside_the_weights_are_refused(tmp_path):
    with pytest.raises(CheckpointError, match="layer3.0.conv1.weight holds"):
        read_encoder(hostile.with_random_bytes(tmp_path / "corrupt.pth"))


def test_nan_weights_are_refused(tmp_path):
    state = random_resnet()
    state["bn1.running_var"][0] = float("nan")
    torch.save(state, tmp_path / "nan.pth")
    with pytest.raises(CheckpointError, match="bn1.running_var holds 1 NaN or infinite values"):
        read_encoder(tmp_path / "nan.pth")


# Every entry point that reads a checkpoint, with the malicious file: exit != 0, one line naming the flag, and the
# payload did not run.
ENTRY_POINTS = {
    "convert": lambda f, d: ["tools/convert_to_d2.py", f["pth"], "-o", d / "out.pkl"],
    "knn": lambda f, d: ["tools/eval_knn.py", "--weights", f["pth"], "--data", f["data"], "--image-size", "32",
                         "--cache-dir", d / "cache"],
    "linear": lambda f, d: ["tools/eval_linear.py", "--weights", f["pth"], "--data", f["data"], "--image-size",
                            "32", "--cached", "--cache-dir", d / "cache"],
    "detection": lambda f, d: ["tools/train_det.py", "--config", REPO / "configs" / "demo" / "voc07.yaml",
                               "--weights", f["pkl"], "--data-root", f["data"], "--output-dir", d / "det"],
}


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
def test_no_entry_point_runs_a_malicious_checkpoint(entry, tmp_path, marker, demo_root):
    files = {"pth": hostile.malicious_pth(tmp_path / "evil.pth", marker),
             "pkl": hostile.malicious_pkl(tmp_path / "evil.pkl", marker), "data": demo_root}
    result = run_tool(*ENTRY_POINTS[entry](files, tmp_path))
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0 and lines[-1].startswith("error: ") and "--trust-checkpoint" in lines[-1]
    assert not marker.exists()
    assert not (tmp_path / "out.pkl").exists() and not (tmp_path / "det").exists()


def test_the_pipeline_does_not_run_a_malicious_external_checkpoint(tmp_path, marker, demo_root):
    config = {"data_root": str(demo_root), "image_size": 32, "random_baseline": False,
              "external": {"evil": str(hostile.malicious_pth(tmp_path / "evil.pth", marker))},
              "linear": {"epochs": 1, "batch_size": 32}}
    (tmp_path / "pipeline.yaml").write_text(yaml.safe_dump(config))
    result = run_tool("tools/run_pipeline.py", "--config", tmp_path / "pipeline.yaml", "--output-dir", tmp_path / "o")
    last = result.stderr.strip().splitlines()[-1]
    assert result.returncode == 1 and "external 'evil'" in last and "external.evil.trust: true" in last, result.stderr
    assert not marker.exists()
    assert not (tmp_path / "o").exists()  # refused before any stage ran


def test_resume_over_a_planted_checkpoint_does_not_run_it(tmp_path, marker, demo_root):
    out = tmp_path / "out"
    out.mkdir()
    torch.save({"x": hostile.Payload(marker)}, out / "checkpoint.pth")
    result = run_tool("tools/pretrain_net.py", "--config", REPO / "configs" / "pretrain" / "simsiam_demo.yaml",
                      "--data", demo_root, "--output-dir", out, "--resume", "model.arch=resnet18",
                      "train.image_size=32", "train.batch_size=16", "train.epochs=1", "train.knn_every=0",
                      "train.diagnostics_every=0")
    assert result.returncode != 0 and "posix.system" in result.stderr.strip().splitlines()[-1]
    assert not marker.exists()


class _DirectArray:  # pickles as numpy.ndarray((500000000,), 'f4'): 2 GB asked for by a file of ~110 bytes
    def __reduce__(self):
        return (np.ndarray, ((500_000_000,), "f4"))


def test_a_pkl_asking_numpy_for_a_huge_array_directly_is_refused(tmp_path):
    path = tmp_path / "bomb.pkl"
    path.write_bytes(pickle.dumps({"model": {"stem.conv1.weight": _DirectArray()}, "__author__": "x"}, protocol=2))
    with pytest.raises(CheckpointError, match="asks for 2000000000 bytes"):
        load_file(path)
