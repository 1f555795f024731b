"""The tables, from the registry: every column an evaluation registers (evaluations/registry.py's Column) goes
into its table, in the order the evaluations are registered; a column several evaluations fill (COCO box AP:
Mask R-CNN's or else Faster R-CNN's) takes the first one a row has.

- linear (SimSiam Table 4): per pretraining budget, the linear probe and kNN top-1; rows that do not say their
  epochs (an external checkpoint) go under plain "linear" / "kNN".
- transfer (SimSiam Table 5): AP50 / AP / AP75 of each detection task, for each model's largest budget.
- label_free: the label-free diagnostics (shown when a result has them).
- semisup (SimCLR Table 7): 1% and 10% top-1 / top-5 after fine-tuning, for each model's largest budget.
- voc07_svm, voc07_lowshot (Goyal et al. 2019): VOC07 SVM mAP per layer, and the low-shot curve (mean +- std over
  the samples per k); shown when a result has them.
- linear_transfer: one column per dataset of the 12-dataset linear transfer and their mean (shown when a result
  has them).

Several results with the same name and epochs are trials: their mean +- std is shown; one result of K trials
shows its own mean +- std. Each column says the protocol of its numbers; two records of different protocols
in one column are refused (an error naming both) unless `mix_protocols`.
"""
import json
from collections import defaultdict
from dataclasses import dataclass

from eval.tables import MISSING, Cell, mark_best, markdown_text, render
from evaluations.registry import EVALUATIONS
from evaluations.results import UNKNOWN_PROTOCOL
from sslt_core.errors import ResultsError


@dataclass(frozen=True)
class Table:
    title: str
    traits: tuple  # the row's columns before its values
    per_budget: bool  # a column per pretraining budget (else each model's largest budget)
    always: bool  # shown even when no result has a value for it


TABLES = {
    "linear": Table("Linear classification (SimSiam Table 4)",
                    ("name", "method", "batch size", "negative pairs", "momentum encoder"), True, True),
    "transfer": Table("Transfer (SimSiam Table 5)", ("name",), False, True),
    "label_free": Table("Label-free diagnostics", ("name", "method"), False, False),
    "semisup": Table("Semi-supervised fine-tuning on 1% / 10% of ImageNet labels (SimCLR Table 7)", ("name", "method"),
                     False, False),
    "voc07_svm": Table("VOC07 linear SVM mAP per layer (Goyal et al. 2019)", ("name",), False, False),
    "voc07_lowshot": Table("VOC07 low-shot SVM mAP, k positives per class (Goyal et al. 2019)", ("name",), False,
                           False),
    "linear_transfer": Table("Linear transfer, 12 datasets (SimCLR Table 8, BYOL Table 3)", ("name",), False, False),
}


def table_columns(table):
    """[(label, [(evaluation, metric), ...], digits, best)] of a table, in registration order."""
    columns = {}
    for evaluation in EVALUATIONS.values():
        for column in evaluation.columns:
            if column.table == table:
                entry = columns.setdefault(column.label, (column.label, [], column.digits, column.best))
                entry[1].append((evaluation.name, column.metric))
    return list(columns.values())


def _flag(value):
    return MISSING if value is None else ("✓" if value else "")


def _traits(first, table):
    values = {"name": first.name, "method": first.method or MISSING,
              "batch size": MISSING if first.batch_size is None else first.batch_size,
              "negative pairs": _flag(first.negative_pairs), "momentum encoder": _flag(first.momentum_encoder)}
    return {key: values[key] for key in TABLES[table].traits}


def _cell(runs, sources, digits, protocols, label):
    """The cell of `label` over `runs` (results of one model and budget): the first source each run has."""
    records, failed = [], None
    for run in runs:
        for name, metric in sources:
            if name in run.evaluations:
                records.append((run.evaluations[name], metric))
                break
            if name in run.failed and failed is None:
                failed = run.failed[name]
    for record, metric in records:
        if record.metrics.get(metric) is not None:
            protocols[label].add(record.protocol)
    if len(records) == 1:  # one run of K trials: its mean and std
        record, metric = records[0]
        return Cell([record.metrics.get(metric)], std=record.std.get(metric), failed=failed, digits=digits)
    return Cell([record.metrics.get(metric) for record, metric in records], failed=failed, digits=digits)


