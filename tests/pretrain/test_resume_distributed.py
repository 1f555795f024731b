"""Exact resume and the NaN guard under 2 processes (torchrun, gloo, CPU), with the queues in use: every rank's
own state (RNG, SwAV's queue) is saved in the checkpoint and restored on its rank."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from pretrain.methods import METHODS
from pretrain.train import TrainingDiverged
from tests.conftest import REPO
from tests.pretrain.tiny import QUEUE_IN_USE, demo_preset, tiny_config

WORLD = 2


def torchrun(method, data, output_dir, *extra):
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={WORLD}",
               "tools/pretrain_net.py", "--config", str(demo_preset(method)), "--data", str(data), "--output-dir",
               str(output_dir), "model.arch=resnet18", "train.image_size=32", "train.batch_size=16",
               "train.epochs=3", "train.workers=0", "train.knn_every=0", "train.log_every=1",
               "train.checkpoint_every=2", *QUEUE_IN_USE.get(method, ()), *extra]
    return command


def same(a, b):
    """Equal to the bit: tensors, numpy arrays (numpy's RNG state), containers, plain values."""
    if torch.is_tensor(a):
        return torch.is_tensor(b) and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and np.array_equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


def metrics(output_dir):
    return [json.loads(line) for line in (output_dir / "metrics.jsonl").read_text().splitlines()]


# About 50 s each on 2 cores: the methods with per-rank or shared queues run by default, the others in the slow suite.
@pytest.mark.parametrize("method", [m if m in QUEUE_IN_USE else pytest.param(m, marks=pytest.mark.slow)
                                    for m in sorted(METHODS)])
def test_a_killed_two_process_run_resumes_to_the_uninterrupted_losses(method, demo_root, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    straight = subprocess.run(torchrun(method, demo_root, tmp_path / "straight"), cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=600)
    assert straight.returncode == 0, straight.stderr[-3000:]

    killed = subprocess.Popen(torchrun(method, demo_root, tmp_path / "killed"), cwd=REPO, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    checkpoint = tmp_path / "killed" / "checkpoint.pth"
    deadline = time.time() + 300
    while not checkpoint.exists() and killed.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    # Every process of the run, at whatever point it has reached: torchrun starts its workers in sessions of their
    # own, so they are found by their command line (until they are gone, their lock holds the folder, rightly).
    os.killpg(killed.pid, signal.SIGKILL)
    pattern = str(tmp_path / "killed")
    while subprocess.run(["pkill", "-9", "-f", pattern]).returncode == 0:
        time.sleep(0.1)
    assert killed.wait() != 0
    assert checkpoint.exists() and not (tmp_path / "killed" / "encoder.safetensors").exists()
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    assert 2 <= state["step"] < 15 and len(state["ranks"]) == WORLD

    resumed = subprocess.run(torchrun(method, demo_root, tmp_path / "killed", "--resume"), cwd=REPO, env=env,
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, [line for line in resumed.stderr.splitlines() if "error" in line][:3]
    assert metrics(tmp_path / "killed") == metrics(tmp_path / "straight")
    assert len([m for m in metrics(tmp_path / "straight") if "lr" in m]) == 15
    # every rank's own state (RNG, SwAV's queue) at the end, rank by rank: Sinkhorn's loss would not notice
    # queues swapped between ranks
    ends = [torch.load(tmp_path / run / "checkpoint.pth", map_location="cpu", weights_only=False)["ranks"]
            for run in ("straight", "killed")]
    for straight_rank, resumed_rank in zip(*ends):
        assert same(resumed_rank, straight_rank)
    if method == "swav":
        queues = [rank["method"]["queue"] for rank in ends[0]]
        assert all(q is not None for q in queues) and not torch.equal(queues[0], queues[1])


def nan_worker(rank, method, data, output_dir, init_file, result_file):
    import torch.distributed as dist

    from pretrain.train import train

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    torch.set_num_threads(1)
    module = METHODS[method][1]
    forward, calls = module.forward, {"n": 0}

    def poisoned(self, views):  # rank 1 alone goes wrong at its 8th step
        calls["n"] += 1
        out = forward(self, views)
        return {**out, "loss": out["loss"] * float("nan")} if rank == 1 and calls["n"] == 8 else out

    module.forward = poisoned
    try:
        train(tiny_config(method, data, extra=QUEUE_IN_USE.get(method, ())), output_dir, progress=False)
        outcome = "finished"
    except TrainingDiverged as error:
        outcome = str(error)
    with open(f"{result_file}.{rank}", "w") as file:
        file.write(outcome)
    dist.destroy_process_group()


@pytest.mark.parametrize("method", ["simsiam", "swav"])  # SwAV: with its queue in use
def test_a_nan_on_one_rank_stops_every_rank_and_keeps_the_last_good_checkpoint(method, demo_root, tmp_path):
    mp.spawn(nan_worker, args=(method, str(demo_root), str(tmp_path / "out"), str(tmp_path / "init"),
                               str(tmp_path / "r")), nprocs=WORLD, join=True)
    for rank in range(WORLD):
        assert "loss is nan at step 7" in (tmp_path / f"r.{rank}").read_text()
    state = torch.load(tmp_path / "out" / "checkpoint.pth", map_location="cpu", weights_only=False)
    assert state["step"] == 5 and not (tmp_path / "out" / "encoder.safetensors").exists()
