"""A run killed at any point of an epoch's end (during the kNN monitor, between the epoch's summary line and its
checkpoint, while the checkpoint is written) resumes to the uninterrupted run's metrics.jsonl, line for line.

The kill is injected where it should happen: a wrapped knn_monitor or checkpoint writer that sends the process
SIGKILL (in a subprocess: no finally block, no flush, the lock released by the kernel), or, in the fast variant,
raises an exception nothing catches."""
import json
import shutil
import subprocess
import sys

import pytest

import pretrain.train
from pretrain.train import train
from tests.conftest import REPO
from tests.pretrain.tiny import tiny_config

# 2 images per class: 20 train images, 1 step of 16 per epoch (each step ends an epoch), 2 epochs
EPOCH_STEPS, EPOCHS = 1, 2


@pytest.fixture(scope="module")
def small_data(demo_root, tmp_path_factory):
    root = tmp_path_factory.mktemp("kill") / "data"
    for split, per_class in (("train", 2), ("val", 1)):
        for folder in sorted((demo_root / "imagenet" / split).iterdir()):
            (root / "imagenet" / split / folder.name).mkdir(parents=True)
            for image in sorted(folder.iterdir())[:per_class]:
                shutil.copy(image, root / "imagenet" / split / folder.name / image.name)
    return root


def config(data, checkpoint_every):
    return tiny_config("simsiam", data, extra=[f"train.epochs={EPOCHS}", "train.knn_every=1",
                                               f"train.checkpoint_every={checkpoint_every}"])


@pytest.fixture(scope="module")
def straight(small_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("straight")
    train(config(small_data, EPOCH_STEPS), out, progress=False)
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines if "knn_top1" in line] == list(range(1, EPOCHS + 1))
    return lines


class Killed(BaseException):
    """Stands for a kill in the fast variant: nothing in the run catches it."""


def test_a_run_stopped_during_the_last_epochs_knn_monitor_resumes_to_the_same_record(small_data, straight, tmp_path,
                                                                                       monkeypatch):
    real, calls = pretrain.train.knn_monitor, []

    def monitor(*args, **kwargs):
        calls.append(1)
        if len(calls) == EPOCHS:  # the last epoch's monitor, right after its last step (on the epoch boundary)
            raise Killed
        return real(*args, **kwargs)

    monkeypatch.setattr(pretrain.train, "knn_monitor", monitor)
    with pytest.raises(Killed):
        train(config(small_data, EPOCH_STEPS), tmp_path, progress=False)
    monkeypatch.setattr(pretrain.train, "knn_monitor", real)
    train(config(small_data, EPOCH_STEPS), tmp_path, resume=True, progress=False)
    assert (tmp_path / "metrics.jsonl").read_text().splitlines() == straight


# In the child: run the config, and SIGKILL itself at the chosen point of the last epoch's end.
CHILD = """
import io, os, signal, sys
import torch
import pretrain.train as T
from sslt_core.atomic import atomic_path
from tests.pretrain.test_resume_kills import EPOCH_STEPS, EPOCHS, config
data, out, point, every = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
kill = lambda: os.kill(os.getpid(), signal.SIGKILL)
monitor, save, calls = T.knn_monitor, T._save, []

def knn_monitor(*args, **kwargs):
    calls.append(1)
    if point == "monitor" and len(calls) == EPOCHS:
        kill()
    return monitor(*args, **kwargs)

def _save(path, obj):
    last_epoch_end = len(calls) == EPOCHS and obj["step"] == EPOCHS * EPOCH_STEPS  # after the last monitor
    if point == "before-checkpoint" and last_epoch_end:
        kill()
    if point == "checkpoint-write" and last_epoch_end:
        buffer = io.BytesIO()
        torch.save(obj, buffer)
        with atomic_path(path) as tmp, open(tmp, "wb") as file:  # half of it on disk, then killed
            file.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
            file.flush()
            kill()
    return save(path, obj)

T.knn_monitor, T._save = knn_monitor, _save
T.train(config(data, every), out, progress=False)
"""


@pytest.mark.slow
@pytest.mark.parametrize("checkpoint_every", [1, 2], ids=["checkpoints-each-epoch", "checkpoints-every-2-epochs"])
@pytest.mark.parametrize("point", ["monitor", "before-checkpoint", "checkpoint-write"])
def test_a_run_killed_at_an_epochs_end_resumes_to_the_same_record(small_data, straight, tmp_path, point,
                                                                  checkpoint_every):
    killed = subprocess.run([sys.executable, "-c", CHILD, small_data, tmp_path, point, str(checkpoint_every)],
                            cwd=REPO, capture_output=True, text=True)
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert not (tmp_path / "encoder.safetensors").exists()  # killed before the end
    train(config(small_data, checkpoint_every), tmp_path, resume=True, progress=False)
    assert (tmp_path / "metrics.jsonl").read_text().splitlines() == straight
    assert not list(tmp_path.glob(".*.tmp-*"))  # the killed write's temporary file removed by the next run
