"""Semi-supervised fine-tuning (eval/semisup.py, eval/subsets.py, evaluations/semisup.py): the presets against the
papers' values written out here, the shipped lists (counts, balance, nesting, sha256 by hashlib), SwAV's two lr
groups against its MultiStepLR written out, SimCLR v2's head surgery, the missing-image error, an exact resume after
a kill (an exception in the checkpoint writer; a SIGKILL of tools/evaluate.py semisup), and 2 processes (gloo,
float64, BN in eval mode) equal to 1."""
import hashlib
import json
import math
import shutil
import subprocess
import sys
from collections import Counter

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torchvision

import sslt_core.engine.checkpoint
from eval.semisup import Options, adapted, build_model, finetune, make_optimizer, preset, train_transform, trunk_lr
from eval.subsets import FOLDER, SampleDataset, resolve
from sslt_core.engine import ParamScheduler
from sslt_core.errors import DatasetError
from tests.conftest import REPO

# The official values, from the papers and their code (REFERENCE.md section 7):
# (preset, subset): optimizer, nesterov, trunk lr at the batch, head lr, batch, epochs, schedule, milestones, gamma,
# weight decay, momentum, head init, projection layer kept, selection
OFFICIAL = {
    # SimCLR v1 app. B.5: Nesterov 0.9, lr 0.05 x 4096/256 = 0.8, batch 4096, no wd, no warm-up, 60 / 30 epochs
    ("simclr", "1percent"): ("sgd", True, 0.8, None, 4096, 60, "cosine", (), 0.0, 0.9, "normal", False, "last"),
    ("simclr", "10percent"): ("sgd", True, 0.8, None, 4096, 30, "cosine", (), 0.0, 0.9, "normal", False, "last"),
    # SimCLR v2: LARS, lr 0.005 x sqrt(1024) = 0.16, no wd, first projection layer kept, zero-init head
    ("simclrv2", "1percent"): ("lars", False, 0.16, None, 1024, 60, "cosine", (), 0.0, 0.9, "zeros", True, "last"),
    ("simclrv2", "10percent"): ("lars", False, 0.16, None, 1024, 30, "cosine", (), 0.0, 0.9, "zeros", True, "last"),
    # BYOL app. C.1: Nesterov 0.9, no wd, lr and epochs chosen on held-out train images
    ("byol", "1percent"): ("sgd", True, 0.02, None, 1024, 30, "cosine", (), 0.0, 0.9, "normal", False, "heldout"),
    # SwAV eval_semisup.py: SGD 0.9, trunk / head 0.02 / 5 (1%), 0.01 / 0.2 (10%), batch 256, 20 ep, x0.2 at 12, 16
    ("swav", "1percent"): ("sgd", False, 0.02, 5.0, 256, 20, "multistep", (12, 16), 0.0, 0.9, "default", False,
                           "best-val"),
    ("swav", "10percent"): ("sgd", False, 0.01, 0.2, 256, 20, "multistep", (12, 16), 0.0, 0.9, "default", False,
                            "best-val"),
}


@pytest.mark.parametrize("key", list(OFFICIAL), ids=[f"{p}-{s}" for p, s in OFFICIAL])
def test_each_preset_holds_the_official_values(key):
    r = preset(*key)
    got = (r.optimizer, r.nesterov, r.lr, r.head_lr, r.batch_size, r.epochs, r.schedule, r.milestones,
           r.weight_decay, r.momentum, r.head_init, r.keep_projection, r.selection)
    for value, official in zip(got, OFFICIAL[key]):
        assert value == (pytest.approx(official) if isinstance(official, float) else official)
    assert r.sync_bn  # SimCLR's global BN, SwAV's SyncBN


