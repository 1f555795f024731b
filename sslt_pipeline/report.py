"""The pipeline's report: Markdown with the two tables, the stage log and plots (PNG, matplotlib's object API:
no pyplot and no global backend to set)."""
import json
from pathlib import Path

from matplotlib.figure import Figure

from eval.tables import render
from evaluations.comparison import comparison_text
from evaluations.registry import EVALUATIONS
from evaluations.tables import TABLES, build_table, protocol_note, selected_on_test, shown_tables
from sslt_core.atomic import atomic_path, write_bytes_atomic
from sslt_core.errors import ResultsError


def epoch_curves(pretrain_dir):
    """Per-epoch records of a pretraining run's metrics.jsonl."""
    path = Path(pretrain_dir) / "metrics.jsonl"
    if not path.is_file():
        return []
    lines = [r for r in _records(path) if "output_std_reference" in r]
    for number, record in enumerate(lines, 1):
        _require(record, path, number, epoch=int, loss=float, output_std=float, output_std_reference=float)
    by_epoch = {r["epoch"]: r for r in lines}  # a resumed run may repeat one
    return [by_epoch[e] for e in sorted(by_epoch)]


def _records(path):
    """The JSON objects of a .jsonl file the run wrote; ResultsError naming the file and line if one is not."""
    records = []
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):
            record = None
        if not isinstance(record, dict):
            raise ResultsError(f"{path} line {number} is not a JSON record of the run; remove the line or run the "
                               "stage again")
        records.append(record)
    return records


def _require(record, path, number, **kinds):
    for key, kind in kinds.items():
        value = record.get(key)
        good = isinstance(value, (int, float)) and not isinstance(value, bool) if kind is float else (
            isinstance(value, kind) and not isinstance(value, bool))
        if not good:
            raise ResultsError(f"{path}: record {number} has {key} {value!r}, not a {kind.__name__}; remove the "
                               "record or run the stage again")


def _save(figure, path):
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=100, format="png")


def plot_pretraining(curves, path):
    """Loss, output std against 1/sqrt(d) and kNN top-1 per epoch, one line per method."""
    figure = Figure(figsize=(15, 4))
    axes = figure.subplots(1, 3)
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
    _save(figure, path)


def epoch_spectra(pretrain_dir):
    """{epoch: {"backbone": [...], "projector": [...]}} from a pretraining run's spectra.jsonl."""
    path = Path(pretrain_dir) / "spectra.jsonl"
    if not path.is_file():
        return {}
    lines = _records(path)
    for number, record in enumerate(lines, 1):
        _require(record, path, number, epoch=int, backbone=list, projector=list)
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in record["projector"]):
            raise ResultsError(f"{path}: record {number} has a projector spectrum that is not a list of numbers; "
                               "remove the record or run the stage again")
    return {r["epoch"]: r for r in lines}


LABEL_FREE_CURVES = (("diag_backbone_rankme", "RankMe, backbone"), ("diag_projector_rankme", "RankMe, projector"),
                     ("diag_alignment", "alignment (lower: closer views)"),
                     ("diag_uniformity", "uniformity (lower: more uniform)"))


def plot_label_free(curves, spectra, path):
    """The label-free monitors per epoch (one line per method), and each method's covariance spectra of the
    projector output, one line per monitored epoch on a log scale (Jing et al. 2022, Fig. 2)."""
    figure = Figure(figsize=(4 * len(LABEL_FREE_CURVES), 8))
    axes = figure.subplots(2, len(LABEL_FREE_CURVES))
    for name, records in curves.items():
        for axis, (key, _) in zip(axes[0], LABEL_FREE_CURVES):
            points = [(r["epoch"], r[key]) for r in records if r.get(key) is not None]
            if points:
                axis.plot(*zip(*points), marker="o", label=name)
    for axis, (_, title) in zip(axes[0], LABEL_FREE_CURVES):
        axis.set_title(title)
        axis.set_xlabel("epoch")
        axis.legend(fontsize=8)
    for axis, (name, by_epoch) in zip(axes[1], list(spectra.items())[:len(LABEL_FREE_CURVES)]):
        for epoch, record in sorted(by_epoch.items()):
            values = [v for v in record["projector"] if v > 0]
            axis.semilogy(range(1, len(values) + 1), values, label=f"epoch {epoch}")
        axis.set_title(f"{name}: projector spectrum")
        axis.set_xlabel("singular value rank")
        axis.legend(fontsize=7)
    for axis in axes[1][len(spectra):]:
        axis.set_visible(False)
    _save(figure, path)


