"""Measured cells beside the published numbers (evaluations/references.py): what `tools/make_table.py --compare`
and the pipeline's report print.

For every model (results of one name), every pretraining budget it has and every table column (evaluations/
tables.py) with a value, the reference the matching rule finds is shown with the difference measured - published.
A difference is marked when |diff| > 2 x max(measured std, published std), the stds that exist: the measured one
is the sample std of the trials (a record of K trials, or several results of one name and budget); with neither
std the cell is not judged. Each row says the protocol of both sides and whether the measured protocol is the
paper's (exact) or a variant of it (family).
"""
import json
from collections import defaultdict
from dataclasses import dataclass

from eval.tables import Cell, render
from evaluations.references import EXACT, find_reference, row_method, shipped_references
from evaluations.tables import TABLES, table_columns

NOT_JUDGED = "no std"


@dataclass(frozen=True)
class Comparison:
    model: str
    epochs: int | None
    column: str  # the table's column label
    evaluation: str
    metric: str
    measured: float
    measured_std: float | None
    trials: int
    measured_protocol: str
    reference: object  # evaluations.references.Reference
    level: str  # "exact" | "family"
    digits: int = 1

    @property
    def difference(self):
        return self.measured - self.reference.value

    @property
    def tolerance(self):
        """2 x the larger of the stds that exist; None with neither."""
        stds = [s for s in (self.measured_std, self.reference.std) if s is not None]
        return 2 * max(stds) if stds else None

    @property
    def flagged(self):
        return self.tolerance is not None and abs(self.difference) > self.tolerance

    @property
    def verdict(self):
        return NOT_JUDGED if self.tolerance is None else ("!" if self.flagged else "")

    def as_json(self):
        r = self.reference
        return {"model": self.model, "epochs": self.epochs, "column": self.column, "evaluation": self.evaluation,
                "metric": self.metric, "measured": self.measured, "measured_std": self.measured_std,
                "trials": self.trials, "measured_protocol": self.measured_protocol, "published": r.value,
                "published_std": r.std, "published_protocol": r.protocol, "match": self.level,
                "difference": self.difference, "tolerance": self.tolerance, "flagged": self.flagged,
                "reference": r.label, "source": {"citation": r.source.citation, "table": r.source.table,
                                                 "setting": r.source.setting, "url": r.source.url}}


def _measured(records, metric):
    """(mean, std, trials, protocol) of one cell's records, or None (no value, or records of several protocols)."""
    records = [r for r in records if r.metrics.get(metric) is not None]
    if not records or len({r.protocol for r in records}) > 1:
        return None
    if len(records) == 1:
        record = records[0]
        return record.metrics[metric], record.std.get(metric), len(record.trials), record.protocol
    cell = Cell([r.metrics[metric] for r in records])  # several runs: mean and sample std of their means
    return cell.mean, cell.std, len(records), records[0].protocol


def compare(results, references=None):
    """[Comparison] of every measured cell that has a published reference, in table and column order."""
    references, protocols = references or shipped_references()
    groups = defaultdict(list)
    for result in results:
        groups[result.name].append(result)
    comparisons, seen = [], set()
    for name, runs in groups.items():
        budgets = sorted({r.epochs for r in runs}, key=lambda e: (e is None, e or 0))
        for table in TABLES:
            for label, sources, digits, _ in table_columns(table):
                for budget in budgets:
                    at = [r for r in runs if r.epochs == budget]
                    records = []
                    for run in at:  # the first source each run has, as the table's cell
                        source = next(((e, m) for e, m in sources if e in run.evaluations), None)
                        if source:
                            records.append((run.evaluations[source[0]], source))
                    for evaluation, metric in dict.fromkeys(s for _, s in records):
                        if (name, budget, evaluation, metric) in seen:
                            continue
                        seen.add((name, budget, evaluation, metric))
                        measured = _measured([r for r, s in records if s == (evaluation, metric)], metric)
                        if measured is None:
                            continue
                        reference, level = find_reference(references, protocols, evaluation, metric, measured[3],
                                                          row_method(at[0]), budget, at[0].batch_size)
                        if reference is not None:
                            column = label if budget is None or not TABLES[table].per_budget else f"{label} {budget} ep"
                            comparisons.append(Comparison(name, budget, column, evaluation, metric, *measured,
                                                          reference, level, digits))
    return comparisons