def test_byol_grid_and_the_lr_rules_at_another_batch():
    byol = preset("byol", "10percent")
    assert byol.lr_grid == (0.005, 0.01, 0.02, 0.05, 0.1) and byol.epochs_grid == (30, 50)
    assert adapted(preset("simclr", "1percent"), batch_size=512).lr == pytest.approx(0.05 * 512 / 256)
    assert adapted(preset("simclrv2", "1percent"), batch_size=256).lr == pytest.approx(0.005 * math.sqrt(256))
    swav = adapted(preset("swav", "1percent"), batch_size=512, epochs=10)
    assert (swav.lr, swav.head_lr) == pytest.approx((0.04, 10.0)) and swav.milestones == (6, 8)


def _names(name):
    return [line.strip() for line in (FOLDER / f"{name}.txt").read_text().splitlines() if line.strip()]


def test_the_shipped_lists_counts_balance_nesting_and_licence():
    one, ten = _names("1percent"), _names("10percent")
    assert (len(one), len(set(one)), len(ten), len(set(ten))) == (12811, 12811, 128116, 128116)
    assert set(one) <= set(ten)
    for names, low, high in ((one, 12, 13), (ten, 128, 129)):  # 1,000 classes, balanced
        per_class = Counter(n.split("_")[0] for n in names)
        assert len(per_class) == 1000 and min(per_class.values()) == low and max(per_class.values()) == high
    # the sha256 of the files as google-research/simclr ships them (commit 383d414)
    assert hashlib.sha256((FOLDER / "1percent.txt").read_bytes()).hexdigest().startswith("71e82a48ba78")
    assert hashlib.sha256((FOLDER / "10percent.txt").read_bytes()).hexdigest().startswith("6d09de11e7bd")
    assert "Apache License" in (FOLDER / "LICENSE").read_text() and "simclr" in (FOLDER / "NOTICE").read_text()


def test_a_changed_shipped_list_is_refused(monkeypatch, tmp_path):
    import eval.subsets

    (tmp_path / "1percent.txt").write_text("\n".join(_names("1percent")[:-1]) + "\n")
    monkeypatch.setattr(eval.subsets, "FOLDER", tmp_path)
    with pytest.raises(DatasetError, match="sha256 .* not the official"):
        eval.subsets.official_list("1percent")


def test_missing_subset_images_fail_in_one_line_before_training(demo_root, tmp_path):
    listing = tmp_path / "list.txt"
    listing.write_text("circle_00000.jpg\ncircle_99998.jpg\nn01440764_10026.JPEG\n")
    with pytest.raises(DatasetError) as error:
        resolve(str(listing), demo_root)
    message = str(error.value)
    assert "\n" not in message and message.startswith("2 of the 3 subset images")
    assert "circle_99998.jpg" in message and "n01440764_10026.JPEG" in message


def test_swav_trunk_and_head_lr_at_several_epochs():
    model = torch.nn.Sequential()
    model.trunk, model.head = torch.nn.Linear(4, 4), torch.nn.Linear(4, 3)
    for subset, trunk, head in (("1percent", 0.02, 5.0), ("10percent", 0.01, 0.2)):
        recipe = preset("swav", subset)
        optimizer = make_optimizer(model, recipe)
        schedule, unit = trunk_lr(recipe, steps_per_epoch=7)
        assert unit == "epoch"
        scheduler = ParamScheduler(optimizer, lr=schedule, unit=unit)
        for epoch in (0, 5, 11, 12, 15, 16, 19):
            scheduler.apply(epoch)
            factor = 1.0 if epoch < 12 else (0.2 if epoch < 16 else 0.04)  # MultiStepLR([12, 16], gamma 0.2)
            trunk_group, head_group = optimizer.param_groups
            assert trunk_group["lr"] == pytest.approx(trunk * factor)
            assert head_group["lr"] == pytest.approx(head * factor)
            assert [id(p) for p in head_group["params"]] == [id(p) for p in model.head.parameters()]


def test_simclr_cosine_per_step_without_warmup():
    schedule, unit = trunk_lr(preset("simclr", "10percent"), steps_per_epoch=10)
    assert unit == "step" and schedule(0) == pytest.approx(0.8)
    assert schedule(150) == pytest.approx(0.8 * 0.5 * (1 + math.cos(math.pi * 150 / 300))) and schedule(300) == 0


