"""tools/evaluate.py and its aliases: the same evaluation under both names, its record written whole; train_det
names its task from the config and records each trial's seed."""
import json
import math

import pytest

from tests.conftest import REPO

FAST = ["SOLVER.MAX_ITER", "2", "SOLVER.IMS_PER_BATCH", "2", "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "16",
        "TEST.PRECISE_BN.NUM_ITER", "1", "INPUT.MIN_SIZE_TRAIN", "(96,)", "INPUT.MIN_SIZE_TEST", "96"]


def test_an_alias_and_evaluate_py_give_the_same_record(tool, demo_root, tmp_path):
    common = ["--weights", "random", "--arch", "resnet18", "--data", str(demo_root), "--image-size", "32", "--k", "5",
              "--workers", "0", "--cache-dir", str(tmp_path / "cache")]
    code, out, _ = tool("evaluate", "knn", *common, "--output", str(tmp_path / "a.json"))
    assert code == 0 and "kNN k=   5" in out
    code, _, _ = tool("eval_knn", *common, "--output", str(tmp_path / "b.json"))
    a, b = (json.loads((tmp_path / f"{n}.json").read_text()) for n in "ab")
    assert code == 0 and a["metrics"] == b["metrics"] and a["protocol"] == b["protocol"] == "knn/k5-t0.07-crop32"
    assert a["details"]["knn"]["5"] == a["metrics"] and a["scored_on"] == "imagenet/val"
    assert a["settings"]["k"] == [5] and a["checkpoint_sha256"] == "random"


def test_evaluate_py_lists_the_registry_and_refuses_an_unknown_name(tool):
    code, out, _ = tool("evaluate", "--help")
    assert code == 0 and all(name in out for name in ("knn", "linear", "label_free", "voc07", "coco_instseg"))
    code, _, err = tool("evaluate", "vooc07", "--weights", "random")
    assert code == 1 and "did you mean 'voc07'?" in err and err.count("\n") == 1


@pytest.mark.slow
def test_train_det_records_its_task_protocol_and_each_trials_seed(tool, demo_root, tmp_path):
    out = tmp_path / "det"
    code, _, err = tool("train_det", "--config", str(REPO / "configs/demo/voc0712.yaml"), "--weights", "random",
                        "--data-root", str(demo_root), "--output-dir", str(out), "--trials", "2", "--seed", "5", *FAST)
    assert code == 0, err[-2000:]
    record = json.loads((out / "record.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())
    assert record["evaluation"] == "voc0712" and record["protocol"].startswith("det/voc0712-voc0712-2it-bs2-")
    assert [t["seed"] for t in record["trials"]] == [5, 6] and record["global_batch_size"] == 2
    values = [t["results"]["bbox"]["AP50"] for t in metrics["trials"]]
    assert [t["metrics"]["bbox/AP50"] for t in record["trials"]] == values
    assert record["std"]["bbox/AP50"] == pytest.approx(abs(values[0] - values[1]) / math.sqrt(2))
    assert record["scored_on"] == "demo_voc_2007_test" and record["selected_on"] is None
