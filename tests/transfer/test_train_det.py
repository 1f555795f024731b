"""tools/train_det.py's library: a few iterations of fine-tuning and evaluation on the demo data."""
import collections
import dataclasses
import hashlib
import json
import math
import pickle

import pytest
import torch
import yaml

from sslt_core.errors import CheckpointError, ConfigError, OutputError
from tests.conftest import REPO, run_tool
from tests.sslt_core.layouts import random_resnet
from transfer.convert import to_detectron2
from transfer.detection_recipe import load_recipe
from transfer.detection_run import DetectionRun
from transfer.detection_weights import check_weights
from transfer.trials import run_trials

FAST = ("SOLVER.MAX_ITER", "2", "SOLVER.IMS_PER_BATCH", "2", "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "16",
        "TEST.PRECISE_BN.NUM_ITER", "1", "INPUT.MIN_SIZE_TRAIN", "(96,)", "INPUT.MIN_SIZE_TEST", "96")
CONFIGS = {"voc": REPO / "configs" / "demo" / "voc07.yaml", "coco": REPO / "configs" / "demo" / "coco_instseg.yaml"}


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "converted.pkl"
    with open(path, "wb") as file:
        pickle.dump({"model": to_detectron2(random_resnet()), "__author__": "test", "matching_heuristics": True}, file)
    return path


def detect(config, weights, out, opts=FAST, **run):
    """run_trials of that run, as tools/train_det.py builds it."""
    return run_trials(DetectionRun(load_recipe(config, opts), weights, out, **run))


def trial_config(config, opts, world_size):
    return load_recipe(config, opts).trial_config("", "unused", 0, world_size)


def assert_finite_metrics(summary, tasks, trials):
    assert len(summary["trials"]) == trials
    for trial in summary["trials"]:
        assert set(trial["results"]) == set(tasks)
        for task in tasks:
            for metric in ("AP", "AP50", "AP75"):
                assert math.isfinite(trial["results"][task][metric]) and 0 <= trial["results"][task][metric] <= 100
    for task in tasks:
        assert set(summary["mean"][task]) >= {"AP", "AP50", "AP75"} and set(summary["std"][task]) >= {"AP", "AP50"}


@pytest.mark.parametrize("kind, weights", [("voc", "converted"), ("voc", "random"), ("coco", "converted"),
                                           ("coco", "random")])
def test_a_few_iterations_give_finite_metrics(kind, weights, converted, demo_root, tmp_path):
    out = tmp_path / "run"
    summary = detect(CONFIGS[kind], str(converted) if weights == "converted" else "random", out, trials=1,
                     data_root=demo_root)
    tasks = ("bbox",) if kind == "voc" else ("bbox", "segm")
    assert_finite_metrics(summary, tasks, trials=1)
    assert json.loads((out / "metrics.json").read_text()) == summary
    assert any((out / "trial_0").glob("events.out.tfevents.*")) and (out / "log.txt").is_file()


def test_two_trials_give_a_mean_and_std_and_a_rerun_resumes_from_what_is_done(converted, demo_root, tmp_path):
    out = tmp_path / "run"
    summary = detect(CONFIGS["voc"], str(converted), out, trials=2, seed=5, data_root=demo_root)
    assert [t["seed"] for t in summary["trials"]] == [5, 6]
    values = [t["results"]["bbox"]["AP50"] for t in summary["trials"]]
    assert summary["mean"]["bbox"]["AP50"] == pytest.approx(sum(values) / 2)
    assert summary["std"]["bbox"]["AP50"] == pytest.approx(abs(values[0] - values[1]) / math.sqrt(2))

    with pytest.raises(OutputError, match="--resume"):
        detect(CONFIGS["voc"], str(converted), out, trials=2, seed=5, data_root=demo_root)
    (out / "trial_1" / "result.json").unlink()  # as if interrupted during the second trial's evaluation
    first = (out / "trial_0" / "result.json").stat().st_mtime_ns
    again = detect(CONFIGS["voc"], str(converted), out, trials=2, seed=5, data_root=demo_root, resume=True)
    assert (out / "trial_0" / "result.json").stat().st_mtime_ns == first  # trial 0 was not redone
    assert again["trials"][0] == summary["trials"][0]
    assert_finite_metrics(again, ("bbox",), trials=2)


def test_changing_the_batch_scales_the_learning_rate_and_says_so():
    cfg, notes = trial_config(REPO / "configs" / "voc07.yaml", ["SOLVER.IMS_PER_BATCH", "4"], 1)
    assert pytest.approx(0.02 * 4 / 16) == cfg.SOLVER.BASE_LR
    assert any("BASE_LR scaled linearly 0.02 -> 0.005" in note for note in notes)
    cfg, _ = trial_config(REPO / "configs" / "voc07.yaml", ["SOLVER.IMS_PER_BATCH", "4", "SOLVER.BASE_LR", "0.1"], 4)
    assert cfg.SOLVER.BASE_LR == 0.1


