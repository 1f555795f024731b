"""The results bundle: a model card whose front matter is valid `model-index`, flat CSVs that concatenate across
runs, SHA256SUMS that verify, and one-line refusals without partial output."""
import csv
import hashlib
import json
import math
import statistics

import yaml

import evaluations  # noqa: F401  (registers every evaluation)
from evaluations.bundle import export, verify_sums, write_pipeline_bundles
from evaluations.record import from_trials
from evaluations.results import ModelResult, load_results
from pretrain.config import load_config

LINEAR = "linear/simsiam-larc-lr1.6-bs4096-90ep-augmented-crop224"

# The `model-index` structure of Hugging Face's model card documentation (https://huggingface.co/docs/hub/
# model-cards, "Evaluation results"): a list of models, each {name, results: [{task: {type (required), name},
# dataset: {type (required), name (required), config, split, revision, args}, metrics: [{type (required), value
# (required), name, config, args, verified, verifyToken}], source: {name, url}}]}.
SCHEMA = {
    "model": ({"name": str, "results": list}, set()),
    "result": ({"task": dict, "dataset": dict, "metrics": list}, {"source"}),
    "task": ({"type": str}, {"name"}),
    "dataset": ({"type": str, "name": str}, {"config", "split", "revision", "args"}),
    "metric": ({"type": str, "value": (int, float, str)}, {"name", "config", "args", "verified", "verifyToken"}),
}


def _check(kind, value):
    required, optional = SCHEMA[kind]
    assert isinstance(value, dict), (kind, value)
    for key, types in required.items():
        assert key in value and isinstance(value[key], types), (kind, key, value)
    assert set(value) <= set(required) | optional, (kind, set(value) - set(required) - optional)


def validate_model_index(index):
    assert isinstance(index, list) and index
    for model in index:
        _check("model", model)
        for result in model["results"]:
            _check("result", result)
            _check("task", result["task"])
            _check("dataset", result["dataset"])
            assert result["metrics"]
            for metric in result["metrics"]:
                _check("metric", metric)


def _run_folder(tmp_path, name, top1, overrides=()):
    """A pretraining run folder as pretrain/train.py leaves it, with records written beside it."""
    folder = tmp_path / name
    folder.mkdir()
    run = load_config("configs/pretrain/simsiam_r50.yaml", ["train.epochs=200", *overrides])
    (folder / "config.yaml").write_text(yaml.safe_dump(run.to_dict(), sort_keys=False))
    (folder / "log.txt").write_text("precision: bf16 autocast\n")
    (folder / "encoder.safetensors").write_bytes(b"weights of " + name.encode())
    linear = from_trials("linear", LINEAR, [{"seed": 0, "metrics": {"top1": top1, "top5": 88.0}}], "imagenet/val",
                         environment={"device": "cuda", "device_count": 1, "device_name": "H200"}, seconds=3600.0)
    (folder / "linear.json").write_text(json.dumps(linear.to_dict()))
    (folder / "voc0712").mkdir()
    voc = from_trials("voc0712", "det/voc0712-voc0712-24000it-bs16-0123abcd",
                      [{"seed": s, "metrics": {"bbox/AP50": 82.0 + 0.1 * s, "bbox/AP": 56.4, "bbox/AP75": 62.8}}
                       for s in range(3)], "voc_2007_test")
    (folder / "voc0712" / "record.json").write_text(json.dumps(voc.to_dict()))
    return folder


def _front_matter(text):
    assert text.startswith("---\n")
    front, _, prose = text[4:].partition("\n---\n")
    return yaml.safe_load(front), prose


def test_the_model_card_front_matter_is_valid_model_index_and_the_prose_comes_from_the_records(tmp_path):
    run = _run_folder(tmp_path, "simsiam", 70.4, ["train.base_lr=0.06"])
    [out] = export(run, tmp_path / "bundle")
    front, prose = _front_matter((out / "README.md").read_text())
    validate_model_index(front["model-index"])
    [model] = front["model-index"]
    assert model["name"] == "simsiam"
    entries = {r["task"]["type"]: r for r in model["results"]}
    assert len(model["results"]) == 2  # one entry per evaluation
    linear = entries["image-classification"]
    assert linear["dataset"] == {"type": "imagenet-1k", "name": "ImageNet-1k", "split": "validation"}
    assert {"type": "accuracy", "value": 70.4, "name": "top-1 accuracy"} in linear["metrics"]
    assert LINEAR in linear["task"]["name"]
    assert entries["object-detection"]["dataset"]["split"] == "test"
    assert "- Method: simsiam" in prose and "1 x H200" in prose and "1.0 h" in prose
    assert "train.base_lr: 0.06 (official 0.05" in prose  # the deviation from configs/pretrain/simsiam_r50.yaml
    assert "train.epochs" not in prose  # the budget is not a deviation
    assert "| linear 200 ep | 70.4 | 70.0 | +0.4 | no std |" in prose
    assert "upload_folder" in prose
    assert (out / "encoder.safetensors").read_bytes() == b"weights of simsiam"
    results = load_results([out / "results.json"])[0]  # results.json reads as a results file
    assert set(results.evaluations) == {"linear", "voc0712"}
    assert results.evaluations["linear"].environment["device_name"] == "H200"


