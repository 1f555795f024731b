"""The two tables rendered from a fixture, and bad inputs."""
import json
from pathlib import Path

import pytest

import evaluations  # noqa: F401
from evaluations.results import load_results, parse_result
from evaluations.tables import make_tables
from sslt_core.errors import ResultsError
from tests.conftest import run_tool

FIXTURES = Path(__file__).parent / "fixtures"
RESULTS = [FIXTURES / n for n in ("simsiam.json", "mocov2_a.json", "mocov2_b.json", "random.json")]

EXPECTED_MD = """\
| name | method | batch size | negative pairs | momentum encoder | linear 100 ep | kNN 100 ep | linear | kNN |
|---|---|---|---|---|---|---|---|---|
| SimSiam | simsiam | 256 |  |  | **68.1** | **60.5** | — | — |
| MoCo v2 | mocov2 | 256 | ✓ | ✓ | 67.2 ± 0.3 | 58.2 ± 0.3 | — | — |
| random init | — | — | — | — | — | — | 5.0 | — |

| name | VOC 07 det AP50 | VOC 07 det AP | VOC 07 det AP75 | VOC 07+12 det AP50 | VOC 07+12 det AP \
| VOC 07+12 det AP75 | COCO det AP50 | COCO det AP | COCO det AP75 | COCO instance seg AP50 \
| COCO instance seg AP | COCO instance seg AP75 |
|---|---|---|---|---|---|---|---|---|---|---|---|---|
| SimSiam | **77.3 ± 0.2** | 48.5 ± 0.1 | **52.5 ± 0.3** | — | — | — | — | 39.2 | — | 56.0 | 34.4 | 36.7 |
| MoCo v2 | 77.0 | **48.6** | 52.0 | — | — | — | failed | failed | failed | failed | failed | failed |
| random init | — | — | — | — | — | — | — | — | — | — | — | — |
"""


def test_markdown_tables_match_the_expected_text():
    # COCO det is Mask R-CNN's box AP (the seed's column): the coco_instseg run fills it, and its failure fails it
    assert make_tables(load_results(RESULTS), "md") == EXPECTED_MD.replace("\\\n", "")


def test_a_row_without_epochs_goes_under_plain_linear_and_knn_columns():
    # 'random init' does not say its pretraining epochs: its accuracy belongs to no budget column
    assert "| random init | — | — | — | — | — | — | 5.0 | — |" in make_tables(load_results(RESULTS), "md")


def test_csv_latex_and_json_carry_the_same_values():
    results = load_results(RESULTS)
    csv_text = make_tables(results, "csv")
    assert csv_text.splitlines()[2] == "MoCo v2,mocov2,256,✓,✓,67.2 ± 0.3,58.2 ± 0.3,,"
    latex = make_tables(results, "latex")
    assert r"SimSiam & simsiam & 256 &  &  & \textbf{68.1} & \textbf{60.5} & -- & -- \\" in latex
    assert r"67.2 $\pm$ 0.3" in latex and r"\checkmark" in latex
    tables = json.loads(make_tables(results, "json"))
    moco = tables["linear"][1]
    assert moco["linear 100 ep"]["mean"] == pytest.approx(67.2)
    assert moco["linear 100 ep"]["std"] == pytest.approx(0.2828427, abs=1e-6)
    assert tables["transfer"][1]["COCO instance seg AP"] == {"failed": "CUDA out of memory"}
    assert tables["transfer"][0]["VOC 07+12 det AP"] is None


@pytest.mark.parametrize("text, message", [
    ("{", "not valid JSON"), ('{"linear": {"top1": 1}}', "has no 'name'"), ("[1, 2]", "must be a mapping"),
    ('{"name": "x", "linear": {"top1": "high"}}', "linear.top1 must be a number, got 'high'"),
    ('{"name": "x", "epochs": 1.5}', "results.epochs must be an integer, got 1.5"),
    ('{"name": "x", "linear": 3}', "linear must be a mapping"),
    ('{"name": "x", "detection": {"voc2007": {"mean": {}}}}', "must be one of voc07, voc0712, coco_det, coco_instseg"),
    ('{"name": "x", "detection": {"voc07": {"mean": {"bbox": {"AP": "n/a"}}}}}', "AP must be"),
    ('{"name": "x", "failed": {"knn": 1}}', "failed.knn must be a string"),
])
def test_a_results_file_of_the_wrong_shape_fails_with_one_line_naming_the_key(tmp_path, text, message):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(ResultsError, match=message) as raised:
        load_results([path])
    assert "\n" not in str(raised.value) and str(path) in str(raised.value)


def test_bad_inputs_fail_clearly(tmp_path):
    with pytest.raises(ResultsError, match="does not exist"):
        load_results([tmp_path / "missing.json"])
    result = run_tool("tools/make_table.py", tmp_path / "missing.json")
    assert result.returncode != 0 and result.stderr.startswith("error: results file")


def test_a_tie_is_not_bold_and_values_compare_as_shown():
    """Every row at 0.0 marks no best value; 10.04 and 10.01 both show as 10.0 and both are the best."""
    rows = [parse_result({"name": n, "epochs": 1, "linear": {"top1": v}, "knn": {"top1": k}})
            for n, v, k in (("a", 0.0, 10.04), ("b", 0.0, 10.01), ("c", 0.04, 9.0))]
    linear = make_tables(rows, "md").split("\n\n")[0].splitlines()[2:]
    assert linear == ["| a | — | — | — | — | 0.0 | **10.0** |", "| b | — | — | — | — | 0.0 | **10.0** |",
                      "| c | — | — | — | — | 0.0 | 9.0 |"]


def test_label_free_columns_show_each_models_diagnostics_and_no_best_mark():
    results = [parse_result({"name": "a", "method": "simsiam", "label_free": {"rankme": 1520.26, "alpha": 0.9123,
                                                                               "alignment": 0.5, "uniformity": -3.4,
                                                                               "samples": 25600}}),
               parse_result({"name": "b", "method": "simsiam", "label_free": {"rankme": 12.0, "samples": 25600}}),
               parse_result({"name": "c", "knn": {"top1": 10.0}})]
    text = make_tables(results, "md").split("\n\n")[-1]
    lines = text.strip().splitlines()
    assert lines[0] == "| name | method | RankMe | alpha-ReQ | alignment | uniformity | images |"
    assert lines[2] == "| a | simsiam | 1520.3 | 0.912 | 0.500 | -3.400 | 25600 |"  # no bold: not a ranking
    assert lines[3] == "| b | simsiam | 12.0 | — | — | — | 25600 |"
    assert lines[4] == "| c | — | — | — | — | — | — |"
    assert "RankMe" not in make_tables(results[2:], "md")  # no label-free results, no such table
    assert json.loads(make_tables(results, "json"))["label_free"][0]["RankMe"] == {"mean": 1520.26, "std": None}
    with pytest.raises(ResultsError, match="uniformity"):
        parse_result({"name": "x", "label_free": {"rankme": 3.0, "uniformity": 0.5}})  # log of a mean of <= 1
