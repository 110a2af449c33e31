"""The paper's Tables I, II and III, regenerated from the shipped reference entries.

The reported rows come out exactly as printed (same rows, same order, same numbers to two decimals).
Measured entries of a leaderboard are appended below them, labelled "(measured)" and followed by a
note naming their bench, since they were not measured on the paper's test set: vision-only and tuned
models go to Table I, general MLLMs and tuned models to Table III, and tuned models that record their
training annotations (`dfa-gpt ablation`, `dfa-bench submit --annotations`) to Table II, in its row order.
"""

from __future__ import annotations

import html
from typing import NamedTuple

from tabulate import tabulate

from dfa_bench.leaderboard.entries import (
    ANNOTATIONS,
    PAPER_CITATION,
    Column,
    metric_ci,
    metric_value,
    reference_entries,
)
from dfa_bench.leaderboard.render import CSS, latex_escape, md_escape, pct
from dfa_bench.metric_specs import specs

# The paper's five columns (the leaderboard has more: dfa_bench.metric_specs marks them `paper`).
COLUMNS = tuple(Column(s.key, s.task, s.name, s.label, s.higher_is_better) for s in specs(paper=True))


class PaperTable(NamedTuple):
    number: str
    caption: str
    first_header: str
    measured_groups: tuple[str, ...]


TABLES = (
    PaperTable("I", "vision-only models (frozen backbone, final projection layer tuned) and DFA-GPT", "Method",
               ("vision-only", "tuned")),
    PaperTable("II", "annotation ablation for DFA-GPT (training annotations used)", "Annotations", ()),
    PaperTable("III", "general MLLMs, zero-shot, and DFA-GPT", "Method", ("general MLLM", "tuned")),
)  # fmt: skip
MEASURED_SUFFIX = " (measured)"


def _values(entry: dict, *, with_ci: bool = False) -> list[str]:
    """The printed cells; a measured row's value keeps its 95% interval, `95.22 [93.10, 97.05]`."""
    cells = []
    for column in COLUMNS:
        value = metric_value(entry, column)
        ci = metric_ci(entry, column) if with_ci else None
        text = "-" if value is None else pct(value)
        cells.append(f"{text} [{pct(ci[0])}, {pct(ci[1])}]" if value is not None and ci else text)
    return cells


def paper_table_rows(number: str, measured: list[dict] = ()) -> tuple[list[str], list[list[str]], list[list[str]]]:
    """(header, reported rows, measured rows) of one table, as the strings printed in each cell."""
    table = next(t for t in TABLES if t.number == number)
    placed = []
    for entry in reference_entries():
        for row in entry.get("paper") or []:
            if row["table"] == number:
                placed.append((row["row"], [row["label"], *_values(entry)]))
    reported = [cells for _, cells in sorted(placed, key=lambda p: p[0])]
    mine = [e for e in measured if e["provenance"] == "measured"]
    if number == "II":  # the ablation's rows: by training annotations, in the table's order
        ablation = sorted((e for e in mine if e.get("annotations")),
                          key=lambda e: (ANNOTATIONS.index(e["annotations"]), e["model"].lower()))  # fmt: skip
        extra = [[f"{e['annotations']}: {e['model']}{MEASURED_SUFFIX}", *_values(e, with_ci=True)] for e in ablation]
    else:
        extra = [
            [f"{e['model']}{MEASURED_SUFFIX}", *_values(e, with_ci=True)]
            for e in sorted(mine, key=lambda e: e["model"].lower())
            if e["group"] in table.measured_groups
        ]
    return [table.first_header, *(c.label for c in COLUMNS)], reported, extra


def _measured_note(measured: list[dict]) -> str:
    benches = sorted({(e["bench"]["name"], str(e["bench"].get("version")), e["bench"]["manifest_sha256"][:12])
                      for e in measured if e["provenance"] == "measured"})  # fmt: skip
    where = "; ".join(f"{n} v{v} (manifest sha256 {s})" for n, v, s in benches)
    return (
        f'Rows marked "{MEASURED_SUFFIX.strip()}" were measured by DFA-Bench on {where}, not on the paper\'s test set.'
    )


