"""`dfa-bench leaderboard init|render|paper-tables` and `dfa-bench submit` (wired in dfa_bench.cli)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dfa_bench.cli_errors import check_outputs as _check_outputs
from dfa_bench.cli_errors import fail as _fail
from dfa_bench.schema import ValidationError

app = typer.Typer(no_args_is_help=True, help="Leaderboard: entries, comparison tables, the paper's tables.")

_FORMAT_HELP = "md, latex, html or csv (or png: the bar chart alone, needs --output)."


def _write_or_print(text: str, output: Path | None) -> None:
    if output is None:
        typer.echo(text, nl=False)
        return
    from dfa_bench.io import atomic_write_text

    atomic_write_text(output, text)
    typer.echo(f"wrote {output}", err=True)


@app.command("init")
def init_command(
    bench: Annotated[Path, typer.Option(help="The bench every entry must be measured on.")],
    leaderboard: Annotated[Path, typer.Option(help="Leaderboard directory to create.")],
    dev: Annotated[
        Path | None,
        typer.Option(
            help="Choose the floors' majority class and constant descriptions on this bench (a dev "
            "split); default: the leaderboard's bench itself."
        ),
    ] = None,
) -> None:
    """Create a leaderboard for one bench (identified by its manifest sha256), with its floors."""
    from dfa_bench.leaderboard.entries import init_leaderboard

    try:
        config = init_leaderboard(leaderboard, bench, dev_dir=dev)
    except ValidationError as exc:
        _fail(str(exc))
    info = config["bench"]
    typer.echo(f"leaderboard {leaderboard}: bench {info['name']} v{info['version']} ({info['manifest_sha256']})")


@app.command("render")
def render_command(
    leaderboard: Annotated[Path, typer.Option(help="Leaderboard directory.")],
    format: Annotated[str, typer.Option("--format", help=_FORMAT_HELP)] = "md",
    sort: Annotated[
        str,
        typer.Option(
            help="Sort rows (within groups, best first) by dfd_acc, dfd_err, dfd_acer, dfc_acc, ad_rouge_l, "
            "ad_region_f1, ad_verdict_consistency, model or params."
        ),
    ] = "dfd_acc",
    output: Annotated[Path | None, typer.Option(help="Write here instead of stdout.")] = None,
    chart: Annotated[Path | None, typer.Option(help="Also write the PNG bar chart here.")] = None,
    reported: Annotated[bool, typer.Option(help="Include the paper's reported rows beside the measured ones.")] = True,
    floors: Annotated[bool, typer.Option(help="Include the bench's floors (answers made without the image).")] = True,
) -> None:
    """Render the leaderboard as a comparison table (and optionally a PNG bar chart)."""
    from dfa_bench.leaderboard.entries import load_entries, load_floors, read_config, reference_entries
    from dfa_bench.leaderboard.render import FORMATS, render, render_chart, sort_key_of

    if format not in (*FORMATS, "png"):
        _fail(f"unknown format {format!r}; use {', '.join(FORMATS)} or png")
    if format == "png" and output is None:
        _fail("--format png needs --output FILE")
    _check_outputs({"--output": output, "--chart": chart})
    try:
        sort = sort_key_of(sort)
        read_config(leaderboard)
        entries = load_entries(leaderboard) + (reference_entries() if reported else [])
        entries += load_floors(leaderboard) if floors else []
    except (ValidationError, ValueError) as exc:
        _fail(str(exc))
    if format == "png":
        render_chart(entries, output, sort=sort)
        typer.echo(f"wrote {output}", err=True)
    else:
        _write_or_print(render(entries, format, sort=sort), output)
    if chart is not None:
        render_chart(entries, chart, sort=sort)
        typer.echo(f"wrote {chart}", err=True)


@app.command("paper-tables")
def paper_tables_command(
    format: Annotated[str, typer.Option("--format", help="md, latex or html.")] = "md",
    leaderboard: Annotated[Path | None, typer.Option(help="Add this leaderboard's measured entries.")] = None,
    output: Annotated[Path | None, typer.Option(help="Write here instead of stdout.")] = None,
) -> None:
    """Regenerate the paper's Tables I, II and III (reported rows, plus measured ones when given)."""
    from dfa_bench.leaderboard.entries import load_entries, read_config
    from dfa_bench.leaderboard.paper import paper_tables

    if format not in ("md", "latex", "html"):
        _fail(f"unknown format {format!r}; use md, latex or html")
    _check_outputs({"--output": output})
    measured = []
    if leaderboard is not None:
        try:
            read_config(leaderboard)
            measured = load_entries(leaderboard)
        except ValidationError as exc:
            _fail(str(exc))
    _write_or_print(paper_tables(format, measured), output)


