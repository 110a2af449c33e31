"""Rendering: paper columns, "-" for missing abilities, best-value marking, sorting, groups, CIs, formats."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import pytest
from leaderboard_fixtures import fake_entry
from PIL import Image
from typer.testing import CliRunner

from dfa_bench.io import write_json
from dfa_bench.leaderboard.cli import app
from dfa_bench.leaderboard.entries import ENTRIES_DIR, LEADERBOARD_FILE, reference_entries, validate_entry
from dfa_bench.leaderboard.render import render, render_chart, sort_key_of, table_rows
from dfa_bench.schema import ValidationError

LABELS = ["DF-D ACC", "DF-D ERR", "DF-D ACER", "DF-C ACC", "AD ROUGE-L", "AD region F1", "AD consistency"]


@pytest.fixture
def entries() -> list[dict]:
    return [
        fake_entry("Alpha", dfd=(0.60, 0.40, 0.45), dfc=0.30, ad=0.20),
        fake_entry("Beta", dfd=(0.70, 0.30, 0.35), dfc=0.10, ad=None),  # no AD ability
        fake_entry("Gamma", dfd=(0.55, 0.45, 0.30), dfc=0.50, ad=0.25),
        fake_entry("Probe", "vision-only", dfd=(0.80, 0.20, 0.21), dfc=0.60, ad=None),
        fake_entry("Tuned", "tuned", dfd=(0.90, 0.10, 0.11), dfc=None, ad=0.40, provenance="reported"),
    ]


def _md_rows(text: str) -> dict[str, list[str]]:
    """{model: cells} of every Markdown table row in `text`."""
    rows = {}
    for line in text.splitlines():
        if line.startswith("|") and not line.startswith("|--") and "Model" not in line:
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            rows[cells[0]] = cells
    return rows


def _models_in_order(text: str) -> list[str]:
    return list(_md_rows(text))


def test_markdown_columns_groups_ci_and_missing_abilities(entries):
    text = render(entries, "md")
    headers = [line for line in text.splitlines() if line.startswith("| Model")]
    assert headers and all([c.strip() for c in h.strip("|").split("|")][3:] == LABELS for h in headers)
    # groups in the paper's order, each its own section
    assert [m.group(1) for m in re.finditer(r"^## (.*)$", text, re.M)] == [
        "Vision-only models", "General MLLMs", "Tuned models"]  # fmt: skip
    rows = _md_rows(text)
    assert rows["Beta"][7] == "-"  # Beta has no AD
    assert rows["Tuned"][6] == "-"  # Tuned has no DF-C
    assert rows["Alpha"][3] == "60.00 [59.00, 61.00]"  # value and 95% CI, in %
    assert rows["Tuned"][3] == "**90.00**" and rows["Tuned"][2] == "reported [1]"  # reported: no CI
    assert rows["Alpha"][2] == "measured, unverified"  # never audited
    assert "[1] Reported in Someone et al., A Paper" in text


def test_best_value_per_column_is_marked(entries):
    rows = _md_rows(render(entries, "md"))
    bold = {m: [i for i, c in enumerate(cells) if c.startswith("**")] for m, cells in rows.items()}
    # best: DF-D ACC Tuned (higher), ERR Tuned (lower), ACER Tuned (lower), DF-C Probe, ROUGE-L Tuned
    assert bold == {"Probe": [6], "Alpha": [], "Beta": [], "Gamma": [], "Tuned": [3, 4, 5, 7]}
    latex = render(entries, "latex")
    assert latex.count("\\textbf{") == 5 and "\\textbf{60.00}" in latex
    html = render(entries, "html")
    assert html.count('class="best"') == 5
    csv_rows = {r["model"]: r for r in csv.DictReader(io.StringIO(render(entries, "csv")))}
    assert csv_rows["Tuned"]["best"] == "dfd_acc;dfd_err;dfd_acer;ad_rouge_l"
    assert csv_rows["Probe"]["best"] == "dfc_acc" and csv_rows["Alpha"]["best"] == ""


def test_ties_at_the_shown_precision_are_all_marked(entries):
    entries[0]["metrics"]["dfc"]["acc"] = 0.600001
    rows = _md_rows(render(entries, "md"))
    assert rows["Alpha"][6].startswith("**60.00**") and rows["Probe"][6].startswith("**60.00**")


@pytest.mark.parametrize(
    ("sort", "order"),
    [
        ("dfd_acc", ["Beta", "Alpha", "Gamma"]),
        ("DF-D ERR", ["Beta", "Alpha", "Gamma"]),  # lower is better: best first
        ("dfd-acer", ["Gamma", "Beta", "Alpha"]),
        ("DF-C ACC", ["Gamma", "Alpha", "Beta"]),
        ("ad_rouge_l", ["Gamma", "Alpha", "Beta"]),  # missing last
        ("model", ["Alpha", "Beta", "Gamma"]),
    ],
)
def test_rows_sort_by_any_metric_within_groups(entries, sort, order):
    models = _models_in_order(render(entries, "md", sort=sort))
    assert models == ["Probe", *order, "Tuned"]  # groups stay: vision-only, general MLLM, tuned
    assert [r["model"] for r in table_rows(entries, sort)] == models


def test_unknown_sort_key():
    with pytest.raises(ValueError, match="unknown sort key"):
        sort_key_of("speed")


def test_latex_is_escaped_and_grouped(entries):
    entries[0]["model"] = "A_b & 50%"
    text = render(entries, "latex")
    assert "A\\_b \\& 50\\%" in text
    assert text.count("\\multicolumn{10}{l}{\\textit{") == 3
    assert "\\begin{tabular}{lllrrrrrrr}" in text and "\\bottomrule" in text
    assert "60.00 {\\scriptsize [59.00, 61.00]}" in text


def test_csv_is_plain_numbers(entries):
    rows = list(csv.DictReader(io.StringIO(render(entries, "csv"))))
    assert [r["model"] for r in rows] == ["Probe", "Beta", "Alpha", "Gamma", "Tuned"]
    alpha = next(r for r in rows if r["model"] == "Alpha")
    assert (alpha["dfd_acc"], alpha["dfd_acc_ci_low"], alpha["dfd_acc_ci_high"]) == ("60.00", "59.00", "61.00")
    assert alpha["dfd_parse_failure_rate"] == "5.00" and alpha["group"] == "general MLLM"
    assert next(r for r in rows if r["model"] == "Beta")["ad_rouge_l"] == "-"


def test_html_is_self_contained(entries):
    html = render(entries, "html")
    assert html.startswith("<!DOCTYPE html>") and "<script>" in html and "<style>" in html
    for needle in ("http://", "https://", "src=", "<link", "@import", "url("):
        assert needle not in html, needle
    assert html.count('<tr class="entry') == 5 and html.count("<tbody") == 3


def test_model_names_are_escaped_in_html(entries):
    entries[0]["model"] = "<script>alert(1)</script>"
    html = render(entries, "html")
    assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)" in html


def test_model_names_are_escaped_in_markdown(entries):
    entries[0]["model"] = '<img src=x onerror="alert(1)">'
    entries[1]["model"] = "[click](javascript:alert(1))"
    md = render(entries, "md")
    assert "<img" not in md and '&lt;img src=x onerror="alert(1)"&gt;' in md
    assert "| [click]" not in md and "| \\[click\\](javascript:alert(1))" in md  # no link


def test_chart_png(entries, tmp_path):
    path = render_chart(entries, tmp_path / "chart.png")
    with Image.open(path) as image:
        assert image.format == "PNG" and image.width > 400 and image.height > 200
        assert len(image.convert("RGB").getcolors(1 << 20) or []) > 10  # not a blank canvas


def test_reference_entries_are_valid_and_reported():
    refs = reference_entries()
    assert len(refs) == 14
    assert all(e["provenance"] == "reported" and "Towards Interactive Deepfake Analysis" in e["citation"] for e in refs)
    assert {e["group"] for e in refs} == {"vision-only", "general MLLM", "tuned"}


def test_invalid_entries_are_named(entries):
    bad = dict(entries[0], group="robots")
    with pytest.raises(ValidationError, match="x.json: field 'group'"):
        validate_entry(bad, path="x.json")
    bad = dict(entries[0], provenance="reported", citation=None)
    with pytest.raises(ValidationError, match="citation"):
        validate_entry(bad)
    bad = fake_entry("x", dfd=(1.5, 0.0, 0.0))
    with pytest.raises(ValidationError, match="metrics.dfd.acc"):
        validate_entry(bad)


def _board(tmp_path: Path, entries: list[dict]) -> Path:
    board = tmp_path / "board"
    write_json(board / LEADERBOARD_FILE, {"schema": 1, "bench": {"name": "test-bench", "version": "1",
                                                                 "manifest_sha256": "a" * 64, "path": "../bench"}})  # fmt: skip
    for entry in entries:
        write_json(board / ENTRIES_DIR / f"{entry['model']}.json", entry)
    return board


def test_cli_render_every_format(entries, tmp_path):
    board = _board(tmp_path, [e for e in entries if e["provenance"] == "measured"])
    runner = CliRunner()
    result = runner.invoke(app, ["render", "--leaderboard", str(board), "--sort", "DF-C ACC"])
    assert result.exit_code == 0, result.output
    assert "Gamma" in result.output and "CLIP-L/14" in result.output  # the paper's rows beside ours
    models = _models_in_order(result.output)
    assert models.index("Gamma") < models.index("Alpha") < models.index("Beta")
    result = runner.invoke(app, ["render", "--leaderboard", str(board), "--no-reported"])
    assert "CLIP-L/14" not in result.output
    for fmt in ("md", "latex", "html", "csv"):
        out = tmp_path / f"board.{fmt}"
        result = runner.invoke(app, ["render", "--leaderboard", str(board), "--format", fmt, "--output", str(out)])
        assert result.exit_code == 0, result.output
        assert "Gamma" in out.read_text()
    chart = tmp_path / "chart.png"
    result = runner.invoke(app, ["render", "--leaderboard", str(board), "--format", "png", "--output", str(chart)])
    assert result.exit_code == 0 and chart.read_bytes().startswith(b"\x89PNG")
    result = runner.invoke(app, ["render", "--leaderboard", str(board), "--format", "pdf"])
    assert result.exit_code == 2 and "unknown format" in result.output
    result = runner.invoke(app, ["render", "--leaderboard", str(tmp_path / "nowhere")])
    assert result.exit_code == 2 and "not a leaderboard" in result.output


def test_entries_from_another_bench_are_refused(entries, tmp_path):
    board = _board(tmp_path, [entries[0]])
    write_json(board / ENTRIES_DIR / "other.json", dict(entries[1], bench={"name": "x", "manifest_sha256": "b" * 64}))
    result = CliRunner().invoke(app, ["render", "--leaderboard", str(board)])
    assert (
        result.exit_code == 2
        and "other.json: field 'bench.manifest_sha256': measured on another bench" in result.output
    )


def test_submitted_text_cannot_break_tables_or_spreadsheets(entries):
    entries[0]["model"] = "a|b"
    entries[1]["model"] = "=HYPERLINK(1)"
    assert "| a\\|b " in render(entries, "md")
    rows = {r["model"] for r in csv.DictReader(io.StringIO(render(entries, "csv")))}
    assert "'=HYPERLINK(1)" in rows and "a|b" in rows
    with pytest.raises(ValidationError, match="printable model name"):
        validate_entry(dict(entries[2], model="two\nlines"))