def test_the_csvs_of_two_runs_concatenate(tmp_path):
    outs = [export(_run_folder(tmp_path, name, top1), tmp_path / f"bundle_{name}")[0]
            for name, top1 in (("a", 70.1), ("b", 68.2))]
    headers, rows = [], []
    for out in outs:
        with open(out / "results-linear.csv", newline="") as file:
            reader = csv.reader(file)
            headers.append(next(reader))
            rows += list(reader)
    assert headers[0] == headers[1]
    table = [dict(zip(headers[0], row)) for row in rows]
    assert [(r["model"], float(r["top1"]), r["protocol"], r["epochs"]) for r in table] == [
        ("a", 70.1, LINEAR, "200"), ("b", 68.2, LINEAR, "200")]
    with open(outs[0] / "results-voc0712.csv", newline="") as file:
        [voc] = list(csv.DictReader(file))
    assert math.isclose(float(voc["bbox/AP50"]), statistics.mean([82.0, 82.1, 82.2])) and voc["trials"] == "3"


def test_sha256sums_list_every_file_and_verify_with_hashlib(tmp_path):
    [out] = export(_run_folder(tmp_path, "simsiam", 70.0), tmp_path / "bundle")
    lines = (out / "SHA256SUMS").read_text().splitlines()
    listed = {}
    for line in lines:
        digest, name = line.split("  ", 1)
        listed[name] = digest
    files = {p.name for p in out.iterdir() if p.name != "SHA256SUMS"}
    assert set(listed) == files == {"README.md", "results.json", "results-linear.csv", "results-voc0712.csv",
                                    "encoder.safetensors"}
    for name, digest in listed.items():
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == digest
    (out / "results-linear.csv").write_text("tampered\n")
    assert verify_sums(out) == ["results-linear.csv"]
    export(tmp_path / "simsiam", out)  # an export over an earlier bundle replaces it
    assert verify_sums(out) == []


def test_a_pipeline_output_gets_one_bundle_per_model(tmp_path):
    output = tmp_path / "pipeline"
    run = _run_folder(tmp_path, "SimSiam", 70.0)
    (output / "results").mkdir(parents=True)
    (output / "SimSiam").mkdir()
    run.rename(output / "SimSiam" / "pretrain")
    records = {p.parent.name if p.name == "record.json" else p.stem: json.loads(p.read_text())
               for p in [output / "SimSiam" / "pretrain" / "linear.json",
                         output / "SimSiam" / "pretrain" / "voc0712" / "record.json"]}
    for name, method, epochs in (("SimSiam", "simsiam", 200), ("random init", None, 0)):
        result = ModelResult(name=name, method=method, epochs=epochs)
        data = {**result.to_dict(), "evaluations": records if method else {"voc0712": records["voc0712"]}}
        (output / "results" / f"{name.replace(' ', '_')}.json").write_text(json.dumps(data))
    (output / "manifest.json").write_text(json.dumps({"SimSiam/pretrain": {"status": "done", "seconds": 7200.0}}))
    bundles = write_pipeline_bundles(output)
    assert bundles == [output / "SimSiam" / "bundle", output / "random_init" / "bundle"]
    simsiam = (bundles[0] / "README.md").read_text()
    assert "Pretraining time: 2.0 h" in simsiam and (bundles[0] / "encoder.safetensors").is_file()
    assert not (bundles[1] / "encoder.safetensors").exists()  # random init: no weights
    front, prose = _front_matter((bundles[1] / "README.md").read_text())
    validate_model_index(front["model-index"])
    assert "| VOC 07+12 det AP50 | 82.1 ± 0.1 | 60.2 | +21.9 | ! |" in prose  # random init: the paper's scratch row
    assert verify_sums(bundles[0]) == verify_sums(bundles[1]) == []
    [out] = export(output, tmp_path / "exported")[:1]
    assert out == tmp_path / "exported" / "SimSiam"


def test_bad_inputs_fail_with_one_line_and_write_nothing(tmp_path, tool):
    code, _, err = tool("export_bundle", tmp_path / "missing", tmp_path / "out")
    assert code == 1 and err.count("\n") == 1 and "does not exist" in err
    (tmp_path / "empty").mkdir()
    code, _, err = tool("export_bundle", tmp_path / "empty", tmp_path / "out")
    assert code == 1 and "neither a pretraining run" in err and not (tmp_path / "out").exists()
    run = _run_folder(tmp_path, "simsiam", 70.0)
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("mine")
    code, _, err = tool("export_bundle", run, taken)
    assert code == 1 and "is not a results bundle" in err and sorted(p.name for p in taken.iterdir()) == ["notes.txt"]
    (run / "knn.json").write_text(json.dumps({"evaluation": "knn", "protocol": "knn/x", "scored_on": "imagenet/val",
                                              "metrics": {"top1": 101.0}, "trials": [{"seed": 0, "metrics": {}}]}))
    code, _, err = tool("export_bundle", run, tmp_path / "out")
    assert code == 1 and err.count("\n") == 1 and "top1" in err and not (tmp_path / "out").exists()
    (run / "knn.json").unlink()
    record = (run / "linear.json").read_text()
    (run / "linear.json").write_text(record[: len(record) // 2])  # a record cut short is named, not left out
    code, _, err = tool("export_bundle", run, tmp_path / "out")
    assert code == 1 and err.count("\n") == 1 and "linear.json is not valid JSON" in err
    assert not (tmp_path / "out").exists()
    (run / "linear.json").write_text(record)
    code, out, err = tool("export_bundle", run, tmp_path / "out", "--no-weights")
    assert code == 0, err
    assert "bundle written" in out and not (tmp_path / "out" / "encoder.safetensors").exists()