def build_table(table, results):
    """(columns, rows, {column: set of protocols}) of table `table` over `results`."""
    spec, columns = TABLES[table], table_columns(table)
    groups = defaultdict(list)
    for result in results:
        groups[result.name].append(result)
    protocols, rows, value_columns, best_columns = defaultdict(set), [], [], []
    if spec.per_budget:
        epochs = {r.epochs for r in results}
        budgets = sorted(e for e in epochs if e is not None) + ([None] if None in epochs else [])
        labelled = [(b, c, c[0] if b is None else f"{c[0]} {b} ep") for b in budgets for c in columns]
    else:
        labelled = [(None, c, c[0]) for c in columns]
    for runs in groups.values():
        row = _traits(runs[0], table)
        best_budget = max(r.epochs or 0 for r in runs)
        for budget, (_, sources, digits, _), label in labelled:
            at = [r for r in runs if r.epochs == budget] if spec.per_budget else [
                r for r in runs if (r.epochs or 0) == best_budget]
            row[label] = _cell(at, sources, digits, protocols, label)
        rows.append(row)
    for _, (_, _, _, best), label in labelled:
        value_columns.append(label)
        if best:
            best_columns.append(label)
    mark_best(rows, best_columns)
    return list(spec.traits) + value_columns, rows, dict(protocols)


def check_protocols(table, protocols):
    mixed = {column: sorted(ids) for column, ids in protocols.items() if len(ids) > 1}
    if mixed:
        column, ids = next(iter(mixed.items()))
        raise ResultsError(f"table {table}: column '{column}' holds results of {len(ids)} protocols ({'; '.join(ids)})"
                           "; compare like with like (tables of one protocol each), or pass --mix-protocols")


def shown_tables(results):
    """The names of the tables to show: those always shown, and the others where a result has a value."""
    names = []
    for name, spec in TABLES.items():
        filled = {e for _, sources, _, _ in table_columns(name) for e, _ in sources}
        if spec.always or any(filled & (set(r.evaluations) | set(r.failed)) for r in results):
            names.append(name)
    return names


def protocol_note(protocols, selected=()):
    """One Markdown line naming each column's protocol (none for records of the earlier, unrecorded layout)."""
    known = {c: ids for c, ids in protocols.items() if ids - {UNKNOWN_PROTOCOL}}
    if not known:
        return ""
    grouped = {}  # the columns of one set of protocols together
    for column, ids in known.items():
        grouped.setdefault(tuple(sorted(ids)), []).append(markdown_text(column))
    parts = [f"{', '.join(columns)}: {', '.join(f'`{i}`' for i in ids)}" for ids, columns in grouped.items()]
    line = "Protocols: " + "; ".join(parts) + "."
    if selected:
        line += f" Selected on the test split (an optimistic number): {', '.join(sorted(selected))}."
    return line + "\n"


def selected_on_test(table, results):
    filled = {e for _, sources, _, _ in table_columns(table) for e, _ in sources}
    return {name for r in results for name, rec in r.evaluations.items() if name in filled and rec.selects_on_test}


def make_tables(results, fmt="md", mix_protocols=False):
    """Every shown table rendered in `fmt`, the linear-classification table first; each Markdown table followed by
    the protocol of each column."""
    tables = {}
    for name in shown_tables(results):
        columns, rows, protocols = build_table(name, results)
        if not mix_protocols:
            check_protocols(name, protocols)
        tables[name] = (columns, rows, protocols)
    if fmt == "json":
        data = {name: json.loads(render(c, r, "json")) for name, (c, r, _) in tables.items()}
        known = {name: {c: sorted(ids) for c, ids in p.items() if ids - {UNKNOWN_PROTOCOL}}
                 for name, (_, _, p) in tables.items()}
        if any(known.values()):
            data["protocols"] = {name: value for name, value in known.items() if value}
        return json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    parts = []
    for name, (columns, rows, protocols) in tables.items():
        text = render(columns, rows, fmt)
        if fmt == "md":
            note = protocol_note(protocols, selected_on_test(name, results))
            text += ("\n" + note) if note else ""
        parts.append(text)
    return "\n".join(parts)