def test_simclrv2_keeps_the_first_projection_layer_under_a_zero_head(tmp_path):
    torch.manual_seed(0)
    resnet = torchvision.models.resnet18()
    state = {f"encoder.{k}": v for k, v in resnet.state_dict().items() if not k.startswith("fc.")}
    proj = {"projector.0.weight": torch.randn(64, 512), "projector.1.weight": torch.rand(64) + 0.5,
            "projector.1.bias": torch.randn(64), "projector.1.running_mean": torch.randn(64),
            "projector.1.running_var": torch.rand(64) + 0.5, "projector.1.num_batches_tracked": torch.tensor(3),
            "projector.3.weight": torch.randn(32, 64)}  # the second layer: not kept
    path = tmp_path / "simclr.pth"
    torch.save({"model": {**state, **proj}, "ssl_transfer": 1}, path)
    model, description = build_model(str(path), "resnet50", False, preset("simclrv2", "1percent"), 10)
    linear, bn, relu = model.projection
    assert torch.equal(linear.weight, proj["projector.0.weight"]) and linear.bias is None
    for name in ("weight", "bias", "running_mean", "running_var"):
        assert torch.equal(getattr(bn, name), proj[f"projector.1.{name}"])
    assert isinstance(relu, torch.nn.ReLU) and "projector.0 kept" in description
    assert model.head.in_features == 64 and model.head.out_features == 10
    assert not model.head.weight.any() and not model.head.bias.any()
    assert torch.equal(model.trunk.conv1.weight, resnet.conv1.weight)
    # without a projection head: the new head on the 512-d (ResNet-50: 2048-d) pooled features
    plain = tmp_path / "plain.pth"
    torch.save(resnet.state_dict(), plain)
    model, description = build_model(str(plain), "resnet50", False, preset("simclrv2", "1percent"), 10)
    assert model.projection is None and model.head.in_features == 512 and "no projection head" in description
    # SimCLR v1: the head N(0, 0.01) (model_util.linear_layer), no projection layer
    model, _ = build_model(str(path), "resnet50", False, preset("simclr", "1percent"), 10)
    assert model.projection is None and 0.005 < model.head.weight.std() < 0.015 and not model.head.bias.any()


# -- the run itself on the demo data ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small(demo_root, tmp_path_factory):
    """2 train images per class (20), and a checkpoint of a ResNet-18."""
    root = tmp_path_factory.mktemp("semisup")
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18().state_dict(), root / "r18.pth")
    samples, classes, _ = resolve("per-class-2", demo_root)
    return root, samples, classes


def _run(small, folder, options, epochs=2, batch=10):
    root, samples, classes = small
    recipe = adapted(preset("simclr", "1percent"), batch_size=batch, epochs=epochs, lr=0.05)
    model, _ = build_model(str(root / "r18.pth"), "resnet18", False, recipe, len(classes))
    train_set = SampleDataset(samples, train_transform(32), seed=0)
    history, loop, model = finetune(model, train_set, recipe, folder, options)
    return model, loop


class Killed(BaseException):
    """Stands for a kill: nothing in the run catches it."""


@pytest.mark.slow
def test_a_run_killed_while_writing_a_checkpoint_resumes_to_the_same_weights_and_metrics(small, tmp_path,
                                                                                          monkeypatch):
    options = Options(workers=0, progress=False, checkpoint_every=1)
    straight, _ = _run(small, tmp_path / "straight", options)
    real, calls = sslt_core.engine.checkpoint.save_atomic, []

    def save(path, obj):
        calls.append(obj["step"])
        if len(calls) == 3:  # the checkpoint of step 3 (of 4), in the middle of the second epoch
            raise Killed
        real(path, obj)

    monkeypatch.setattr(sslt_core.engine.checkpoint, "save_atomic", save)
    with pytest.raises(Killed):
        _run(small, tmp_path / "killed", options)
    monkeypatch.setattr(sslt_core.engine.checkpoint, "save_atomic", real)
    assert torch.load(tmp_path / "killed" / "checkpoint.pth", weights_only=False)["step"] == 2
    with pytest.raises(Exception, match="--resume"):  # a checkpoint there: continued only when asked
        _run(small, tmp_path / "killed", options)
    resumed, loop = _run(small, tmp_path / "killed", Options(workers=0, progress=False, checkpoint_every=1,
                                                            resume=True))
    assert loop.step == 4
    for key, value in straight.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key
    lines = [(tmp_path / run / "metrics.jsonl").read_text().splitlines() for run in ("straight", "killed")]
    assert lines[0] == lines[1] and [json.loads(line)["step"] for line in lines[0]] == [1, 2, 3, 4]


