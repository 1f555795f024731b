"""An evaluation registered with parts (the 12-dataset linear transfer) runs as one stage per part and comes back
as one record: its parts' values, their mean written out, their seconds summed."""
import yaml

from sslt_pipeline.config import load_pipeline_config
from sslt_pipeline.pipeline import build_stages, model_result


def _record(dataset, value, seconds):
    return {"evaluation": "linear_transfer", "protocol": "linear_transfer/x", "metrics": {dataset: value},
            "trials": [{"seed": 0, "metrics": {dataset: value}}], "scored_on": f"{dataset}/test", "seconds": seconds,
            "weights": "random", "checkpoint_sha256": "random", "environment": {"device": "cpu"},
            "details": {"datasets": {dataset: {"test": value, "val": value, "lambda": 1.0}}}}


def test_each_dataset_is_a_stage_and_the_record_is_merged(demo_root, tmp_path):
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump({"data_root": str(demo_root), "image_size": 32, "random_baseline": True,
                                    "evaluations": {"linear_transfer": {"datasets": ["cifar10", "dtd"]}}}))
    config, checked = load_pipeline_config(path)
    stages, models = build_stages(config, checked)
    assert [(s.id, s.kind, s.spec["data"]) for s in stages] == [
        ("random_init/linear_transfer/cifar10", "linear_transfer", ["cifar10"]),
        ("random_init/linear_transfer/dtd", "linear_transfer", ["dtd"])]
    entries = {"random_init/linear_transfer/cifar10": {"status": "done", "outputs": {"record": _record(
        "cifar10", 40.0, 3.0)}}, "random_init/linear_transfer/dtd": {"status": "done", "outputs": {"record": _record(
            "dtd", 10.0, 2.5)}}}
    record = model_result(models[0], entries, checked).evaluations["linear_transfer"]
    assert record.metrics == {"cifar10": 40.0, "dtd": 10.0, "mean": (40.0 + 10.0) / 2}
    assert record.seconds == 5.5 and record.settings["datasets"] == ["cifar10", "dtd"]
    entries["random_init/linear_transfer/dtd"] = {"status": "failed", "reason": "ValueError: broke"}
    result = model_result(models[0], entries, checked)
    assert "linear_transfer" not in result.evaluations and result.failed == {"linear_transfer": "ValueError: broke"}


def test_a_detection_stage_reads_only_the_converted_weights_it_needs(demo_root, tmp_path, monkeypatch):
    """A pretrained row's detection stage needs its convert stage alone, and evaluates that .pkl."""
    import sslt_pipeline.pipeline as pipeline
    from evaluations.record import EvaluationRecord
    from tests.conftest import REPO

    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump({
        "data_root": str(demo_root), "image_size": 32, "random_baseline": False,
        "methods": {"s": {"config": str(REPO / "configs/pretrain/simsiam_demo.yaml")}},
        "evaluations": {"voc07": {"config": str(REPO / "configs/demo/voc07.yaml")}}}))
    config, checked = load_pipeline_config(path)
    stages, _ = build_stages(config, checked)
    stage = next(s for s in stages if s.id == "s/voc07")
    assert stage.needs == ("s/convert",) and stage.kind == "detection"
    seen = []

    def evaluated(evaluation, weights, data_root, folder, settings, context):
        seen.append(weights.path)
        return EvaluationRecord("voc07", "det/x", {}, [{"seed": 0, "metrics": {}}], "test")

    monkeypatch.setattr(pipeline, "run_evaluation", evaluated)
    (tmp_path / "s" / "voc07").mkdir(parents=True)
    stage.run(tmp_path / "s" / "voc07", {"s/convert": {"pkl": str(tmp_path / "model.pkl")}})
    assert seen == [str(tmp_path / "model.pkl")]