def transfer_bars():
    """(label, evaluation, metric) of every registered evaluation's bars, in registration order."""
    return [(label, name, metric) for name, e in EVALUATIONS.items() for label, metric in e.plot]


def _bar_value(result, name, metric):
    record = result.evaluations.get(name)
    return record.metrics.get(metric) if record else None


def plot_transfer(results, path):
    """Every model's transfer results side by side (missing or failed values drawn as 0)."""
    figure = Figure(figsize=(12, 4))
    axis = figure.subplots()
    width = 0.8 / max(len(results), 1)
    bars = [bar for bar in transfer_bars() if any(bar[1] in r.evaluations for r in results)]
    for i, result in enumerate(results):
        values = [_bar_value(result, name, metric) or 0.0 for _, name, metric in bars]
        axis.bar([m + i * width for m in range(len(bars))], values, width, label=result.name)
    axis.set_xticks([m + width * (len(results) - 1) / 2 for m in range(len(bars))])
    axis.set_xticklabels([label for label, _, _ in bars])
    axis.set_ylabel("%")
    axis.set_title("transfer results (missing or failed: 0)")
    axis.legend(fontsize=8)
    _save(figure, path)


def plot_low_shot(results, path, evaluation="voc07_lowshot"):
    """The VOC07 low-shot curves (Goyal et al. 2019, Fig. 5): mAP against k (metrics "<layer>/k<k>"), mean +- std
    over the samples, one line per model and layer; False (nothing drawn) where no result has them."""
    figure = Figure(figsize=(6, 4))
    axis, drawn = figure.subplots(), False
    for result in results:
        record = result.evaluations.get(evaluation)
        curves = {}
        for key, mean in (record.metrics if record else {}).items():
            layer, _, k = key.partition("/k")
            if mean is not None and k.isdigit():
                curves.setdefault(layer, []).append((int(k), mean, record.std.get(key) or 0.0))
        for layer, points in curves.items():
            ks, means, stds = zip(*sorted(points))
            axis.errorbar(ks, means, yerr=stds, marker="o", capsize=3, label=f"{result.name} {layer}")
            drawn = True
    if drawn:
        axis.set_xscale("log", base=2)
        axis.set(xlabel="positives per class (k)", ylabel="test mAP (%)", title="VOC07 low-shot SVMs")
        axis.legend(fontsize=8)
        _save(figure, path)
    return drawn


def write_report(output_dir, config, models, entries, results):
    """OUTPUT/report.md and OUTPUT/plots/*.png."""
    output_dir = Path(output_dir)
    curves = {m.name: epoch_curves(output_dir / m.pretrain) for m in models if m.pretrain}
    curves = {k: v for k, v in curves.items() if v}
    if curves:
        plot_pretraining(curves, output_dir / "plots" / "pretraining.png")
    spectra = {m.name: epoch_spectra(output_dir / m.pretrain) for m in models if m.pretrain}
    spectra = {k: v for k, v in spectra.items() if v}
    if spectra:
        plot_label_free(curves, spectra, output_dir / "plots" / "label_free.png")
    plot_transfer(results, output_dir / "plots" / "transfer.png")
    lines = ["# Pretrain -> transfer report", "", f"Data: `{config.data_root}`", ""]
    for name in shown_tables(results):
        columns, rows, protocols = build_table(name, results)
        lines += [f"## {TABLES[name].title}", "", render(columns, rows, "md"),
                  protocol_note(protocols, selected_on_test(name, results))]
    lines += [comparison_text(results, "md")]  # beside the published numbers, a summary line per model
    if curves:
        lines += ["## Pretraining", "", "![pretraining](plots/pretraining.png)", ""]
    if spectra:
        lines += ["## Label-free monitors", "", "RankMe, alignment and uniformity per epoch on a fixed probe set, and "
                  "the projector's covariance spectrum (a cliff: dimensional collapse). RankMe ranks runs of one "
                  "method, not methods against each other.", "", "![label-free](plots/label_free.png)", ""]
    if plot_low_shot(results, output_dir / "plots" / "low_shot.png"):
        lines += ["## VOC07 low-shot SVMs", "", "![low-shot](plots/low_shot.png)", ""]
    lines += ["## Transfer, side by side", "", "![transfer](plots/transfer.png)", "", "## Stages", "",
              "| stage | status | seconds | note |", "|---|---|---|---|"]
    for stage_id, entry in entries.items():
        lines.append(f"| {stage_id} | {entry['status']} | {entry.get('seconds', '')} | {entry.get('reason', '')} |")
    write_bytes_atomic(output_dir / "report.md", ("\n".join(lines) + "\n").encode())