def paper_tables_markdown(measured: list[dict] = ()) -> str:
    parts = [f"# The paper's tables (reported in {PAPER_CITATION})", ""]
    for table in TABLES:
        header, reported, extra = paper_table_rows(table.number, measured)
        parts += [f"## Table {table.number}: {table.caption}", ""]
        escaped = [[md_escape(row[0]), *row[1:]] for row in reported + extra]
        parts.append(tabulate(escaped, headers=header, tablefmt="github", disable_numparse=True))
        parts.append("")
        if extra:
            parts += [md_escape(_measured_note(measured)), ""]
    return "\n".join(parts)


def _row_html(cells: list[str], css: str) -> str:
    """One table row; a measured cell's "value [ci]" puts its interval in a span."""
    tds = [f'<td class="text">{html.escape(cells[0])}</td>']
    for cell in cells[1:]:
        value, _, ci = cell.partition(" ")
        tds.append(
            f"<td>{html.escape(value)}" + (f' <span class="ci">{html.escape(ci)}</span>' if ci else "") + "</td>"
        )
    return f'<tr class="{css}">{"".join(tds)}</tr>'


def paper_tables_html(measured: list[dict] = ()) -> str:
    """The three tables on one self-contained page, styled and locked down like the leaderboard's."""
    esc = html.escape
    sections = []
    for table in TABLES:
        header, reported, extra = paper_table_rows(table.number, measured)
        head = "".join(
            f'<th class="text">{esc(h)}</th>' if i == 0 else f"<th>{esc(h)}</th>" for i, h in enumerate(header)
        )
        rows = [_row_html(r, "reported") for r in reported] + [_row_html(r, "measured") for r in extra]
        note = f"<p>{esc(_measured_note(measured))}</p>" if extra else ""
        sections.append(
            f"<h2>Table {table.number}: {esc(table.caption)}</h2>\n<table>\n<thead><tr>{head}</tr></thead>\n"
            f"<tbody>\n{chr(10).join(rows)}\n</tbody>\n</table>\n{note}"
        )
    title = f"The paper's tables (reported in {PAPER_CITATION})"
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<title>{esc(title)}</title>
<style>{CSS}</style>
</head>
<body>
<h1>{esc(title)}</h1>
{chr(10).join(sections)}
</body>
</html>
"""


def paper_tables_latex(measured: list[dict] = ()) -> str:
    """Three booktabs tables; measured rows follow a rule and a header naming their bench."""
    parts = [f"% The paper's tables, reported in {PAPER_CITATION} (needs \\usepackage{{booktabs}})"]
    for table in TABLES:
        header, reported, extra = paper_table_rows(table.number, measured)
        lines = [
            "\\begin{table}[t]",
            "\\centering",
            f"\\caption{{Table {table.number}: {latex_escape(table.caption)}}}",
            "\\begin{tabular}{l" + "r" * len(COLUMNS) + "}",
            "\\toprule",
            " & ".join(latex_escape(h) for h in header) + " \\\\",
            "\\midrule",
            *(" & ".join(latex_escape(c) for c in row) + " \\\\" for row in reported),
        ]
        if extra:
            note = latex_escape(_measured_note(measured))
            lines += ["\\midrule", f"\\multicolumn{{{len(header)}}}{{l}}{{\\textit{{{note}}}}} \\\\"]
            lines += [" & ".join(latex_escape(c) for c in row) + " \\\\" for row in extra]
        lines += ["\\bottomrule", "\\end{tabular}", "\\end{table}", ""]
        parts += lines
    return "\n".join(parts)


def paper_tables(fmt: str = "md", measured: list[dict] = ()) -> str:
    if fmt == "md":
        return paper_tables_markdown(measured)
    if fmt == "latex":
        return paper_tables_latex(measured)
    if fmt == "html":
        return paper_tables_html(measured)
    raise ValueError(f"unknown format {fmt!r}; use md, latex or html")
