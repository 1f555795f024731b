"""The SimSiam paper's two tables from any number of models' results (Chen & He 2021, Tables 4 and 5), and the
label-free diagnostics where a result has them.

Results are eval/results.py's ModelResult records. Several results with the same name and epochs are trials:
their mean +- std is shown. The best value per column is bold, unless every row shares it (a tie, e.g. all 0.0,
marks nothing); a missing value shows as a dash, a failed one as "failed".
"""
import csv
import io
import json
import math
import unicodedata
from collections import defaultdict

from sslt_core.errors import ConfigError

MISSING = "—"
# transfer column group -> (detection result key, detectron2 task, label)
TRANSFER = (("voc07", "bbox", "VOC 07 det"), ("voc0712", "bbox", "VOC 07+12 det"), ("coco_det", "bbox", "COCO det"),
            ("coco_instseg", "segm", "COCO instance seg"))
TRANSFER_METRICS = ("AP50", "AP", "AP75")


class Cell:
    """A table value: mean and std over trials, or missing, or failed with a reason."""

    def __init__(self, values=(), std=None, failed=None, digits=1):
        values = [v for v in values if v is not None]
        self.failed, self.digits = failed, digits
        self.mean = sum(values) / len(values) if values else None
        if std is None and len(values) > 1:
            std = math.sqrt(sum((v - self.mean) ** 2 for v in values) / (len(values) - 1))
        self.std = std if (std and self.mean is not None) else None
        self.best = False

    def text(self, bold=lambda s: s, escape=lambda s: s):
        """The value as shown; `escape` makes it the output format's text, `bold` then marks a best value."""
        if self.failed:
            return escape("failed")
        if self.mean is None:
            return escape(MISSING)
        text = escape(f"{self.mean:.{self.digits}f}" + (f" ± {self.std:.{self.digits}f}" if self.std is not None
                                                        else ""))
        return bold(text) if self.best else text

    def as_json(self):
        if self.failed:
            return {"failed": self.failed}
        return None if self.mean is None else {"mean": self.mean, "std": self.std}


_LATEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                  "±": r"$\pm$", "✓": r"\checkmark{}", MISSING: "--"}
_MARKDOWN_SPECIAL = set("\\|*_`<>[]#")  # backslash-escaped (CommonMark): a name cannot end a cell or start markup


def _one_line(text):
    """Control characters and line or paragraph separators as spaces: a table row stays one line."""
    return "".join(" " if unicodedata.category(char) in ("Cc", "Zl", "Zp") else char for char in text)


def markdown_text(text):
    return "".join("\\" + char if char in _MARKDOWN_SPECIAL else char for char in _one_line(text))


def latex_text(text):  # every LaTeX special character escaped: a model name may hold any of them
    return "".join(_LATEX_ESCAPES.get(char, char) for char in _one_line(text))


def _mark_best(rows, columns):
    """Bold the best value of each column as shown (one decimal); nothing when every row with a value shares it."""
    for column in columns:
        cells = [row[column] for row in rows if row[column].mean is not None and not row[column].failed]
        shown = [round(c.mean, 1) for c in cells]
        if len(cells) > 1 and len(set(shown)) > 1:
            best = max(shown)
            for cell, value in zip(cells, shown):
                cell.best = value == best


def _flag(value):
    return MISSING if value is None else ("✓" if value else "")


def _failed(result, stage):
    return result.failed.get(stage)


def linear_table(results):
    """(columns, rows): method, batch size, negative pairs, momentum encoder, then linear and kNN per budget
    (rows that do not say their pretraining epochs, e.g. an external checkpoint, go under plain linear / kNN)."""
    epochs = {r.epochs for r in results}
    budgets = sorted(e for e in epochs if e is not None) + ([None] if None in epochs else [])
    groups = defaultdict(list)
    for result in results:
        groups[result.name].append(result)

    def column(kind, budget):
        return kind if budget is None else f"{kind} {budget} ep"

    value_columns = [column(kind, b) for b in budgets for kind in ("linear", "kNN")]
    rows = []
    for name, runs in groups.items():
        first = runs[0]
        row = {"name": name, "method": first.method or MISSING,
               "batch size": MISSING if first.batch_size is None else first.batch_size,
               "negative pairs": _flag(first.negative_pairs), "momentum encoder": _flag(first.momentum_encoder)}
        for budget in budgets:
            at = [r for r in runs if r.epochs == budget]
            for kind, key in (("linear", "linear"), ("kNN", "knn")):
                failed = next((_failed(r, key) for r in at if _failed(r, key)), None)
                values = [getattr(r, key).top1 for r in at if getattr(r, key) is not None]
                row[column(kind, budget)] = Cell(values, failed=failed)
        rows.append(row)
    _mark_best(rows, value_columns)
    return ["name", "method", "batch size", "negative pairs", "momentum encoder"] + value_columns, rows


