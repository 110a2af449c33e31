"""The paper's Tables I, II and III regenerate exactly from the shipped reference entries.

Checked cell by cell against (1) a copy of the tables kept here, so the test means something wherever
the reference file is, (2) the shipped reference data, and (3) ../shared/reference/paper.md when present.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from leaderboard_fixtures import fake_entry
from typer.testing import CliRunner

from dfa_bench.io import write_json
from dfa_bench.leaderboard.cli import app
from dfa_bench.leaderboard.entries import ENTRIES_DIR, LEADERBOARD_FILE, reference_entries
from dfa_bench.leaderboard.paper import COLUMNS, paper_tables

PAPER_MD = Path(__file__).resolve().parents[2] / "shared" / "reference" / "paper.md"
HEADER = ["DF-D ACC", "DF-D ERR", "DF-D ACER", "DF-C ACC", "AD ROUGE-L"]

# The paper's tables, as printed (first cell, then the five columns).
EXPECTED = {
    "I": (["Method", *HEADER], [
        ["ResNet101", "74.23", "25.77", "25.80", "55.84", "-"],
        ["DeiT-B/16", "75.29", "24.71", "23.16", "59.86", "-"],
        ["DeiT-L/14", "78.82", "21.18", "20.46", "63.54", "-"],
        ["CLIP-B/16", "81.83", "18.17", "17.55", "71.12", "-"],
        ["CLIP-L/14", "88.38", "11.62", "11.81", "81.51", "-"],
        ["DFA-GPT", "95.22", "4.78", "5.04", "92.74", "42.54"],
    ]),
    "II": (["Annotations", *HEADER], [
        ["D", "94.58", "5.42", "5.72", "-", "-"],
        ["D+C", "95.33", "4.67", "4.85", "92.47", "-"],
        ["D+C+AD", "95.75", "4.25", "4.46", "92.87", "42.72"],
        ["D+C+AD+FC", "95.22", "4.78", "5.04", "92.74", "42.54"],
    ]),
    "III": (["Method", *HEADER], [
        ["LLaVA-1.5-7B", "54.78", "45.22", "43.20", "13.95", "13.65"],
        ["LLaVA-1.5-13B", "52.16", "47.84", "39.92", "11.36", "14.00"],
        ["InternVL-1.2", "53.67", "46.33", "41.28", "25.57", "9.93"],
        ["InternVL-1.5", "45.48", "54.52", "44.92", "16.46", "16.40"],
        ["GPT-4V", "59.84", "40.16", "49.43", "20.06", "21.56"],
        ["DFA-GPT", "95.22", "4.78", "5.04", "92.74", "42.54"],
    ]),
}  # fmt: skip


def parse_markdown_tables(text: str) -> dict[str, tuple[list[str], list[list[str]]]]:
    """{"I": (header, rows), ...} of the pipe tables that follow a "Table <N>:" heading."""
    tables: dict[str, tuple[list[str], list[list[str]]]] = {}
    current = None
    for line in text.splitlines():
        heading = re.match(r"^#+ Table (I{1,3}):", line)
        if heading:
            current = heading.group(1)
            continue
        if current and line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if all(re.fullmatch(r":?-+:?", c) for c in cells):
                continue
            if current not in tables:
                tables[current] = (cells, [])
            else:
                tables[current][1].append(cells)
        elif current in tables and not line.strip().startswith("|"):
            current = None if line.strip() else current
    return tables


def parse_latex_tables(text: str) -> list[list[list[str]]]:
    """The rows (cells) of each tabular, header first; \\multicolumn rows left out."""
    tables = []
    for body in re.findall(r"\\begin\{tabular\}\{[lr]+\}(.*?)\\end\{tabular\}", text, re.S):
        rows = []
        for line in body.splitlines():
            line = line.strip()
            if line.endswith("\\\\") and "\\multicolumn" not in line:
                rows.append([c.strip() for c in line[:-2].split(" & ")])
        tables.append(rows)
    return tables


def test_markdown_tables_match_the_paper_exactly():
    tables = parse_markdown_tables(paper_tables("md"))
    assert tables == EXPECTED


def test_shipped_reference_data_holds_the_papers_numbers():
    """Each expected cell comes from the reference entries (fractions), every entry is used, none twice."""
    by_table: dict[str, dict[int, list[str]]] = {}
    for entry in reference_entries():
        for row in entry["paper"]:
            cells = [row["label"]]
            for column in COLUMNS:
                value = entry["metrics"].get(column.task, {}).get(column.metric)
                cells.append("-" if value is None else f"{round(100 * value, 2):.2f}")
            assert row["row"] not in by_table.setdefault(row["table"], {}), row
            by_table[row["table"]][row["row"]] = cells
    for number, (_, rows) in EXPECTED.items():
        assert [by_table[number][i] for i in sorted(by_table[number])] == rows


@pytest.mark.skipif(not PAPER_MD.is_file(), reason=f"{PAPER_MD} not present (checked against EXPECTED above)")
def test_markdown_tables_match_shared_reference_paper_md_cell_by_cell():
    reference = parse_markdown_tables(PAPER_MD.read_text(encoding="utf-8"))
    assert set(reference) == {"I", "II", "III"}
    ours = parse_markdown_tables(paper_tables("md"))
    for number in ("I", "II", "III"):
        ref_header, ref_rows = reference[number]
        header, rows = ours[number]
        assert header == ref_header, number
        assert len(rows) == len(ref_rows), number
        for i, (row, ref_row) in enumerate(zip(rows, ref_rows)):
            for j, (cell, ref_cell) in enumerate(zip(row, ref_row, strict=True)):
                assert cell == ref_cell, f"Table {number} row {i} column {j}: {cell!r} != {ref_cell!r}"
    assert reference == EXPECTED


def test_latex_tables_match_the_paper():
    tables = parse_latex_tables(paper_tables("latex"))
    assert len(tables) == 3
    for (number, (header, rows)), table in zip(EXPECTED.items(), tables):
        assert table[0] == header, number
        assert table[1:] == rows, number
    assert paper_tables("latex").count("\\toprule") == 3


def _board_with(tmp_path: Path, entries: list[dict]) -> Path:
    board = tmp_path / "board"
    config = {"schema": 1, "bench": {"name": "mini", "version": "1", "manifest_sha256": "a" * 64, "path": "."}}
    write_json(board / LEADERBOARD_FILE, config)
    for entry in entries:
        write_json(board / ENTRIES_DIR / f"{entry['model']}.json", entry)
    return board


def test_measured_entries_appear_beside_the_reported_rows(tmp_path):
    measured = [
        fake_entry("my-mllm", "general MLLM", dfd=(0.5, 0.5, 0.25), dfc=0.125, ad=None),
        fake_entry("my-probe", "vision-only", dfd=(0.9, 0.1, 0.1), dfc=0.7, ad=None),
        fake_entry("my-tuned", "tuned", dfd=(0.95, 0.05, 0.05), dfc=0.9, ad=0.4),
        fake_entry("mini (full)", "tuned", dfd=(0.9, 0.1, 0.1), dfc=0.8, ad=0.3) | {"annotations": "D+C+AD+FC"},
        fake_entry("mini (D)", "tuned", dfd=(0.9, 0.1, 0.1), dfc=None, ad=None) | {"annotations": "D"},
    ]
    board = _board_with(tmp_path, measured)
    result = CliRunner().invoke(app, ["paper-tables", "--leaderboard", str(board)])
    assert result.exit_code == 0, result.output
    tables = parse_markdown_tables(result.output)
    for number, (header, rows) in EXPECTED.items():  # the reported rows are untouched, first, in order
        assert tables[number][0] == header
        assert tables[number][1][: len(rows)] == rows
    extra = {n: [r[0] for r in tables[n][1][len(EXPECTED[n][1]) :]] for n in EXPECTED}
    assert extra == {
        "I": ["mini (D) (measured)", "mini (full) (measured)", "my-probe (measured)", "my-tuned (measured)"],
        "II": ["D: mini (D) (measured)", "D+C+AD+FC: mini (full) (measured)"],  # in the table's row order
        "III": ["mini (D) (measured)", "mini (full) (measured)", "my-mllm (measured)", "my-tuned (measured)"],
    }
    # measured rows keep their 95% intervals; reported rows print as the paper does
    assert tables["III"][1][-2] == [
        "my-mllm (measured)", "50.00 [49.00, 51.00]", "50.00 [49.00, 51.00]", "25.00 [24.00, 26.00]",
        "12.50 [11.50, 13.50]", "-",
    ]  # fmt: skip
    assert 'Rows marked "(measured)" were measured by DFA-Bench on test-bench v1' in result.output

    latex = CliRunner().invoke(app, ["paper-tables", "--format", "latex", "--leaderboard", str(board)]).output
    assert "my-mllm (measured) & 50.00 [49.00, 51.00] & 50.00 [49.00, 51.00] & 25.00 [24.00, 26.00]" in latex
    assert latex.count("\\multicolumn{6}{l}{\\textit{Rows marked") == 3

    page = CliRunner().invoke(app, ["paper-tables", "--format", "html", "--leaderboard", str(board)])
    assert page.exit_code == 0 and page.output.startswith("<!DOCTYPE html>")
    assert page.output.count("<table>") == 3 and "default-src 'none'" in page.output
    assert (
        '<td class="text">my-mllm (measured)</td><td>50.00 <span class="ci">[49.00, 51.00]</span></td>' in page.output
    )
    for _, rows in EXPECTED.values():  # every reported row, as printed
        for row in rows:
            assert "".join(f"<td>{c}</td>" for c in row[1:]) in page.output, row


def test_cli_paper_tables_without_leaderboard(tmp_path):
    out = tmp_path / "tables.tex"
    result = CliRunner().invoke(app, ["paper-tables", "--format", "latex", "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert [t[1:] for t in parse_latex_tables(out.read_text())] == [rows for _, rows in EXPECTED.values()]
    result = CliRunner().invoke(app, ["paper-tables", "--format", "docx"])
    assert result.exit_code == 2 and "use md, latex or html" in result.output