@app.command("audit")
def audit_command(
    entry: Annotated[str, typer.Argument(help="The entry's model name, as the leaderboard shows it.")],
    leaderboard: Annotated[Path, typer.Option(help="Leaderboard directory.")],
    model: Annotated[str, typer.Option(help="The adapter of the model the entry claims (dfa_llava, dfa_hf, ...).")],
    model_args: Annotated[str, typer.Option(help="Its model_args, comma-separated, as for `dfa-bench eval`.")] = "",
    sample: Annotated[
        int,
        typer.Option(
            help="How many of the entry's questions to ask again (32: 10% edited answers are caught "
            "with probability 1 - 0.9^32 = 96.6%)."
        ),
    ] = 32,
    seed: Annotated[
        int | None,
        typer.Option(help="Seeds the sample, to repeat an earlier audit (default: a fresh random seed, recorded)."),
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Questions per model call.")] = 8,
) -> None:
    """Re-ask a random sample of an entry's questions with the model it claims; record verified or failed."""
    from dfa_bench.contract import AdapterConfigError
    from dfa_bench.leaderboard.audit import audit_entry

    if sample < 1 or batch_size < 1:
        _fail("--sample and --batch-size must be at least 1")
    try:
        record = audit_entry(leaderboard, entry, model, model_args, sample=sample, seed=seed, batch_size=batch_size)
    except (ValidationError, AdapterConfigError) as exc:
        _fail(str(exc))
    typer.echo(
        f"{entry}: {record['status']} ({record['agreement']:.0%} of {record['sample']} answers agree; "
        f"seed {record['seed']}; 10% edited answers would be caught with probability "
        f"{record['detection']['caught_probability']:.1%})"
    )
    if record["status"] != "verified":
        shown = ", ".join(record["disagreements"])
        typer.secho(f"answers that differ from the submitted ones include: {shown}", err=True, fg="yellow")
        raise typer.Exit(1)


def submit_command(
    results_dir: Annotated[Path, typer.Argument(help="Output directory of `dfa-bench eval`.")],
    leaderboard: Annotated[Path, typer.Option(help="Leaderboard directory (see `dfa-bench leaderboard init`).")],
    model_name: Annotated[
        str | None, typer.Option(help="Name shown on the leaderboard (default: the basename of pretrained=).")
    ] = None,
    group: Annotated[
        str | None, typer.Option(help="vision-only, 'general MLLM' or tuned (default: from the adapter).")
    ] = None,
    params: Annotated[str | None, typer.Option(help="Parameter count, e.g. 7B, 350M.")] = None,
    annotations: Annotated[
        str | None,
        typer.Option(help="A tuned model's training annotations (D, D+C, D+C+AD, D+C+AD+FC): its Table II row."),
    ] = None,
    replace: Annotated[bool, typer.Option(help="Replace an entry of the same name.")] = False,
    bench: Annotated[Path | None, typer.Option(help="Use this copy of the leaderboard's bench.")] = None,
    max_file_mib: Annotated[float | None, typer.Option(help="Per-file size limit in MiB (default 256).")] = None,
) -> None:
    """Check an eval output (every metric recomputed from its logged samples) and add it to a leaderboard."""
    from dfa_bench.leaderboard.entries import GROUPS, parse_params
    from dfa_bench.leaderboard.files import MAX_FILE_BYTES, SubmissionRejected
    from dfa_bench.leaderboard.submit import submit

    if group is not None:
        matches = [g for g in GROUPS if g.lower() == group.strip().lower()]
        if not matches:
            _fail(f"unknown group {group!r}; use one of {', '.join(repr(g) for g in GROUPS)}")
        group = matches[0]
    if model_name is not None and not model_name.strip():
        _fail("--model-name is empty; give the name the leaderboard shows, or leave it out")
    if max_file_mib is not None and not max_file_mib > 0:
        _fail(f"--max-file-mib must be more than 0, got {max_file_mib}")
    try:
        count = parse_params(params) if params else None
    except ValueError as exc:
        _fail(str(exc))
    limit = MAX_FILE_BYTES if max_file_mib is None else int(max_file_mib * 2**20)
    try:
        entry, path = submit(
            results_dir, leaderboard, model_name=model_name, group=group, params=count, annotations=annotations,
            replace=replace, bench_dir=bench, max_file_bytes=limit,
        )  # fmt: skip
    except SubmissionRejected as exc:
        _fail(f"submission rejected: {exc}", code=1)
    except ValidationError as exc:
        _fail(str(exc))
    metrics = entry["metrics"]
    shown = ", ".join(
        f"{task} {name} " + ("- (abstained)" if task in entry["abstained"] else f"{100 * metrics[task][name]:.2f}")
        for task, name in (("dfd", "acc"), ("dfc", "acc"), ("ad", "rouge_l"))
        if task in metrics and metrics[task].get(name) is not None
    )
    typer.echo(f"accepted {entry['model']!r} ({entry['group']}): {shown}; wrote {path}")
    for note in entry["notes"]:
        typer.secho(f"note: {note}", err=True, fg=typer.colors.YELLOW)
