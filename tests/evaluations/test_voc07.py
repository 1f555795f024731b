"""The VOC07 SVM evaluations through the tool, their tables (mean +- std of the low-shot samples) and the report's
low-shot plot."""
import json
import statistics

from PIL import Image

import evaluations  # noqa: F401
from evaluations.record import from_trials
from evaluations.results import ModelResult
from evaluations.tables import build_table, make_tables
from sslt_pipeline.report import plot_low_shot


def test_the_tool_runs_voc07_svm_on_the_demo_set(tool, demo_root, tmp_path):
    out = tmp_path / "svm.json"
    code, stdout, stderr = tool("evaluate", "voc07_svm", "--weights", "random", "--arch", "resnet18", "--data",
                                demo_root, "--layers", "res5", "pool", "--costs", "0.01", "1", "--image-size", "32",
                                "--jobs", "1", "--workers", "0", "--cache-dir", tmp_path / "cache", "--output", out)
    assert code == 0, stderr
    record = json.loads(out.read_text())
    assert set(record["metrics"]) == {"res5", "pool"} and "VOC07 SVM mAP: res5" in stdout
    assert record["selected_on"] == "voc2007/trainval" and "difficult" in record["details"]["labels"]
    assert all(0 <= v <= 100 for v in record["metrics"].values() if v is not None)


def test_a_layer_named_twice_is_refused(tool, demo_root, tmp_path):
    code, _, stderr = tool("evaluate", "voc07_lowshot", "--weights", "random", "--data", demo_root, "--layers",
                           "res5", "res5", "--cache-dir", tmp_path)
    assert code == 1 and "at most once" in stderr


def _fewest_positives(voc):
    """([classes], count) of the fewest '1' lines in a <class>_trainval.txt, counted here."""
    counts = {path.name[:-len("_trainval.txt")]: sum(line.split()[1:] == ["1"]
                                                     for line in path.read_text().splitlines())
              for path in (voc / "ImageSets" / "Main").glob("*_trainval.txt")}
    fewest = min(counts.values())
    return sorted(c for c, n in counts.items() if n == fewest), fewest


def test_a_k_beyond_the_positives_of_a_class_is_refused_before_any_feature(tool, demo_root, tmp_path):
    classes, fewest = _fewest_positives(demo_root / "VOC2007")
    code, _, stderr = tool("evaluate", "voc07_lowshot", "--weights", "random", "--arch", "resnet18", "--data",
                           demo_root, "--k", "1", str(fewest + 1), "--image-size", "32", "--workers", "0",
                           "--cache-dir", tmp_path / "cache", "--output", tmp_path / "r.json")
    assert code == 1 and len(stderr.strip().splitlines()) == 1, stderr
    assert f"k {fewest + 1} is more positives than class '" in stderr and f"({fewest}); give k <= {fewest}" in stderr
    assert any(f"class '{c}'" in stderr for c in classes)
    assert not (tmp_path / "cache").exists() and not (tmp_path / "r.json").exists()


def test_take_all_runs_a_k_beyond_the_positives_and_says_so(tool, demo_root, tmp_path):
    _, fewest = _fewest_positives(demo_root / "VOC2007")
    out = tmp_path / "r.json"
    code, _, stderr = tool("evaluate", "voc07_lowshot", "--weights", "random", "--arch", "resnet18", "--data",
                           demo_root, "--k", str(fewest + 1), "--samples", "1", "--layers", "res5", "--costs", "1",
                           "--image-size", "32", "--jobs", "1", "--workers", "0", "--fewer-positives", "take_all",
                           "--cache-dir", tmp_path / "cache", "--output", out)
    assert code == 0, stderr
    record = json.loads(out.read_text())
    assert record["protocol"].endswith("-fewer-positives-taken")
    assert record["details"]["low_shot"]["res5"][str(fewest + 1)]["capped"]


def test_jobs_below_minus_one_is_refused(tool, demo_root, tmp_path):
    code, _, stderr = tool("evaluate", "voc07_svm", "--weights", "random", "--data", demo_root, "--jobs", "-2",
                           "--cache-dir", tmp_path)
    assert code == 1 and "jobs must be -1 (every core) or a number of processes 1 ... 1024, got -2" in stderr


def _low_shot_record(values):
    trials = [{"seed": s, "metrics": {"res5/k1": v, "res5/k2": v + 10}} for s, v in enumerate(values)]
    return from_trials("voc07_lowshot", "voc07_lowshot/test", trials, "voc2007/test", selected_on="voc2007/test")


def test_the_low_shot_table_shows_mean_and_std_over_the_samples(tmp_path):
    values = [20.0, 24.0, 22.0]
    result = ModelResult(name="m", evaluations={"voc07_lowshot": _low_shot_record(values)})
    columns, rows, _ = build_table("voc07_lowshot", [result])
    cell = rows[0]["res5 k=1"]
    assert cell.mean == statistics.mean(values) and cell.std == statistics.stdev(values)
    assert rows[0]["res5 k=96"].mean is None and "res4 k=1" in columns
    text = make_tables([result], "md")
    assert "22.0 ± 2.0" in text and "Selected on the test split" in text


def test_the_report_plots_the_low_shot_curve(tmp_path):
    results = [ModelResult(name="m", evaluations={"voc07_lowshot": _low_shot_record([20.0, 24.0])}),
               ModelResult(name="other")]
    assert plot_low_shot(results, tmp_path / "low_shot.png")
    with Image.open(tmp_path / "low_shot.png") as image:
        assert image.size[0] > 100
    assert not plot_low_shot(results[1:], tmp_path / "none.png") and not (tmp_path / "none.png").exists()