# In the child: tools/evaluate.py semisup, which SIGKILLs itself right after the checkpoint of step KILL_AT is on
# disk (no finally block, no flush, the output lock released by the kernel), as tests/pretrain/test_resume_kills.py.
KILL_AT = 3  # of 4 steps (20 images, batch 10, 2 epochs): the middle of the second epoch
CHILD = """
import os, runpy, signal, sys
import sslt_core.engine.checkpoint as C
real, kill_at = C.save_atomic, int(sys.argv[1])

def save_atomic(path, obj):
    real(path, obj)
    if obj["step"] == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)

C.save_atomic = save_atomic
sys.argv = ["tools/evaluate.py", *sys.argv[2:]]
runpy.run_path("tools/evaluate.py", run_name="__main__")
"""


@pytest.mark.slow
def test_a_run_sigkilled_after_a_mid_run_checkpoint_resumes_to_the_same_weights_and_metrics(demo_root, small,
                                                                                           tmp_path, tool):
    def args(out, *more):
        return ["semisup", "--weights", small[0] / "r18.pth", "--data", demo_root, "--subset", "per-class-2",
                "--epochs", "2", "--batch-size", "10", "--lr", "0.05", "--image-size", "32", "--workers", "0",
                "--checkpoint-every", "1", "--no-progress", "--output-dir", tmp_path / out,
                "--output", tmp_path / f"{out}.json", *more]

    code, _, err = tool("evaluate", *args("straight"))
    assert code == 0, err
    killed = subprocess.run([sys.executable, "-c", CHILD, str(KILL_AT), *map(str, args("killed"))], cwd=REPO,
                            capture_output=True, text=True)
    assert killed.returncode == -9, killed.stderr[-2000:]
    folder = tmp_path / "killed" / "per-class-2"
    assert torch.load(folder / "checkpoint.pth", weights_only=False)["step"] == KILL_AT
    assert not (folder / "result.json").exists() and not (tmp_path / "killed.json").exists()
    code, _, err = tool("evaluate", *args("killed", "--resume"))
    assert code == 0, err
    runs = [tmp_path / run / "per-class-2" for run in ("straight", "killed")]
    straight, resumed = (torch.load(run / "checkpoint.pth", weights_only=False) for run in runs)
    assert straight["step"] == resumed["step"] == 4
    for key, value in straight["model"].items():
        assert torch.equal(value, resumed["model"][key]), key
    lines = [(run / "metrics.jsonl").read_text().splitlines() for run in runs]
    assert lines[0] == lines[1] and [json.loads(line)["step"] for line in lines[0]] == [1, 2, 3, 4, 4]
    results = [json.loads((run / "result.json").read_text()) for run in runs]
    assert results[0]["metrics"] == results[1]["metrics"]
    assert json.loads(lines[1][-1])["scored_top1"] == results[1]["metrics"]["top1"]  # the last epoch's summary
    assert results[0]["details"]["epochs"] == results[1]["details"]["epochs"]
    records = [json.loads((tmp_path / f"{run}.json").read_text())["metrics"] for run in ("straight", "killed")]
    assert records[0] == records[1] and set(records[0]) == {"top1_per-class-2", "top5_per-class-2"}
    assert not list(folder.glob(".*.tmp-*"))


WORLD = 2  # about 60 s each on 2 busy cores: in the slow suite


