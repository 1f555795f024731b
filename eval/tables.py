"""Table cells and their rendering as Markdown, CSV, LaTeX or JSON (which tables exist, and their columns, is
evaluations/tables.py's, from the registry).

The best value per column is bold, unless every row shares it (a tie, e.g. all 0.0, marks nothing); a missing
value shows as a dash, a failed one as "failed".
"""
import csv
import io
import json
import math
import unicodedata

from sslt_core.errors import ConfigError

MISSING = "—"


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


def mark_best(rows, columns):
    """Bold the best value of each column as shown (one decimal); nothing when every row with a value shares it."""
    for column in columns:
        cells = [row[column] for row in rows if row[column].mean is not None and not row[column].failed]
        shown = [round(c.mean, 1) for c in cells]
        if len(cells) > 1 and len(set(shown)) > 1:
            best = max(shown)
            for cell, value in zip(cells, shown):
                cell.best = value == best


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