def test_torch_syncbn_becomes_bn_on_one_process_and_says_so():
    cfg, notes = trial_config(REPO / "configs" / "voc07.yaml", ["MODEL.RESNETS.NORM", "SyncBN"], 1)
    assert cfg.MODEL.RESNETS.NORM == "BN" and any("SyncBN -> BN" in note for note in notes)
    cfg, _ = trial_config(REPO / "configs" / "voc07.yaml", ["MODEL.RESNETS.NORM", "SyncBN"], 8)
    assert cfg.MODEL.RESNETS.NORM == "SyncBN"


@pytest.mark.parametrize("opts, message", [
    (["SOLVER.BASE_LRR", "0.1"], "Non-existent key: SOLVER.BASE_LRR; did you mean SOLVER.BASE_LR\\?"),
    (["SOLVER.MAX_ITER", "many"], "many"), (["SOLVER.MAX_ITER", "0"], "SOLVER.MAX_ITER must be >= 1"),
    (["SOLVER.IMS_PER_BATCH"], "KEY VALUE pairs")])
def test_a_config_typo_is_a_clear_error(opts, message):
    with pytest.raises(ConfigError, match=message):
        trial_config(REPO / "configs" / "voc07.yaml", opts, 1)


def test_bad_weights_fail_before_training(tmp_path, demo_root):
    torch.save({"model": {}}, tmp_path / "saved.pkl")
    (tmp_path / "partial.pkl").write_bytes(pickle.dumps({"model": {"stem.conv1.weight": 0}, "__author__": "x"}))
    torch.save({}, tmp_path / "raw.pth")
    cases = {"raw.pth": "run python tools/convert_to_d2.py", "saved.pkl": "written with torch.save",
             "partial.pkl": "its 'model' must map names to numpy arrays", "missing.pkl": "no such file"}
    for name, message in cases.items():
        result = run_tool("tools/train_det.py", "--config", CONFIGS["voc"], "--weights", tmp_path / name,
                          "--data-root", demo_root, "--output-dir", tmp_path / "out")
        assert result.returncode != 0 and message in result.stderr, (name, result.stderr[-500:])
        assert not (tmp_path / "out" / "metrics.json").exists()


def test_resume_refuses_other_weights_or_settings_and_a_config_error_leaves_nothing(converted, demo_root, tmp_path):
    out = tmp_path / "run"
    detect(CONFIGS["voc"], "random", out, trials=1, data_root=demo_root)
    with pytest.raises(ConfigError, match="started with other settings .*weights_sha256 'random' ->"):
        detect(CONFIGS["voc"], str(converted), out, trials=1, data_root=demo_root, resume=True)
    with pytest.raises(ConfigError, match="opts"):
        detect(CONFIGS["voc"], "random", out, trials=1, opts=FAST[:-2] + ("INPUT.MIN_SIZE_TEST", "128"),
               data_root=demo_root, resume=True)
    fresh = tmp_path / "fresh"
    result = run_tool("tools/train_det.py", "--config", CONFIGS["voc"], "--weights", "random", "--data-root",
                      demo_root, "--output-dir", fresh, "SOLVER.BASE_LRR", "0.1")
    assert result.returncode != 0 and result.stderr.strip().splitlines()[-1].startswith("error: ")
    assert not fresh.exists()  # nothing written, so the corrected command is not blocked


def test_a_converted_file_with_nan_weights_is_refused(tmp_path):
    import numpy as np

    model = to_detectron2(random_resnet())
    model["res4.0.conv1.weight"] = np.full_like(model["res4.0.conv1.weight"], np.nan)
    path = tmp_path / "nan.pkl"
    path.write_bytes(pickle.dumps({"model": model, "__author__": "x"}))
    with pytest.raises(CheckpointError, match="res4.0.conv1.weight holds .* NaN"):
        check_weights(str(path))


@pytest.mark.slow
def test_trials_as_jobs_run_in_parallel_assemble_metrics_and_are_not_run_twice(demo_root, tmp_path):
    """--launcher submitit-local: each trial its own job (the code path of --launcher slurm but sbatch)."""
    out = tmp_path / "run"
    command = ["tools/train_det.py", "--config", CONFIGS["voc"], "--weights", "random", "--data-root", demo_root,
               "--output-dir", out, "--trials", "2", "--launcher", "submitit-local", "--gpus-per-node", "0",
               "--cpus-per-task", "1", "--time", "30", "--wait", *FAST]
    first = run_tool(*command)
    assert first.returncode == 0, first.stderr[-3000:]
    assert first.stdout.count("submitted job") == 2
    metrics = json.loads((out / "metrics.json").read_text())
    assert [t["seed"] for t in metrics["trials"]] == [0, 1] and set(metrics["mean"]) == {"bbox"}
    assert len(list((out / "slurm").glob("*_0_log.err"))) == 2  # one job per trial, its own log
    again = run_tool(*command[:-len(FAST)], "--resume", *FAST)
    assert again.returncode == 0 and again.stdout.count(": done") == 2 and "submitted job" not in again.stdout


