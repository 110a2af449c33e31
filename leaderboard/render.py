"""Comparison tables (Markdown, LaTeX, HTML, CSV) and a PNG bar chart of leaderboard entries.

Layout, the same in every format:
- columns follow the paper: DF-D ACC, ERR, ACER; DF-C ACC; AD ROUGE-L; then AD region F1 and verdict
  consistency, as percentages with two decimals; a measured value carries its 95% bootstrap interval as
  "95.22 [93.10, 97.05]";
- an ability an entry lacks shows "-";
- rows are grouped as vision-only, general MLLMs, tuned models, and sorted within each group by one
  column, best first (higher ACC/ROUGE-L, lower ERR/ACER; missing values last);
- the best value of each column over all rows shown is marked: bold in Markdown/LaTeX/HTML; in CSV,
  whose cells stay plain numbers, a `best` column lists the column keys the row is best in. Ties at
  the shown precision are all marked;
- reported rows (copied from a publication) are labelled "reported" with their citation; they were
  measured on the publication's test set, not on the leaderboard's bench;
- floors (answers made without the image, dfa_bench.floors) come last, in a group of their own, and are
  never marked best or tested.
"""

from __future__ import annotations

import csv
import html
import io
import re
from pathlib import Path

from tabulate import tabulate

from dfa_bench.io import atomic_write_bytes
from dfa_bench.leaderboard.entries import (
    COLUMN_BY_KEY,
    COLUMNS,
    FLOOR_GROUP,
    GROUPS,
    Column,
    format_params,
    metric_ci,
    metric_value,
)
from dfa_bench.leaderboard.significance import MARK, significance
from dfa_bench.leaderboard.significance import NOTE as SIGNIFICANCE_NOTE

FORMATS = ("md", "latex", "html", "csv")
SORT_KEYS = (*COLUMN_BY_KEY, "model", "params")
GROUP_TITLES = {"vision-only": "Vision-only models", "general MLLM": "General MLLMs", "tuned": "Tuned models",
                FLOOR_GROUP: "Floors: answers that never look at the image"}  # fmt: skip
ROW_GROUPS = (*GROUPS, FLOOR_GROUP)  # floors last, as references below the ranked rows
FLOOR_NOTE = (
    "Floors are scored by the same code from answers made without the image (dfa-bench floors): majority class "
    "with the single best constant description, balanced uniform random, and each category's most central "
    "description given the true category. A model at or below a floor on a metric shows no use of the image there; "
    "floors are never marked best."
)


def pct(value: float) -> str:
    return f"{100 * value:.2f}"


def sort_key_of(name: str) -> str:
    """Accept `dfd_acc`, `DF-D ACC`, `dfd-acc`, ... for --sort."""
    key = name.strip().lower().replace("-", "_").replace(" ", "_").replace("df_", "df")
    key = {"rouge_l": "ad_rouge_l", "acer": "dfd_acer", "err": "dfd_err"}.get(key, key)
    if key not in SORT_KEYS:
        raise ValueError(f"unknown sort key {name!r}; use one of {', '.join(SORT_KEYS)}")
    return key


def _row_sort_key(entry: dict, key: str) -> tuple:
    if key == "model":
        return (0, entry["model"].lower())
    if key == "params":  # larger first, unknown last
        return (entry.get("params") is None, -(entry.get("params") or 0), entry["model"].lower())
    column = COLUMN_BY_KEY[key]
    value = metric_value(entry, column)
    if value is None:
        return (1, 0.0, entry["model"].lower())
    return (0, -value if column.higher_is_better else value, entry["model"].lower())


def table_rows(entries: list[dict], sort: str = "dfd_acc") -> list[dict]:
    """Plain rows in display order: group, model, provenance, params, per-column value/ci/best."""
    key = sort_key_of(sort)
    ranked = [e for e in entries if e["provenance"] != "floor"]
    best = {c.key: _best(ranked, c) for c in COLUMNS}
    tests = significance(ranked)
    rows = []
    for group in ROW_GROUPS:
        for entry in sorted((e for e in entries if e["group"] == group), key=lambda e: _row_sort_key(e, key)):
            cells = {}
            for column in COLUMNS:
                value = metric_value(entry, column)
                cells[column.key] = {
                    "value": value,
                    "ci": metric_ci(entry, column),
                    "best": value is not None and entry["provenance"] != "floor" and pct(value) == best[column.key],
                    # against the best measured row of the column: {p, vs, test, significant}, or None
                    "test": tests.get((entry["model"], column.key)),
                }
            rows.append(
                {
                    "group": group,
                    "model": entry["model"],
                    "provenance": entry["provenance"],
                    "citation": entry.get("citation"),
                    "bench": entry["bench"],
                    "params": entry.get("params"),
                    "cells": cells,
                    "run": run_summary(entry),
                    "audit": (entry.get("audit") or {}).get("status"),
                    "parse_failure_rates": {
                        t: (entry["metrics"].get(t) or {}).get("parse_failure_rate") for t in ("dfd", "dfc")
                    },
                }
            )
    return rows


