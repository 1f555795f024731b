"""The two tables rendered from a fixture, and bad inputs."""
import json
from pathlib import Path

import pytest

from eval.tables import load_results, make_tables
from sslt_core.errors import DatasetError
from tests.conftest import run_tool

FIXTURES = Path(__file__).parent / "fixtures"
RESULTS = [FIXTURES / n for n in ("simsiam.json", "mocov2_a.json", "mocov2_b.json", "random.json")]

EXPECTED_MD = """\
| name | method | batch size | negative pairs | momentum encoder | linear 100 ep | kNN 100 ep | linear | kNN |
|---|---|---|---|---|---|---|---|---|
| SimSiam | simsiam | 256 |  |  | **68.1** | **60.5** | — | — |
| MoCo v2 | mocov2 | 256 | ✓ | ✓ | 67.2 ± 0.3 | 58.2 ± 0.3 | — | — |
| random init | — | — | — | — | — | — | **5.0** | — |

| name | VOC 07 det AP50 | VOC 07 det AP | VOC 07 det AP75 | VOC 07+12 det AP50 | VOC 07+12 det AP | VOC 07+12 det AP75 \
| COCO det AP50 | COCO det AP | COCO det AP75 | COCO instance seg AP50 | COCO instance seg AP | COCO instance seg AP75 |
|---|---|---|---|---|---|---|---|---|---|---|---|---|
| SimSiam | **77.3 ± 0.2** | 48.5 ± 0.1 | **52.5 ± 0.3** | — | — | — | — | — | — | **56.0** | **34.4** | **36.7** |
| MoCo v2 | 77.0 | **48.6** | 52.0 | — | — | — | — | — | — | failed | failed | failed |
| random init | — | — | — | — | — | — | — | — | — | — | — | — |
"""


def test_markdown_tables_match_the_expected_text():
    assert make_tables(load_results(RESULTS), "md") == EXPECTED_MD.replace("\\\n", "")


def test_a_row_without_epochs_goes_under_plain_linear_and_knn_columns():
    # 'random init' does not say its pretraining epochs: its accuracy belongs to no budget column
    assert "| random init | — | — | — | — | — | — | **5.0** | — |" in make_tables(load_results(RESULTS), "md")


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


def test_bad_inputs_fail_clearly(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        load_results([tmp_path / "missing.json"])
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(DatasetError, match="not valid JSON"):
        load_results([tmp_path / "broken.json"])
    (tmp_path / "anonymous.json").write_text('{"linear": {"top1": 1}}')
    with pytest.raises(DatasetError, match="has no 'name'"):
        load_results([tmp_path / "anonymous.json"])
    result = run_tool("tools/make_table.py", tmp_path / "missing.json")
    assert result.returncode != 0 and result.stderr.startswith("error: results file")