def _worker(rank, small, folder, init_file, result_file):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    torch.set_num_threads(1)
    model, _ = _run(small, folder, Options(workers=0, progress=False, dtype=torch.float64, bn_eval=True),
                    epochs=1)
    if rank == 0:
        torch.save(model.state_dict(), result_file)
    dist.barrier()
    dist.destroy_process_group()


@pytest.mark.slow
def test_two_processes_on_halves_of_the_global_batch_equal_one_process(small, tmp_path):
    """gloo on the CPU, float64, BN in eval mode (a sample's output independent of the split of the batch; torch's
    SyncBatchNorm needs GPUs): the same crops (seeded per image), the same global batches, DDP's mean gradient."""
    one, _ = _run(small, tmp_path / "one", Options(workers=0, progress=False, dtype=torch.float64, bn_eval=True),
                  epochs=1)
    mp.spawn(_worker, args=(small, tmp_path / "two", str(tmp_path / "init"), str(tmp_path / "two.pth")),
             nprocs=WORLD, join=True)
    two = torch.load(tmp_path / "two.pth", weights_only=True)
    moved = False
    for key, value in one.state_dict().items():
        assert torch.allclose(value, two[key], rtol=1e-9, atol=1e-12), key
        moved |= key.endswith("head.weight")
    assert moved
    losses = [[json.loads(line)["loss"] for line in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]
              for run in ("one", "two")]
    assert len(losses[0]) == 2 and losses[0] == pytest.approx(losses[1], rel=1e-10)


def test_the_demo_run_writes_tensorboard_and_a_result_per_subset(demo_root, small, tmp_path, tool):
    code, out, err = tool("evaluate", "semisup", "--weights", small[0] / "r18.pth", "--data", demo_root,
                          "--subset", "1percent=per-class-1", "--epochs", "1", "--batch-size", "10",
                          "--image-size", "32", "--workers", "0", "--protocol", "swav", "--no-progress",
                          "--output-dir", tmp_path / "out", "--output", tmp_path / "record.json")
    assert code == 0, err
    record = json.loads((tmp_path / "record.json").read_text())
    assert record["selected_on"] == record["scored_on"] == "imagenet/val"  # SwAV selects its epoch on val
    assert set(record["metrics"]) == {"top1_1pct", "top5_1pct"}
    detail = record["details"]["subsets"]["1pct"]
    assert detail["official"] is False and detail["images"] == 10 and "optimistic" in detail["note"]
    assert record["protocol"].startswith("semisup/swav-1pct[per-class-1]:lr0.000781")  # 0.02 x 10/256
    assert list((tmp_path / "out" / "1pct" / "tensorboard").iterdir())
    assert json.loads((tmp_path / "out" / "1pct" / "result.json").read_text())["metrics"] == {
        "top1": record["metrics"]["top1_1pct"], "top5": record["metrics"]["top5_1pct"]}
    shutil.rmtree(tmp_path / "out")


@pytest.mark.slow
def test_byol_chooses_its_lr_on_held_out_train_images_not_on_val(demo_root, small, tmp_path, tool):
    code, out, err = tool("evaluate", "semisup", "--weights", small[0] / "r18.pth", "--data", demo_root,
                          "--subset", "1percent=per-class-1", "--epochs", "1", "--batch-size", "10",
                          "--image-size", "32", "--workers", "0", "--protocol", "byol", "--heldout", "20",
                          "--no-progress", "--output-dir", tmp_path / "out", "--output", tmp_path / "record.json")
    assert code == 0, err
    record = json.loads((tmp_path / "record.json").read_text())
    detail = record["details"]["subsets"]["1pct"]
    assert record["selected_on"] == detail["selected_on"] == "imagenet/train-heldout-20" != record["scored_on"]
    grid = detail["grid"]
    assert [g["lr"] for g in grid] == pytest.approx([v * 10 / 1024 for v in (0.005, 0.01, 0.02, 0.05, 0.1)])
    best = max(grid, key=lambda g: g["heldout"]["top1"])  # the first of equal ones, as the run picks
    assert detail["chosen"] == {"lr": best["lr"], "epochs": 1}