def _weights(identity: dict) -> str:
    """One model argument's identity in a few characters: a weights hash, a hub revision or a name."""
    if identity.get("weights_sha256"):
        text = f"weights sha256 {identity['weights_sha256'][:12]}"
    elif identity.get("hub_id"):
        text = f"{identity['hub_id']}@{(identity.get('revision') or 'unknown revision')[:12]}"
    else:
        text = str(identity.get("name") or identity.get("path") or "?")
    base = identity.get("base")
    return f"{text} (base: {_weights(base)})" if isinstance(base, dict) else text


def run_summary(entry: dict) -> str:
    """A measured entry's package versions and model identity, as one line ("" for reported rows)."""
    if entry["provenance"] != "measured":
        return ""
    versions = entry.get("versions") or {}
    names = (("dfa_bench_run", "dfa-bench"), ("lmms_eval", "lmms-eval"), ("transformers", "transformers"),
             ("torch", "torch"))  # fmt: skip
    parts = [", ".join(f"{label} {versions[key]}" for key, label in names if versions.get(key)) or "versions unknown"]
    identity = entry.get("model_identity") or {}
    parts += [f"{arg}: {_weights(ident)}" for arg, ident in identity.items() if isinstance(ident, dict)]
    for judged in entry.get("judges") or []:  # `dfa-bench judge`, as the submitter ran it (not recomputed)
        score = "-" if judged["score"] is None else pct(judged["score"])
        parts.append(f"AD judge {judged['judge']['model']} (rubric sha256 {judged['judge']['rubric_sha256'][:12]}"
                     f"{'' if judged.get('rubric_current') else ', not the current rubric'}): {score}, not recomputed")  # fmt: skip
    return "; ".join(parts)


def _best(entries: list[dict], column: Column) -> str | None:
    values = [v for v in (metric_value(e, column) for e in entries) if v is not None]
    if not values:
        return None
    return pct(max(values) if column.higher_is_better else min(values))


def _cell_text(cell: dict) -> tuple[str, str]:
    """(value text, CI text) for one cell; "-" when the ability is missing."""
    if cell["value"] is None:
        return "-", ""
    ci = cell["ci"]
    return pct(cell["value"]), f"[{pct(ci[0])}, {pct(ci[1])}]" if ci else ""


def _significant(cell: dict) -> bool:
    return bool(cell.get("test") and cell["test"]["significant"])


def _test_title(cell: dict) -> str:
    test = cell["test"]
    verdict = "significantly different" if test["significant"] else "not significantly different"
    return f"p = {test['p']:.4g} against {test['vs']} ({test['test']}): {verdict}"


def _source(row: dict) -> str:
    """reported, or measured with its audit status: verified, unverified (never audited) or audit failed."""
    if row["provenance"] == "reported":
        return "reported [1]"
    if row["provenance"] == "floor":
        return "floor (no image)"
    return {"verified": "measured, verified", "failed": "measured, audit failed"}.get(
        row["audit"], "measured, unverified"
    )


def _notes(rows: list[dict], benches: str, esc=lambda text: text) -> list[str]:
    """The table's footnotes; `esc` escapes the user-given parts (bench names, citations) for the format."""
    notes = ["Values in %; measured values carry a 95% bootstrap interval in brackets; best per column marked."]
    if any(cell.get("test") for row in rows for cell in row["cells"].values()):
        notes.append(SIGNIFICANCE_NOTE)
    if benches:
        notes.append(f"Measured on {esc(benches)}.")
    if any(r["provenance"] == "floor" for r in rows):
        notes.append(esc(FLOOR_NOTE))
    citations = sorted({r["citation"] for r in rows if r["provenance"] == "reported"})
    for citation in citations:
        notes.append(f"[1] Reported in {esc(citation)}, on the paper's DFA-Bench test set (not the bench above).")
    return notes


