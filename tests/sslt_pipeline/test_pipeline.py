"""The pipeline end to end on the small generated data: every stage, the tables, the report; a second run skips
everything; a changed setting re-runs only the stages that depend on it; a failing stage marks its row."""
import json

import pytest
import yaml

from tests.conftest import REPO, run_tool

FAST_DETECTION = ["SOLVER.MAX_ITER", 2, "SOLVER.IMS_PER_BATCH", 2, "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", 16,
                  "TEST.PRECISE_BN.NUM_ITER", 1, "INPUT.MIN_SIZE_TRAIN", "(96,)", "INPUT.MIN_SIZE_TEST", 96]


def small_config(tmp_path, linear_epochs=3, external=None):
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
        "linear": {"protocol": "moco", "cached": True, "epochs": linear_epochs, "batch_size": 32},
        "detection": {
            "voc07": {"config": str(REPO / "configs/demo/voc07.yaml"), "opts": FAST_DETECTION},
            "coco_instseg": {"config": str(REPO / "configs/demo/coco_instseg.yaml"), "opts": FAST_DETECTION},
        },
    }
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def run(config, out):
    return run_tool("tools/run_pipeline.py", "--config", config, "--output-dir", out)


@pytest.mark.slow
def test_pipeline_runs_skips_and_reruns_only_what_changed(tmp_path):
    out = tmp_path / "out"
    first = run(small_config(tmp_path), out)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    manifest = json.loads((out / "manifest.json").read_text())
    assert len(manifest) == 2 * 6 + 4 and all(e["status"] == "done" for e in manifest.values())
    for name in ("simsiam", "byol", "random_init"):
        result = json.loads((out / "results" / f"{name}.json").read_text())
        assert 0 <= result["knn"]["top1"] <= 100 and 0 <= result["linear"]["top1"] <= 100
        assert set(result["detection"]) == {"voc07", "coco_instseg", "coco_det"} and not result["failed"]
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
    broken = tmp_path / "broken.pth"
    broken.write_text("not a checkpoint")
    config = yaml.safe_load(small_config(tmp_path).read_text())
    config["methods"] = {}
    config["detection"] = {}
    config["external"] = {"broken": str(broken)}
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(config))
    result = run(path, tmp_path / "out")
    assert result.returncode == 1 and "stage(s) failed: broken/knn, broken/linear, broken/convert" in result.stdout
    tables = (tmp_path / "out" / "tables.md").read_text()
    assert "| broken | — | — | — | — | — | — | failed | failed |" in tables  # no budget: plain linear / kNN
    assert json.loads((tmp_path / "out" / "results" / "random_init.json").read_text())["knn"]["top1"] >= 0