def transfer_table(results):
    """(columns, rows): AP50 / AP / AP75 for VOC07, VOC07+12, COCO detection and COCO instance segmentation."""
    groups = defaultdict(list)
    for result in results:
        groups[result.name].append(result)
    value_columns = [f"{label} {metric}" for _, _, label in TRANSFER for metric in TRANSFER_METRICS]
    rows = []
    for name, runs in groups.items():
        best_budget = max(r.epochs or 0 for r in runs)
        runs = [r for r in runs if (r.epochs or 0) == best_budget]
        row = {"name": name}
        for key, task, label in TRANSFER:
            metrics = [r.detection[key] for r in runs if key in r.detection]
            failed = next((_failed(r, key) for r in runs if _failed(r, key)), None)
            for metric in TRANSFER_METRICS:
                if len(metrics) == 1:  # one run of K trials: its mean and std
                    row[f"{label} {metric}"] = Cell([metrics[0].mean.get(task, {}).get(metric)],
                                                    std=metrics[0].std.get(task, {}).get(metric), failed=failed)
                else:
                    row[f"{label} {metric}"] = Cell([m.mean.get(task, {}).get(metric) for m in metrics],
                                                    failed=failed)
        rows.append(row)
    _mark_best(rows, value_columns)
    return ["name"] + value_columns, rows


# label-free column -> (LabelFree field, decimals); no best value is marked: RankMe ranks runs of one method only,
# and a higher alpha or a lower uniformity is not better in itself (Garrido et al. 2023; Agrawal et al. 2022).
LABEL_FREE = (("RankMe", "rankme", 1), ("alpha-ReQ", "alpha", 3), ("alignment", "alignment", 3),
              ("uniformity", "uniformity", 3), ("images", "samples", 0))


def label_free_table(results):
    """(columns, rows): the label-free diagnostics of each model (its largest pretraining budget)."""
    groups = defaultdict(list)
    for result in results:
        groups[result.name].append(result)
    rows = []
    for name, runs in groups.items():
        best_budget = max(r.epochs or 0 for r in runs)
        records = [r.label_free for r in runs if (r.epochs or 0) == best_budget and r.label_free is not None]
        failed = next((_failed(r, "label_free") for r in runs if _failed(r, "label_free")), None)
        row = {"name": name, "method": runs[0].method or MISSING}
        for label, key, digits in LABEL_FREE:
            row[label] = Cell([getattr(r, key) for r in records], failed=failed, digits=digits)
        rows.append(row)
    return ["name", "method"] + [label for label, _, _ in LABEL_FREE], rows


def _cell_text(value, bold=lambda s: s, escape=lambda s: s):
    return value.text(bold, escape) if isinstance(value, Cell) else escape(str(value))


def render(columns, rows, fmt):
    if fmt == "md":
        def cells(texts):
            return "| " + " | ".join(texts) + " |"

        lines = [cells(markdown_text(c) for c in columns), "|" + "---|" * len(columns)]
        lines += [cells(_cell_text(row[c], lambda s: f"**{s}**", markdown_text) for c in columns) for row in rows]
        return "\n".join(lines) + "\n"
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(columns)
        for row in rows:
            writer.writerow([_cell_text(row[c]).replace(MISSING, "") for c in columns])
        return buffer.getvalue()
    if fmt == "latex":
        lines = [r"\begin{tabular}{l" + "c" * (len(columns) - 1) + "}", r"\toprule",
                 " & ".join(latex_text(c) for c in columns) + r" \\", r"\midrule"]
        lines += [" & ".join(_cell_text(row[c], lambda s: rf"\textbf{{{s}}}", latex_text) for c in columns) + r" \\"
                  for row in rows]
        return "\n".join(lines + [r"\bottomrule", r"\end{tabular}"]) + "\n"
    if fmt == "json":
        return json.dumps([{c: row[c].as_json() if isinstance(row[c], Cell) else row[c] for c in columns}
                           for row in rows], indent=2, ensure_ascii=False) + "\n"
    raise ConfigError(f"unknown format '{fmt}'; choose md, csv, latex or json")


def make_tables(results, fmt="md"):
    """Both tables rendered in `fmt`, the linear-classification table first."""
    tables = {"linear": linear_table(results), "transfer": transfer_table(results)}
    if any(r.label_free is not None or "label_free" in r.failed for r in results):
        tables["label_free"] = label_free_table(results)
    if fmt == "json":
        return json.dumps({name: json.loads(render(*table, "json")) for name, table in tables.items()}, indent=2,
                          ensure_ascii=False) + "\n"
    return "\n".join(render(*table, fmt) for table in tables.values())