def _bench_names(rows: list[dict]) -> str:
    benches = {
        (r["bench"]["name"], r["bench"].get("version"), r["bench"].get("manifest_sha256"))
        for r in rows
        if r["provenance"] != "reported"
    }
    return "; ".join(f"bench {n} v{v} (manifest sha256 {(s or '')[:12]})" for n, v, s in sorted(benches, key=str))


HEADERS = ["Model", "Params", "Source", *(c.label for c in COLUMNS)]
_MD_SPECIAL = re.compile(r"([\\`*_\[\]|#])")


def md_escape(text: str) -> str:
    """User text (model and bench names) as literal Markdown: HTML escaped, as the HTML and LaTeX
    renderers escape theirs, and Markdown's own punctuation backslash-escaped (`|` would split a cell)."""
    return _MD_SPECIAL.sub(r"\\\1", html.escape(text, quote=False))


def render_markdown(rows: list[dict]) -> str:
    parts = ["# DFA-Bench leaderboard", ""]
    for group in ROW_GROUPS:
        body = []
        for row in (r for r in rows if r["group"] == group):
            cells = []
            for column in COLUMNS:
                value, ci = _cell_text(row["cells"][column.key])
                value = f"**{value}**" if row["cells"][column.key]["best"] else value
                value += MARK if _significant(row["cells"][column.key]) else ""
                cells.append(f"{value} {ci}".strip())
            body.append([md_escape(row["model"]), format_params(row["params"]), _source(row), *cells])
        if body:
            table = tabulate(body, headers=HEADERS, tablefmt="github", disable_numparse=True)
            parts += [f"## {GROUP_TITLES[group]}", "", table, ""]
    parts += [f"- {note}" for note in _notes(rows, _bench_names(rows), md_escape)]
    runs = [f"- {md_escape(r['model'])}: {md_escape(r['run'])}" for r in rows if r["run"]]
    if runs:
        parts += ["", "Measured runs (package versions; what answered):", "", *runs]
    return "\n".join(parts) + "\n"


_LATEX_ESCAPES = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_ESCAPES.get(ch, ch) for ch in text)


def render_latex(rows: list[dict]) -> str:
    """A booktabs table with one \\multicolumn header row per group."""
    ncols = len(HEADERS)
    lines = [
        "% DFA-Bench leaderboard (needs \\usepackage{booktabs})",
        "\\begin{table}[t]",
        "\\centering",
        "\\caption{DFA-Bench leaderboard. "
        + latex_escape(" ".join(_notes(rows, _bench_names(rows)))).replace(MARK, "$^\\dagger$")
        + "}",
        "\\begin{tabular}{lll" + "r" * len(COLUMNS) + "}",
        "\\toprule",
        " & ".join(latex_escape(h) for h in HEADERS) + " \\\\",
    ]
    for group in ROW_GROUPS:
        group_rows = [r for r in rows if r["group"] == group]
        if not group_rows:
            continue
        lines += ["\\midrule", f"\\multicolumn{{{ncols}}}{{l}}{{\\textit{{{GROUP_TITLES[group]}}}}} \\\\"]
        for row in group_rows:
            cells = [latex_escape(row["model"]), format_params(row["params"]), latex_escape(_source(row))]
            for column in COLUMNS:
                value, ci = _cell_text(row["cells"][column.key])
                value = f"\\textbf{{{value}}}" if row["cells"][column.key]["best"] else value
                value += "$^\\dagger$" if _significant(row["cells"][column.key]) else ""
                cells.append(f"{value} {{\\scriptsize {ci}}}" if ci else value)
            lines.append(" & ".join(cells) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}", "\\end{table}"]
    return "\n".join(lines) + "\n"


def _csv_text(text: str) -> str:
    """Submitted text that a spreadsheet would run as a formula is quoted with a leading apostrophe."""
    return f"'{text}" if text.startswith(("=", "+", "-", "@")) else text


