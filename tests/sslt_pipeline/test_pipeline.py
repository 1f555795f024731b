"""The pipeline end to end on the small generated data: every stage, the tables, the report; a second run skips
everything; a changed setting re-runs only the stages that depend on it; a failing stage marks its row; the same
pipeline as submitit jobs (two methods in parallel) gives the same tables as the in-process run."""
import json
import os

import numpy as np
import pytest
import yaml
from sklearn.neighbors import KNeighborsClassifier

from tests.conftest import REPO, run_tool

FAST_DETECTION = ["SOLVER.MAX_ITER", 2, "SOLVER.IMS_PER_BATCH", 2, "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", 16,
                  "TEST.PRECISE_BN.NUM_ITER", 1, "INPUT.MIN_SIZE_TRAIN", "(96,)", "INPUT.MIN_SIZE_TEST", 96]
SINGLE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}  # the same sums in every process


def small_config(tmp_path, linear_epochs=3, external=None, detection=True, name="pipeline.yaml"):
    tiny = ["train.epochs=1", "train.batch_size=16", "train.image_size=32"]
    config = {
        "data_root": str(tmp_path / "data"),
        "demo_data": {"size": "small", "seed": 0},
        "image_size": 32,
        "methods": {
            "simsiam": {"config": str(REPO / "configs/pretrain/simsiam_demo.yaml"),
                        "overrides": tiny + ["model.proj_dim=64", "model.pred_hidden=16"]},
            "byol": {"config": str(REPO / "configs/pretrain/byol_demo.yaml"),
                     "overrides": tiny + ["model.proj_hidden=64", "model.proj_dim=32"]},
        },
        "random_baseline": True,
        "external": external or {},
        "knn": {"k": [5], "temperature": 0.07},
        "linear": {"protocol": "moco", "cached": True, "epochs": linear_epochs, "batch_size": 32},
        "detection": {
            "voc07": {"config": str(REPO / "configs/demo/voc07.yaml"), "opts": FAST_DETECTION},
            "coco_instseg": {"config": str(REPO / "configs/demo/coco_instseg.yaml"), "opts": FAST_DETECTION},
        } if detection else {},
        "resources": {kind: {"gpus_per_node": 0, "cpus_per_task": 1, "time": 30}
                      for kind in ("pretrain", "convert", "knn", "linear", "detection")},
    }
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config))
    return path


def run(config, out, *extra):
    return run_tool("tools/run_pipeline.py", "--config", config, "--output-dir", out, *extra, env=SINGLE_THREAD)


def knn_by_sklearn(features_dir, k=5, temperature=0.07):
    """Top-1 of the weighted kNN vote, by scikit-learn on the stage's cached features (exp(s/T) weights)."""
    def load(split):
        with np.load(next(features_dir.glob(f"{split}-*.npz"))) as data:
            return data["features"], data["labels"]

    (train_x, train_y), (val_x, val_y) = load("train"), load("val")
    norm = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
    knn = KNeighborsClassifier(n_neighbors=k, metric="cosine", algorithm="brute",
                               weights=lambda d: np.exp((1 - d) / temperature))
    return 100.0 * (knn.fit(norm(train_x), train_y).predict(norm(val_x)) == val_y).mean()


@pytest.mark.slow
def test_pipeline_runs_skips_and_reruns_only_what_changed(tmp_path):
    out = tmp_path / "out"
    first = run(small_config(tmp_path), out)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    manifest = json.loads((out / "manifest.json").read_text())
    assert len(manifest) == 2 * 6 + 4 and all(e["status"] == "done" for e in manifest.values())
    for name in ("simsiam", "byol", "random_init"):
        result = json.loads((out / "results" / f"{name}.json").read_text())
        records = result["evaluations"]
        assert records["knn"]["metrics"]["top1"] == pytest.approx(knn_by_sklearn(out / name / "features"))
        assert set(records) == {"knn", "linear", "voc07", "coco_instseg"} and not result["failed"]
        assert records["knn"]["protocol"] == "knn/k5-t0.07-crop32" and records["linear"]["global_batch_size"] == 32
        assert [t["seed"] for t in records["voc07"]["trials"]] == [0]
        row = next(r for r in json.loads((out / "tables.json").read_text())["transfer"] if r["name"] == name)
        box = records["coco_instseg"]["metrics"]["bbox/AP"]  # the seed's COCO det column: Mask R-CNN's box AP
        assert (row["COCO det AP"] or {}).get("mean") == (None if box is None else pytest.approx(box))
    tables = (out / "tables.md").read_text()
    assert "| simsiam | simsiam | 16 |" in tables and "VOC 07 det AP50" in tables
    report = (out / "report.md").read_text()
    assert "plots/pretraining.png" in report and (out / "plots" / "pretraining.png").stat().st_size > 1000
    assert (out / "plots" / "transfer.png").is_file()

    second = run(small_config(tmp_path), out)
    assert second.returncode == 0 and second.stdout.count("[skip]") == 16 and "[run]" not in second.stdout

    third = run(small_config(tmp_path, linear_epochs=4), out)
    assert third.returncode == 0
    assert sorted(line.split()[1].rstrip(":") for line in third.stdout.splitlines() if line.startswith("[redo]")) == \
        ["byol/linear", "random_init/linear", "simsiam/linear"]