def _chain_by_hand(config):
    """The config and its bases, followed through each file's _BASE_ with plain yaml (the reference)."""
    chain = [config]
    while "_BASE_" in (content := yaml.safe_load(chain[-1].read_text())):
        chain.append(chain[-1].parent / content["_BASE_"])
    return chain


def test_the_recipe_is_detectron2s_own_merge_of_the_files_and_pickles(tmp_path):
    from detectron2.config import get_cfg

    recipe = load_recipe(CONFIGS["voc"], FAST)
    files = _chain_by_hand(CONFIGS["voc"])
    assert [p.name for p in files] == ["voc07.yaml", "voc07.yaml", "Base-RCNN-C4-BN.yaml"]
    assert recipe.digest() == hashlib.sha256(b"".join(p.read_bytes() for p in files)).hexdigest()
    assert recipe.texts() == {str(p): p.read_text() for p in files}
    assert recipe.datasets == ("demo_voc_2007_test", "demo_voc_2007_trainval") and recipe.opts == FAST
    cfg, _ = recipe.trial_config("w.pkl", tmp_path / "trial_3", 3, 1)
    reference = get_cfg()  # detectron2 reading the files itself
    reference.merge_from_file(str(CONFIGS["voc"]))
    reference.merge_from_list(list(FAST))
    reference.SOLVER.BASE_LR = 0.02 * 2 / 4  # batch 4 -> 2 (FAST): the linear scaling rule
    reference.MODEL.WEIGHTS, reference.OUTPUT_DIR, reference.SEED = "w.pkl", str(tmp_path / "trial_3"), 3
    reference.MODEL.DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
    assert cfg.dump() == reference.dump() and cfg.is_frozen()
    run = DetectionRun(recipe, "random", tmp_path / "run", trials=2, data_root=tmp_path)
    again = pickle.loads(pickle.dumps(run))  # as sent to submitit jobs and launch's processes
    assert again == run and again.recipe.trial_config("w.pkl", tmp_path / "trial_3", 3, 1)[0].dump() == cfg.dump()
    with pytest.raises(dataclasses.FrozenInstanceError):
        run.trials = 3


def test_one_train_det_run_reads_each_config_file_once_merges_once_and_registers_each_dataset_once(
        demo_root, tmp_path, tool, monkeypatch):
    import builtins
    import io
    import os

    from detectron2.config import CfgNode

    import transfer.detection as detection

    wanted = {os.path.realpath(p) for p in _chain_by_hand(CONFIGS["voc"])}
    opened, merges, registered = collections.Counter(), [], collections.Counter()
    real_open, real_merge = io.open, CfgNode.merge_from_file

    def counting_open(file, *args, **kwargs):
        if isinstance(file, (str, os.PathLike)) and os.path.realpath(file) in wanted:
            opened[os.path.realpath(file)] += 1
        return real_open(file, *args, **kwargs)

    def counting_merge(self, filename, *args, **kwargs):
        merges.append(filename)
        return real_merge(self, filename, *args, **kwargs)

    def counting(register):
        def call(name, *args, **kwargs):
            registered[name] += 1
            return register(name, *args, **kwargs)
        return call

    monkeypatch.setattr(builtins, "open", counting_open)
    monkeypatch.setattr(io, "open", counting_open)  # pathlib opens through io.open
    monkeypatch.setattr(CfgNode, "merge_from_file", counting_merge)
    monkeypatch.setattr(detection, "_REGISTERED", {})  # as in a fresh process
    monkeypatch.setattr(detection, "register_pascal_voc", counting(detection.register_pascal_voc))
    code, out, err = tool("train_det", "--config", CONFIGS["voc"], "--weights", "random", "--data-root", demo_root,
                          "--output-dir", tmp_path / "run", *FAST)
    assert code == 0, err[-2000:]
    assert json.loads(out[out.index("{"):])["mean"]["bbox"]["AP50"] >= 0
    assert opened == dict.fromkeys(wanted, 1)
    assert merges == [str(CONFIGS["voc"])]
    assert registered == {"demo_voc_2007_trainval": 1, "demo_voc_2007_test": 1}