def render_csv(rows: list[dict]) -> str:
    """One line per row; values and CI bounds as plain percentages, `best` lists the columns it leads."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    header = ["group", "model", "provenance", "citation", "bench", "params"]
    for column in COLUMNS:
        header += [column.key, f"{column.key}_ci_low", f"{column.key}_ci_high"]
    writer.writerow([*header, "dfd_parse_failure_rate", "dfc_parse_failure_rate", "best"])
    for row in rows:
        bench = row["bench"]
        line = [row["group"], _csv_text(row["model"]), row["provenance"], _csv_text(row["citation"] or ""),
                f"{bench['name']} v{bench.get('version')}" if row["provenance"] == "measured" else bench["name"],
                row["params"] or ""]  # fmt: skip
        for column in COLUMNS:
            cell = row["cells"][column.key]
            ci = cell["ci"] or ["", ""]
            line += ["-" if cell["value"] is None else pct(cell["value"]), *(pct(v) if v != "" else "" for v in ci)]
        rates = row["parse_failure_rates"]
        line += [pct(rates[t]) if rates[t] is not None else "" for t in ("dfd", "dfc")]
        line.append(";".join(c.key for c in COLUMNS if row["cells"][c.key]["best"]))
        writer.writerow(line)
    return out.getvalue()


CSS = """
body { font-family: system-ui, sans-serif; margin: 2rem; color: #222; }
table { border-collapse: collapse; }
th, td { padding: .3rem .7rem; border-bottom: 1px solid #ddd; text-align: right; white-space: nowrap; }
th.text, td.text { text-align: left; }
thead th { cursor: pointer; user-select: none; background: #f3f3f3; }
thead th[aria-sort="descending"]::after { content: " \\25BC"; }
thead th[aria-sort="ascending"]::after { content: " \\25B2"; }
tr.group th { text-align: left; background: #e8eef7; cursor: default; }
tr.reported td { color: #555; font-style: italic; }
tr.floor td { color: #777; }
.ci { color: #777; font-size: .8em; }
.best { font-weight: bold; }
"""

# Sorting stays within each group (one <tbody> per group). The first click on a column sorts best
# first (data-better says which way that is); clicking again reverses. Missing values stay last.
_JS = """
document.querySelectorAll('thead th[data-key]').forEach(function (th) {
  th.addEventListener('click', function () {
    var key = th.dataset.key, numeric = th.dataset.type === 'number';
    var bestFirst = th.dataset.better === 'lower' ? 1 : -1;
    var dir = th.getAttribute('aria-sort') === (bestFirst < 0 ? 'descending' : 'ascending') ? -bestFirst : bestFirst;
    document.querySelectorAll('thead th').forEach(function (h) { h.removeAttribute('aria-sort'); });
    th.setAttribute('aria-sort', dir < 0 ? 'descending' : 'ascending');
    document.querySelectorAll('tbody').forEach(function (tbody) {
      var rows = Array.prototype.slice.call(tbody.querySelectorAll('tr.entry'));
      rows.sort(function (a, b) {
        var x = a.dataset[key], y = b.dataset[key];
        if (x === '' && y === '') return 0;
        if (x === '') return 1;
        if (y === '') return -1;
        if (numeric) return dir * (parseFloat(x) - parseFloat(y));
        return dir * x.localeCompare(y);
      });
      rows.forEach(function (row) { tbody.appendChild(row); });
    });
  });
});
"""


def render_html(rows: list[dict]) -> str:
    """One self-contained page: inline CSS and JS, no external resources, client-side sorting."""
    esc = html.escape
    head_cells = [
        '<th class="text" data-key="model" data-type="text" data-better="lower">Model</th>',
        '<th data-key="params" data-type="number" data-better="higher">Params</th>',
        '<th class="text" data-key="source" data-type="text" data-better="lower">Source</th>',
        *(
            f'<th data-key="{c.key}" data-type="number" data-better="{"higher" if c.higher_is_better else "lower"}">'
            f"{esc(c.label)}</th>"
            for c in COLUMNS
        ),
    ]
    bodies = []
    for group in ROW_GROUPS:
        group_rows = [r for r in rows if r["group"] == group]
        if not group_rows:
            continue
        lines = [
            f'<tbody data-group="{esc(group)}">',
            f'<tr class="group"><th colspan="{len(head_cells)}">{esc(GROUP_TITLES[group])}</th></tr>',
        ]
        for row in group_rows:
            data = {"model": row["model"].lower(), "params": row["params"] or "", "source": _source(row)}
            run_title = f' title="{esc(row["run"])}"' if row["run"] else ""
            tds = [
                f'<td class="text model"{run_title}>{esc(row["model"])}</td>',
                f"<td>{esc(format_params(row['params']))}</td>",
                f'<td class="text">{esc(_source(row))}</td>',
            ]
            for column in COLUMNS:
                cell = row["cells"][column.key]
                data[column.key] = "" if cell["value"] is None else repr(cell["value"])
                value, ci = _cell_text(cell)
                css = ' class="best"' if cell["best"] else ""
                ci_html = f' <span class="ci">{esc(ci)}</span>' if ci else ""
                mark = f'<span class="sig">{MARK}</span>' if _significant(cell) else ""
                title = f' title="{esc(_test_title(cell))}"' if cell.get("test") else ""
                tds.append(f"<td{title}><span{css}>{esc(value)}</span>{mark}{ci_html}</td>")
            attrs = " ".join(f'data-{k}="{esc(str(v))}"' for k, v in data.items())
            lines.append(f'<tr class="entry {row["provenance"]}" {attrs}>{"".join(tds)}</tr>')
        lines.append("</tbody>")
        bodies.append("\n".join(lines))
    notes = "".join(f"<li>{esc(n)}</li>" for n in _notes(rows, _bench_names(rows)))
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'">
<title>DFA-Bench leaderboard</title>
<style>{CSS}</style>
</head>
<body>
<h1>DFA-Bench leaderboard</h1>
<p>Click a column header to sort (best first; click again to reverse). Rows stay within their group.</p>
<table id="leaderboard">
<thead><tr>{"".join(head_cells)}</tr></thead>
{chr(10).join(bodies)}
</table>
<ul class="notes">{notes}</ul>
<script>{_JS}</script>
</body>
</html>
"""


def render(entries: list[dict], fmt: str, *, sort: str = "dfd_acc") -> str:
    """The table of `entries` in `fmt` (md, latex, html or csv)."""
    renderers = {"md": render_markdown, "latex": render_latex, "html": render_html, "csv": render_csv}
    if fmt not in renderers:
        raise ValueError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    return renderers[fmt](table_rows(entries, sort))


def render_chart(entries: list[dict], path: Path | str, *, sort: str = "dfd_acc") -> Path:
    """A grouped bar chart of the five headline metrics per model (PNG), CIs as error bars.

    Reported rows are hatched, so they are not mistaken for measurements on the leaderboard's bench.
    """
    import matplotlib

    matplotlib.use("Agg")  # no display; must precede pyplot
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.patches import Patch

    rows = table_rows(entries, sort)
    path = Path(path)
    width = 0.8 / len(COLUMNS)
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(rows) + 2), 4.5), dpi=100)
    colors = plt.get_cmap("tab10").colors
    for i, column in enumerate(COLUMNS):
        offsets = x + (i - (len(COLUMNS) - 1) / 2) * width
        cells = [row["cells"][column.key] for row in rows]
        heights = [100 * c["value"] if c["value"] is not None else 0.0 for c in cells]
        bars = ax.bar(offsets, heights, width, color=colors[i])
        for bar, row in zip(bars, rows):
            if row["provenance"] != "measured":
                bar.set_hatch("//" if row["provenance"] == "reported" else "..")
                bar.set_edgecolor("white")
        with_ci = [(o, h, c["ci"]) for o, h, c in zip(offsets, heights, cells) if c["ci"] and c["value"] is not None]
        if with_ci:
            ax.errorbar(
                [o for o, _, _ in with_ci],
                [h for _, h, _ in with_ci],
                yerr=[
                    [max(0.0, h - 100 * ci[0]) for _, h, ci in with_ci],
                    [max(0.0, 100 * ci[1] - h) for _, h, ci in with_ci],
                ],
                fmt="none",
                ecolor="black",
                capsize=2,
                linewidth=0.8,
            )
    handles = [Patch(facecolor=colors[i], label=c.label) for i, c in enumerate(COLUMNS)]
    handles.append(Patch(facecolor="grey", edgecolor="white", hatch="//", label="reported in the paper"))
    handles.append(Patch(facecolor="grey", edgecolor="white", hatch="..", label="floor (no image)"))
    labels = [f"{r['model']}{' *' if r['provenance'] == 'reported' else ''}" for r in rows]
    ax.set_xticks(x, labels, rotation=35, ha="right", fontsize=8)
    ax.set_ylabel("%")
    ax.set_ylim(0, 100)
    ax.set_title(
        "DFA-Bench headline metrics, % (* hatched: reported in the paper, not measured here; whiskers: 95% CI)",
        fontsize=9,
    )
    ax.legend(handles=handles, fontsize=7, ncol=6, loc="upper center", bbox_to_anchor=(0.5, -0.3))
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")  # keep the rotated labels and the legend below
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
    return path