@pytest.mark.slow
def test_a_failing_stage_marks_its_row_and_the_run_goes_on(tmp_path):
    config = yaml.safe_load(small_config(tmp_path).read_text())
    config["methods"] = {"broken": {"config": str(REPO / "configs/pretrain/simsiam_demo.yaml"),  # fails as it runs:
                                    "overrides": ["train.epochs=1", "train.batch_size=4096"]}}  # too few images
    config["detection"] = {}
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(config))
    result = run(path, tmp_path / "out")
    assert result.returncode == 1 and "1 stage(s) failed: broken/pretrain; 2 skipped as they need those: " \
        "broken/knn, broken/linear" in result.stdout, result.stdout[-2000:]  # no detection: nothing to convert
    row = next(line for line in (tmp_path / "out" / "tables.md").read_text().splitlines() if line.startswith(
        "| broken |"))
    assert row.endswith("| failed | failed |"), row  # no budget: plain linear / kNN
    report = (tmp_path / "out" / "report.md").read_text()
    assert "| broken/knn | skipped |" in report and "needs broken/pretrain, which failed" in report
    random_init = json.loads((tmp_path / "out" / "results" / "random_init.json").read_text())
    assert random_init["evaluations"]["knn"]["metrics"]["top1"] == pytest.approx(
        knn_by_sklearn(tmp_path / "out" / "random_init" / "features"))


@pytest.mark.slow
def test_the_pipeline_as_submitit_jobs_gives_the_in_process_tables(tmp_path):
    """Two pretrainings at once as jobs (submitit's local executor: SLURM's code path but sbatch), then every
    model's stages (conversion, kNN, linear probe, detection) as soon as what they read is done; the same tables as
    the in-process run."""
    config = small_config(tmp_path)
    here = run(config, tmp_path / "here")
    assert here.returncode == 0, here.stderr[-3000:]
    jobs = run(config, tmp_path / "jobs", "--launcher", "submitit-local", "--max-parallel", "2",
               "--poll-seconds", "0.5")
    assert jobs.returncode == 0, jobs.stdout[-3000:] + jobs.stderr[-3000:]
    for fmt in ("md", "csv", "json"):
        assert (tmp_path / "jobs" / f"tables.{fmt}").read_text() == (tmp_path / "here" / f"tables.{fmt}").read_text()
    manifest = json.loads((tmp_path / "jobs" / "manifest.json").read_text())
    assert all(entry["status"] == "done" and entry["job_id"] for entry in manifest.values())
    pretrain = [manifest[stage] for stage in ("simsiam/pretrain", "byol/pretrain")]
    assert abs(pretrain[0]["submitted"] - pretrain[1]["submitted"]) < 5  # submitted together, before either ended
    assert max(p["submitted"] for p in pretrain) < min(p["submitted"] + p["seconds"] for p in pretrain)
    again = run(config, tmp_path / "jobs", "--launcher", "submitit-local")
    assert again.returncode == 0 and again.stdout.count("[skip]") == len(manifest)


@pytest.mark.slow
def test_a_detection_stage_spreads_its_trials_over_the_processes_of_its_job(tmp_path, demo_root):
    """resources.detection.gpus_per_node > 1: the stage (one task of its job) has detectron2's launch start one
    process per GPU (here gloo processes on the CPU), with no MASTER_ADDR from the job: it must pick its own port."""
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump({
        "data_root": str(demo_root), "image_size": 32, "methods": {}, "random_baseline": True,
        "detection": {"voc07": {"config": str(REPO / "configs/demo/voc07.yaml"), "opts": FAST_DETECTION}}}))
    folder = tmp_path / "voc07"
    code = ("import json, sys; from pathlib import Path; from sslt_pipeline.config import load_pipeline_config; "
            "from sslt_pipeline.models import Model; from sslt_pipeline.pipeline import _evaluate; "
            "config, checked = load_pipeline_config(sys.argv[1]); "
            "run = _evaluate('voc07', checked['voc07'], Model('random init'), None, config, num_gpus=2); "
            "print(json.dumps(run(Path(sys.argv[2]), {})['record']))")
    env = {k: v for k, v in SINGLE_THREAD.items() if k not in ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE")}
    result = run_tool("-c", code, path, folder, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert {k.split("/")[0] for k in json.loads(result.stdout.splitlines()[-1])["metrics"]} == {"bbox"}
    assert "naiveSyncBN: BN statistics averaged over 2 process(es)" in (folder / "log.txt").read_text()
