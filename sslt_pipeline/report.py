"""The pipeline's report: Markdown with the two tables, the stage log and plots (PNG, matplotlib)."""
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from eval.tables import linear_table, render, transfer_table  # noqa: E402
from sslt_core.atomic import write_bytes_atomic  # noqa: E402


def epoch_curves(pretrain_dir):
    """Per-epoch records of a pretraining run's metrics.jsonl."""
    path = Path(pretrain_dir) / "metrics.jsonl"
    if not path.is_file():
        return []
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    by_epoch = {r["epoch"]: r for r in lines if "output_std_reference" in r}  # a resumed run may repeat one
    return [by_epoch[e] for e in sorted(by_epoch)]


def plot_pretraining(curves, path):
    figure, axes = plt.subplots(1, 3, figsize=(15, 4))
    for name, records in curves.items():
        epochs = [r["epoch"] for r in records]
        axes[0].plot(epochs, [r["loss"] for r in records], marker="o", label=name)
        line, = axes[1].plot(epochs, [r["output_std"] for r in records], marker="o", label=name)
        axes[1].axhline(records[-1]["output_std_reference"], color=line.get_color(), linestyle=":", linewidth=1)
        knn = [(r["epoch"], r["knn_top1"]) for r in records if r.get("knn_top1") is not None]
        if knn:
            axes[2].plot(*zip(*knn), marker="o", label=name)
    for axis, title in zip(axes, ("pretraining loss", "output std (dotted: 1/sqrt(d))", "kNN top-1 (%)")):
        axis.set_title(title)
        axis.set_xlabel("epoch")
        axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def plot_transfer(results, path):
    metrics = [("kNN top-1", lambda r: (r.get("knn") or {}).get("top1"))]
    metrics.append(("linear top-1", lambda r: (r.get("linear") or {}).get("top1")))
    for key, task, label in (("voc07", "bbox", "VOC07 AP50"), ("coco_instseg", "bbox", "COCO box AP"),
                             ("coco_instseg", "segm", "COCO mask AP")):
        metric = "AP50" if key == "voc07" else "AP"
        metrics.append((label, lambda r, key=key, task=task, metric=metric:
                        ((r.get("detection") or {}).get(key) or {}).get("mean", {}).get(task, {}).get(metric)))
    figure, axis = plt.subplots(figsize=(12, 4))
    width = 0.8 / max(len(results), 1)
    for i, result in enumerate(results):
        values = [get(result) or 0.0 for _, get in metrics]
        axis.bar([m + i * width for m in range(len(metrics))], values, width, label=result["name"])
    axis.set_xticks([m + width * (len(results) - 1) / 2 for m in range(len(metrics))])
    axis.set_xticklabels([label for label, _ in metrics])
    axis.set_ylabel("%")
    axis.set_title("transfer results (missing or failed: 0)")
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def write_report(output_dir, config, models, entries, results):
    output_dir = Path(output_dir)
    plots = output_dir / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    curves = {m["name"]: epoch_curves(output_dir / m["pretrain"]) for m in models if m["pretrain"]}
    curves = {k: v for k, v in curves.items() if v}
    if curves:
        plot_pretraining(curves, plots / "pretraining.png")
    plot_transfer(results, plots / "transfer.png")
    lines = ["# Pretrain -> transfer report", "", f"Data: `{config['data_root']}`", "",
             "## Linear classification (SimSiam Table 4)", "", render(*linear_table(results), "md"),
             "## Transfer (SimSiam Table 5)", "", render(*transfer_table(results), "md")]
    if curves:
        lines += ["## Pretraining", "", "![pretraining](plots/pretraining.png)", ""]
    lines += ["## Transfer, side by side", "", "![transfer](plots/transfer.png)", "", "## Stages", "",
              "| stage | status | seconds | note |", "|---|---|---|---|"]
    for stage_id, entry in entries.items():
        lines.append(f"| {stage_id} | {entry['status']} | {entry.get('seconds', '')} | {entry.get('reason', '')} |")
    write_bytes_atomic(output_dir / "report.md", ("\n".join(lines) + "\n").encode())