def _group_name(cells):
    """The words the column labels of one evaluation share ("VOC 07+12 det"), with the budget."""
    words = [c.column.split() for c in cells]
    common = []
    for group in zip(*words):
        if len(set(group)) > 1:
            break
        common.append(group[0])
    name = " ".join(common) or cells[0].evaluation
    budget = cells[0].epochs
    return name if budget is None or name.endswith(f"{budget} ep") else f"{name} ({budget} ep)"


def summary_lines(comparisons):
    """One line per model: per evaluation and budget, how many compared columns are within 2 std of the published
    value, e.g. "SimSiam: VOC 07+12 det (200 ep): 3 of 3 columns within 2 std of the paper"."""
    by_model = defaultdict(lambda: defaultdict(list))
    for c in comparisons:
        by_model[c.model][(c.evaluation, c.epochs)].append(c)
    lines = []
    for model, groups in by_model.items():
        parts = []
        for cells in groups.values():
            judged = [c for c in cells if c.tolerance is not None]
            off = [c for c in judged if c.flagged]
            if judged:
                text = f"{len(judged) - len(off)} of {len(judged)} columns within 2 std of the paper"
                if off:
                    text += " (off: " + ", ".join(f"{c.column} {c.difference:+.{c.digits}f}" for c in off) + ")"
                if len(judged) < len(cells):
                    text += f", {len(cells) - len(judged)} not judged (no std on either side)"
            else:
                plural = "s" if len(cells) > 1 else ""
                text = f"{len(cells)} column{plural} compared, not judged (no std on either side)"
            if any(c.level != EXACT for c in cells):
                text += " [protocol family only]"
            parts.append(f"{_group_name(cells)}: {text}")
        lines.append(f"{model}: " + "; ".join(parts))
    return lines


COLUMNS = ("model", "column", "measured", "published", "diff", "flag", "measured protocol",
           "published protocol", "match", "reference")


def _number(value, std, digits):
    return f"{value:.{digits}f}" + (f" ± {std:.{digits}f}" if std is not None else "")


def comparison_rows(comparisons):
    rows = []
    for c in comparisons:
        r = c.reference
        rows.append({"model": c.model, "column": c.column, "measured": _number(c.measured, c.measured_std, c.digits)
                     + (f" (n={c.trials})" if c.trials > 1 else ""), "published": _number(r.value, r.std, c.digits),
                     "diff": f"{c.difference:+.{c.digits}f}", "flag": c.verdict,
                     "measured protocol": c.measured_protocol, "published protocol": r.protocol, "match": c.level,
                     "reference": f"{r.label}: {r.source.citation}, {r.source.table}"})
    return rows


def comparison_text(results, fmt="md", references=None):
    """The comparison of `results` with the published numbers in `fmt` (md, csv, latex, json); in Markdown with the
    summary line per model and the protocols of the published side."""
    references = references or shipped_references()
    comparisons = compare(results, references)
    if fmt == "json":
        return json.dumps({"comparison": [c.as_json() for c in comparisons], "summary": summary_lines(comparisons)},
                          indent=2, ensure_ascii=False) + "\n"
    if fmt != "md":
        return render(list(COLUMNS), comparison_rows(comparisons), fmt)
    lines = ["## Compared with the published numbers", ""]
    if not comparisons:
        return "\n".join(lines + ["No measured value has a published reference of its method, epochs and protocol "
                                  "(evaluations/references.py).", ""])
    lines += [render(list(COLUMNS), comparison_rows(comparisons), "md"),
              "flag `!`: |measured - published| > 2 x max(measured trial std, published std); flag `no std`: "
              "neither side has a std, not judged. `family`: the measured protocol is a variant of the paper's "
              "(another batch, cached features, a config with overrides), not the paper's own.", ""]
    lines += [f"- {line}" for line in summary_lines(comparisons)] + [""]
    _, protocols = references
    lines += [f"- `{p}`: {protocols[p].description}" for p in dict.fromkeys(c.reference.protocol
                                                                         for c in comparisons)]
    return "\n".join(lines) + "\n"
