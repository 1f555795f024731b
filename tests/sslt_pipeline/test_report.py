"""The report: both tables, a stage log and two PNG plots that decode; per-epoch curves from a resumed run's log."""
import json
from types import SimpleNamespace

from PIL import Image

from eval.tables import render
from evaluations.results import parse_result
from evaluations.tables import build_table
from sslt_pipeline.report import epoch_curves, write_report


def test_epoch_curves_keep_one_record_per_epoch_of_a_resumed_run(tmp_path):
    lines = [{"step": 1, "epoch": 1, "loss": 9.0, "lr": 0.1, "output_std": 0.1},
             {"step": 2, "epoch": 1, "loss": 5.0, "output_std": 0.05, "output_std_reference": 0.04},
             {"step": 2, "epoch": 1, "loss": 4.0, "output_std": 0.06, "output_std_reference": 0.04},  # logged again
             {"step": 4, "epoch": 2, "loss": 3.0, "output_std": 0.07, "output_std_reference": 0.04}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert [(r["epoch"], r["loss"]) for r in epoch_curves(tmp_path)] == [(1, 4.0), (2, 3.0)]
    assert epoch_curves(tmp_path / "none") == []


def test_the_report_holds_the_tables_the_stages_and_decodable_plots(tmp_path):
    (tmp_path / "a" / "pretrain").mkdir(parents=True)
    (tmp_path / "a" / "pretrain" / "metrics.jsonl").write_text(json.dumps(
        {"step": 2, "epoch": 1, "loss": 1.0, "output_std": 0.05, "output_std_reference": 0.04,
         "knn_top1": 12.0, "diag_backbone_rankme": 40.0, "diag_projector_rankme": 9.0, "diag_alignment": 0.4,
         "diag_uniformity": -2.0}) + "\n")
    (tmp_path / "a" / "pretrain" / "spectra.jsonl").write_text(json.dumps(
        {"step": 2, "epoch": 1, "backbone": [3.0, 2.0, 1.0], "projector": [2.0, 1.0, 0.0]}) + "\n")
    results = [parse_result({"name": "a", "epochs": 1, "knn": {"top1": 12.0}, "linear": {"top1": 20.0},
                             "detection": {"voc07": {"mean": {"bbox": {"AP50": 30.0, "AP": 10.0, "AP75": 5.0}}}}}),
               parse_result({"name": "random init", "epochs": 0, "failed": {"knn": "broke"}})]
    models = [SimpleNamespace(name="a", pretrain="a/pretrain"), SimpleNamespace(name="random init", pretrain=None)]
    entries = {"a/pretrain": {"status": "done", "seconds": 3.5}, "random_init/knn": {"status": "failed",
                                                                                    "reason": "broke"}}
    write_report(tmp_path, SimpleNamespace(data_root="data/demo"), models, entries, results)
    report = (tmp_path / "report.md").read_text()
    assert render(*build_table("linear", results)[:2], "md") in report
    assert "| a/pretrain | done | 3.5 |  |" in report and "| random_init/knn | failed |  | broke |" in report
    assert "![label-free](plots/label_free.png)" in report
    for name in ("pretraining", "transfer", "label_free"):
        with Image.open(tmp_path / "plots" / f"{name}.png") as image:
            assert image.format == "PNG" and image.width >= 1000
