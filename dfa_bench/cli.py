"""The `dfa-bench` command line."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer

from dfa_bench.cli_errors import check_outputs as _check_outputs
from dfa_bench.cli_errors import fail as _fail
from dfa_bench.instruct.checks import DEFAULT_MAX_DROPPED
from dfa_bench.leaderboard.cli import app as leaderboard_app
from dfa_bench.leaderboard.cli import submit_command
from dfa_bench.metric_specs import headline_metrics
from dfa_bench.schema import ValidationError

HELP = {"help_option_names": ["-h", "--help"]}
app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    context_settings=HELP,
    help="DFA-Bench: interactive deepfake analysis benchmark.",
)
bench_app = typer.Typer(no_args_is_help=True, help="Build, generate and validate bench directories.")
dev_app = typer.Typer(no_args_is_help=True, help="Developer helpers (tiny offline models).")
app.add_typer(bench_app, name="bench")
data_app = typer.Typer(no_args_is_help=True, help="DFA-Instruct: build training data and benches from sources.")
app.add_typer(dev_app, name="dev")
app.add_typer(data_app, name="data")
app.add_typer(leaderboard_app, name="leaderboard")
app.command("submit")(submit_command)
probe_app = typer.Typer(no_args_is_help=True, help="Vision-only baselines (Table I): frozen backbone + linear heads.")
app.add_typer(probe_app, name="probe")


def _version(value: bool) -> None:
    if value:
        from dfa_bench import __version__

        typer.echo(f"dfa-bench {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """DFA-Bench: interactive deepfake analysis benchmark."""


HEADLINE = headline_metrics()
# what `score --details` writes of each judged row
DETAIL_FIELDS = ("question_id", "task", "prediction", "correct", "rouge_l", "region_f1", "stance", "consistent")


def metrics_table(metrics: dict) -> str:
    from tabulate import tabulate

    rows = []
    for task, names in HEADLINE.items():
        if task not in metrics:
            continue
        block = metrics[task]
        for name in names:
            value = block.get(name)
            if value is None:
                continue
            ci = block.get("ci95", {}).get(name)
            rows.append(
                [task, name, f"{100 * value:.2f}", f"[{100 * ci[0]:.2f}, {100 * ci[1]:.2f}]" if ci else "", block["n"]]
            )
        if "parse_failure_rate" in block and block["parse_failure_rate"] is not None:
            rows.append([task, "parse_failure_rate", f"{100 * block['parse_failure_rate']:.2f}", "", block["n"]])
    return tabulate(rows, headers=["task", "metric", "value (%)", "95% CI", "n"], tablefmt="github")


@bench_app.command("build")
def bench_build(
    records: Annotated[Path, typer.Option(help="Input records (JSONL).")],
    images: Annotated[Path, typer.Option(help="Directory the records' image paths are relative to.")],
    output: Annotated[Path, typer.Option(help="Bench directory to write.")],
    seed: Annotated[int, typer.Option(help="Seeds which question template each item gets.")] = 0,
    name: Annotated[str, typer.Option(help="Bench name for the manifest.")] = "dfa-bench",
    version: Annotated[str, typer.Option(help="Bench version for the manifest.")] = "0",
) -> None:
    """Build a DFA-Bench directory (manifest.json, questions.jsonl, images/) from records."""
    from dfa_bench.bench import build_bench

    try:
        bench = build_bench(records, images, output, seed=seed, name=name, version=version)
    except ValidationError as exc:
        _fail(str(exc))
    typer.echo(f"wrote {output}: {bench.manifest['counts']}")


@bench_app.command("validate")
def bench_validate(
    bench: Annotated[Path, typer.Argument(help="Bench directory.")],
    quick: Annotated[bool, typer.Option(help="Check checksums and fields only; do not decode every image.")] = False,
) -> None:
    """Check a bench's checksums, fields and images (each one decoded in full unless --quick)."""
    from dfa_bench.bench import decode_images, read_bench

    try:
        loaded = read_bench(bench)
        if not quick:
            decode_images(loaded)
    except ValidationError as exc:
        _fail(str(exc))
    images = "checksums only" if quick else f"{len({i['image'] for i in loaded.items})} images decoded"
    typer.echo(f"ok: {len(loaded.items)} items, {images}, manifest sha256 {loaded.manifest_sha256}")


@bench_app.command("synth")
def bench_synth(
    output: Annotated[Path, typer.Option(help="Bench directory to write.")],
    records: Annotated[int, typer.Option(help="Number of generated face records.")] = 40,
    seed: Annotated[int, typer.Option(help="Seeds the generated faces and the question templates.")] = 0,
) -> None:
    """Generate a small cartoon-face bench (plumbing check, not deepfake data)."""
    import tempfile

    from dfa_bench.bench import build_bench
    from dfa_bench.instruct.synthetic import make_source

    with tempfile.TemporaryDirectory() as tmp:
        records_path = make_source(tmp, records, seed=seed)
        bench = build_bench(records_path, Path(tmp), output, seed=seed, name="dfa-bench-synthetic", version="1")
    typer.echo(f"wrote {output}: {bench.manifest['counts']}")


@app.command()
def score(
    bench: Annotated[Path, typer.Option(help="Bench directory.")],
    predictions: Annotated[Path, typer.Option(help='JSONL of {"question_id", "response"[, "score"]}.')],
    output: Annotated[Path | None, typer.Option(help="Write the metrics JSON here.")] = None,
    details: Annotated[Path | None, typer.Option(help="Write one scored line per item here.")] = None,
    seed: Annotated[int, typer.Option(help="Seeds the bootstrap resampling of the 95% CIs.")] = 0,
) -> None:
    """Score predictions made by any inference code against a bench."""
    from dfa_bench.bench import read_bench
    from dfa_bench.io import write_json, write_jsonl
    from dfa_bench.scoring import check_predictions_size, read_predictions, rouge_worker, score_predictions

    _check_outputs({"--output": output, "--details": details}, {"--predictions": predictions, "--bench": bench})
    with rouge_worker() as worker:
        try:
            loaded = read_bench(bench, executor=worker)
            check_predictions_size(predictions, len(loaded.items))
            preds, problems = read_predictions(predictions)
        except ValidationError as exc:
            _fail(str(exc))
        if not any(qid in loaded.by_id for qid in preds):
            # nothing to score: 0% metrics would look like a result
            what = f"none of its {len(preds)} question ids is an item of {bench}" if preds else "holds no predictions"
            _fail(f"{predictions}: {what}; nothing to score", 1)
        metrics, rows, more = score_predictions(loaded, preds, seed=seed, executor=worker)
    for problem in problems + more:
        typer.secho(f"warning: {problem}", err=True, fg=typer.colors.YELLOW)
    typer.echo(metrics_table(metrics))
    if output:
        write_json(output, metrics)
    if details:
        write_jsonl(details, ({k: r.get(k) for k in DETAIL_FIELDS} for r in rows))


@app.command("floors")
def floors_command(
    bench: Annotated[Path, typer.Option(help="Bench directory.")],
    output: Annotated[Path, typer.Option(help="Directory to write one run directory per floor in.")],
    dev: Annotated[
        Path | None,
        typer.Option(
            help="Choose the majority class and the constant AD answers on this bench (a dev split); "
            "default: the bench itself, an optimistic floor."
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seeds the random floor and the bootstrap CIs.")] = 0,
) -> None:
    """What answers that never look at the image score: majority class, uniform random, category oracle."""
    from dfa_bench.bench import read_bench
    from dfa_bench.floors import FLOORS, write_floors

    if output.exists() and not output.is_dir():
        _fail(f"{output}: --output exists and is not a directory")
    try:
        loaded = read_bench(bench)
        choose_on = read_bench(dev) if dev is not None else None
    except ValidationError as exc:
        _fail(str(exc))
    if choose_on is not None and choose_on.manifest_sha256 == loaded.manifest_sha256:
        choose_on = None
    for name, metrics in write_floors(loaded, output, choose_on=choose_on, seed=seed).items():
        typer.echo(f"{FLOORS[name]} ({output / name}):\n{metrics_table(metrics)}\n")
    if choose_on is None:
        typer.secho("note: the constants were chosen on the bench itself (give --dev DIR to choose them on a "
                    "dev split)", err=True, fg="yellow")  # fmt: skip


@app.command("judge")
def judge_command(
    run: Annotated[Path, typer.Argument(help="A finished `dfa-bench eval` output directory.")],
    judge_model: Annotated[str, typer.Option(help="The judge: a chat model of an OpenAI-compatible endpoint.")],
    judge_args: Annotated[
        str,
        typer.Option(
            help="base_url, api_key_env (default OPENAI_API_KEY), concurrency, max_retries, timeout, "
            "max_tokens, detail; comma-separated name=value."
        ),
    ] = "",
    bench: Annotated[Path | None, typer.Option(help="The run's bench (default: the path run.json records).")] = None,
    seed: Annotated[int, typer.Option(help="Seeds the bootstrap CI.")] = 0,
) -> None:
    """Grade a run's AD answers with an LLM judge and a fixed rubric (optional; costs API calls)."""
    from dfa_bench.bench import read_bench
    from dfa_bench.evaluate import parse_model_args
    from dfa_bench.io import read_json
    from dfa_bench.judge import JUDGE_DIR, ADJudge, judge_run

    try:
        args = parse_model_args(judge_args)
        info = read_json(run / "run.json") if (run / "run.json").is_file() else {}
        bench_dir = bench or (Path(info["bench"]) if isinstance(info, dict) and info.get("bench") else None)
        if bench_dir is None:
            _fail(f"{run}: run.json names no bench; give --bench DIR")
        judge = ADJudge(run / JUDGE_DIR / "cache", model=judge_model, args=args)
        result = judge_run(run, read_bench(bench_dir), judge, seed=seed)
    except (ValidationError, RuntimeError) as exc:
        _fail(str(exc))
    ci, rho = result["ci95"], {k: "-" if v is None else f"{v:.3f}" for k, v in result["spearman"].items()}
    shown = "-" if result["score"] is None else f"{100 * result['score']:.2f}"
    typer.echo(f"judge {judge_model} (rubric sha256 {result['judge']['rubric_sha256'][:12]}): AD score {shown}"
               + (f" [{100 * ci[0]:.2f}, {100 * ci[1]:.2f}]" if ci else "") + f" over {result['n_graded']} of "
               f"{result['n']} items; Spearman with ROUGE-L {rho['rouge_l']}, with region F1 {rho['region_f1']}")  # fmt: skip
    if result["failures"]:
        shown = "; ".join(f"{q}: {why}" for q, why in list(result["failures"].items())[:5])
        _fail(f"{len(result['failures'])} items were not graded (run again to retry only them): {shown}", 1)


@app.command("compare")
def compare(
    run_a: Annotated[Path, typer.Argument(help="A `dfa-bench eval` output directory (model A).")],
    run_b: Annotated[Path, typer.Argument(help="Another one, on the same bench (model B).")],
    output: Annotated[Path | None, typer.Option(help="Write the comparison JSON here.")] = None,
    seed: Annotated[int, typer.Option(help="Seeds the paired bootstrap resampling.")] = 0,
) -> None:
    """Is A better than B? Paired differences over the same items: bootstrap 95% CIs, McNemar's exact test."""
    from tabulate import tabulate

    from dfa_bench.compare import LABELS, compare_runs, verdict
    from dfa_bench.io import write_json

    _check_outputs({"--output": output})
    try:
        result = compare_runs(run_a, run_b, seed=seed)
    except ValidationError as exc:
        _fail(str(exc))
    rows = []
    for metric, r in result["metrics"].items():
        ci = f"[{100 * r['ci95'][0]:+.2f}, {100 * r['ci95'][1]:+.2f}]" if r["ci95"] else "-"
        rows.append([LABELS[metric], f"{100 * r['a']:.2f}", f"{100 * r['b']:.2f}", f"{100 * r['difference']:+.2f}",
                     ci, f"{r['p_value']:.4g} ({r['test']})", r["n"], verdict(r)])  # fmt: skip
    typer.echo(f"A: {run_a} ({result['a']['model']})\nB: {run_b} ({result['b']['model']})")
    headers = ["metric", "A (%)", "B (%)", "A - B", "95% CI (paired bootstrap)", "p", "n", "at 5%"]
    typer.echo(tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True))
    for metric in result.get("not_compared", []):
        typer.secho(f"warning: {LABELS[metric]}: only one run answered this task", err=True, fg="yellow")
    unpaired = sum(r["unpaired"] for r in result["metrics"].values())
    if unpaired:
        typer.secho(f"warning: {unpaired} items answered by only one run were left out", err=True, fg="yellow")
    if output:
        write_json(output, result)


@app.command("eval")
def evaluate(
    model: Annotated[str, typer.Option(help="lmms-eval model name: dfa_llava, dfa_hf, dfa_openai, ... or llava_hf.")],
    bench: Annotated[Path, typer.Option(help="Bench directory.")],
    output: Annotated[Path, typer.Option(help="Output directory (re-running into it resumes from its cache).")],
    model_args: Annotated[
        str,
        typer.Option(
            help="lmms-eval --model_args, comma separated name=value, e.g. pretrained=PATH,device=cpu. "
            "Our adapters take max_new_tokens=N to override the tasks' generation length."
        ),
    ] = "",
    tasks: Annotated[str, typer.Option(help="Task or group names, comma separated.")] = "dfa_bench",
    limit: Annotated[
        int | None, typer.Option(help="Only the first N items of each task (per task, not in all; for testing).")
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Questions per model call (lmms-eval --batch_size).")] = 1,
    seed: Annotated[int, typer.Option(help="Seeds lmms-eval's random, numpy and torch, and the bootstrap CIs.")] = 0,
    max_failures: Annotated[
        str,
        typer.Option(
            help="Failed items the run may have and still count: a number (0: none) or a fraction (0.05 or 5%)."
        ),
    ] = "0",
    num_processes: Annotated[
        int,
        typer.Option(
            help="Processes answering in parallel, one per GPU (or CPU share), started with `accelerate launch`; "
            "each answers its shard of the questions and rank 0 writes the outputs."
        ),
    ] = 1,
) -> None:
    """Evaluate a model on a bench through lmms-eval; writes lmms-eval's logs plus metrics.json."""
    from dfa_bench.evaluate import EvaluationFailed, run_eval

    if num_processes < 1:
        _fail(f"--num-processes must be at least 1, got {num_processes}")
    if num_processes > 1 and "WORLD_SIZE" not in os.environ:  # launched processes carry WORLD_SIZE
        from dfa_bench.launch import launch_eval

        argv = ["--model", model, "--bench", str(bench), "--output", str(output), "--model-args", model_args,
                "--tasks", tasks, "--batch-size", str(batch_size), "--seed", str(seed), "--max-failures", max_failures]  # fmt: skip
        if limit is not None:
            argv += ["--limit", str(limit)]
        raise typer.Exit(launch_eval(num_processes, argv))
    try:
        result = run_eval(
            model, bench, output, model_args=model_args, tasks=tasks, limit=limit, batch_size=batch_size, seed=seed,
            max_failures=max_failures,
        )  # fmt: skip
    except ValidationError as exc:
        _fail(str(exc))
    except EvaluationFailed as exc:
        _fail(f"evaluation failed: {exc}", code=1)
    if result is None:  # a process other than rank 0 of a multi-process run: rank 0 reports
        return
    for problem in result.problems:
        typer.secho(f"warning: {problem}", err=True, fg=typer.colors.YELLOW)
    typer.echo(metrics_table(result.metrics))
    typer.echo(f"wrote {output}/metrics.json; lmms-eval logs in {result.lmms_eval_dir}")


@app.command("tasks-path")
def tasks_path_command() -> None:
    """Print the installed task directory (for lmms-eval --include_path)."""
    from dfa_bench.evaluate import tasks_path

    typer.echo(str(tasks_path()))


def _print_summary(summary: dict, output: Path) -> None:
    """The build's records per split and category (with the forgeries that have an AD reference), then what
    was dropped and why."""
    from tabulate import tabulate

    rows = [[split, summary["records"][split], *(summary["categories"][split].get(c, 0) for c in _CATEGORY_COLUMNS),
             summary.get("ad_references", {}).get(split, {}).get("with", "-")]
            for split in summary["records"]]  # fmt: skip
    headers = ["split", "records", "real", "FS", "FR", "FE", "EFS", "forgeries with AD reference"]
    typer.echo(tabulate(rows, headers=headers, tablefmt="github"))
    dropped = summary.get("dropped", {})
    typer.echo(f"inputs dropped: {sum(dropped.values())} {dropped or ''}")
    typer.echo(f"QA pairs (train): {summary['qa_pairs']}")
    typer.echo(f"free conversations: {summary['free_conversations']}")
    reported = sum(summary["reported"].values())
    typer.echo(f"bad inputs reported: {reported} {summary['reported'] or ''} -> {output / summary['report']}")
    typer.echo(f"wrote {output}/records, {output}/instruct, {output}/bench/dev, {output}/bench/test")


_CATEGORY_COLUMNS = ("bona_fide", "face_swapping", "face_reenactment", "face_editing", "entire_face_synthesis")


@data_app.command("build-mini")
def data_build_mini(
    output: Annotated[Path, typer.Option(help="Build directory (resumes if it holds an interrupted build).")],
    seed: Annotated[int, typer.Option(help="Seeds the forgeries, the split and the question templates.")] = 0,
    size: Annotated[int, typer.Option(help="Aligned crop size in pixels.")] = 224,
    per_category: Annotated[int, typer.Option(min=1, help="Records per category and split.")] = 32,
    train_per_category: Annotated[
        int | None, typer.Option(min=1, help="Records per category in the train split (default: --per-category).")
    ] = None,
) -> None:
    """Build DFA-Bench-mini offline from real photos inside installed PyPI packages."""
    from dfa_bench.instruct.mini import build_mini

    try:
        summary = build_mini(
            output, seed=seed, size=size, per_category=per_category, train_per_category=train_per_category
        )
    except (ValidationError, RuntimeError) as exc:
        _fail(str(exc))
    _print_summary(summary, output)


@data_app.command("build")
def data_build(
    output: Annotated[Path, typer.Option(help="Build directory (resumes if it holds an interrupted build).")],
    manifest: Annotated[Path | None, typer.Option(help="Generic source: CSV manifest of images and videos.")] = None,
    deepfakebench_json: Annotated[
        list[Path] | None, typer.Option(metavar="JSON", help="DeepfakeBench/DF-40 dataset JSON (repeatable).")
    ] = None,
    root: Annotated[Path | None, typer.Option(help="Root the DeepfakeBench frame paths are relative to.")] = None,
    annotator: Annotated[str, typer.Option(help="none or openai (GPT-4o artifact descriptions).")] = "none",
    model: Annotated[str, typer.Option(help="Annotator / conversation model.")] = "gpt-4o",
    base_url: Annotated[str | None, typer.Option(help="Any OpenAI-compatible server.")] = None,
    free_conversations: Annotated[
        bool, typer.Option(help="Ask the LLM for FC turns (needs --annotator openai).")
    ] = False,
    batch: Annotated[
        bool, typer.Option(help="Annotate through the OpenAI Batch API (half price, up to 24 h).")
    ] = False,
    poll_interval: Annotated[float, typer.Option(help="Seconds between Batch API status polls.")] = 30.0,
    dry_run: Annotated[
        bool, typer.Option(help="Align, then print the annotation request count and cost only.")
    ] = False,
    workers: Annotated[int, typer.Option(help="Face detection worker processes (0: in this process).")] = 1,
    size: Annotated[int, typer.Option(help="Aligned crop size in pixels.")] = 224,
    every: Annotated[int, typer.Option(help="Sample every N-th video frame.")] = 10,
    train: Annotated[float, typer.Option(help="Train share of identities' records.")] = 0.8,
    dev: Annotated[float, typer.Option(help="Dev share.")] = 0.1,
    seed: Annotated[int, typer.Option(help="Seeds the identity split and the question templates.")] = 0,
    name: Annotated[str, typer.Option(help="Bench name for the manifests.")] = "dfa-bench",
    max_dropped: Annotated[
        float, typer.Option(help="Fail when a larger share of the inputs is refused (no face, unreadable ...).")
    ] = DEFAULT_MAX_DROPPED,
) -> None:
    """Build DFA-Instruct training JSON and dev/test benches from DF-40 JSON or a CSV manifest.

    Forgeries get their AD reference from the source (a `description`), from the offline annotator (a region
    mask from a `source` pair) or from --annotator openai; one with none keeps its DF-D and DF-C items. The
    build fails (exit 1, outputs kept) when a split lacks a class or more than --max-dropped was refused."""
    from dfa_bench.instruct.build import BuildRequest, build
    from dfa_bench.instruct.checks import UnusableBuild

    request = BuildRequest(
        output, manifest=manifest, deepfakebench_json=list(deepfakebench_json or []), root=root, annotator=annotator,
        model=model, base_url=base_url, free_conversations=free_conversations, batch=batch,
        poll_interval=poll_interval, dry_run=dry_run, workers=workers, size=size, every=every, train=train, dev=dev,
        seed=seed, name=name, max_dropped=max_dropped,
    )  # fmt: skip
    try:
        summary = build(request, echo=typer.echo)
    except UnusableBuild as exc:
        _print_summary(json.loads((output / "build_summary.json").read_text(encoding="utf-8")), output)
        _fail(str(exc), 1)
    except (ValidationError, ValueError) as exc:
        _fail(str(exc))
    if "dry_run" in summary:
        typer.echo(json.dumps(summary["dry_run"], indent=2))
        return
    _print_summary(summary, output)


@data_app.command("stats")
def data_stats_command(
    build: Annotated[Path, typer.Argument(help="A build directory (data build / build-mini).")],
    output: Annotated[Path | None, typer.Option(help="Where to write the plots (default BUILD/stats).")] = None,
) -> None:
    """The paper's Fig. 3 statistics: word cloud of answers, QA pairs by ability, images by split and category."""
    from dfa_bench.instruct.stats import data_stats

    try:
        stats = data_stats(build, output)
    except ValidationError as exc:
        _fail(str(exc))
    typer.echo(json.dumps({k: v for k, v in stats.items() if k != "top_words"}, indent=2))


@probe_app.command("train")
def probe_train(
    data: Annotated[Path, typer.Option(help="A build directory (uses records/<split>.jsonl) or a records JSONL.")],
    output: Annotated[Path, typer.Option(help="Head directory to write (head.safetensors + head.json).")],
    backbone: Annotated[
        str, typer.Option(help="efficientnet_lite0 (offline), timm:<model>:<checkpoint> or hf:<local dir>.")
    ] = "efficientnet_lite0",
    split: Annotated[str, typer.Option(help="Split of a build directory to train on.")] = "train",
    images: Annotated[Path | None, typer.Option(help="Folder the image paths are relative to (override).")] = None,
    epochs: Annotated[int, typer.Option(help="Passes over the train data (the paper: one).")] = 1,
    seed: Annotated[int, typer.Option(help="Seeds the order of the training batches (the heads start at zero).")] = 0,
    batch_size: Annotated[int, typer.Option(help="Batch size for feature extraction and head training.")] = 32,
    lr: Annotated[float, typer.Option(help="Learning rate.")] = 1e-3,
    weight_decay: Annotated[float, typer.Option(help="AdamW/SGD weight decay.")] = 1e-4,
    optimizer: Annotated[str, typer.Option(help="adamw or sgd.")] = "adamw",
    balanced: Annotated[bool, typer.Option(help="Class-balanced (inverse frequency) loss weights.")] = False,
    cache: Annotated[Path | None, typer.Option(help="Feature cache directory (default OUTPUT/feature_cache).")] = None,
    device: Annotated[str | None, typer.Option(help="cpu, cuda, ... (default: cuda if available).")] = None,
    skip_bad_images: Annotated[
        bool, typer.Option(help="Skip (and list) records whose image is missing or unreadable instead of failing.")
    ] = False,
) -> None:
    """Train the DF-D (2-way) and DF-C (5-way) linear heads on a frozen backbone's cached features."""
    from dfa_bench.adapters.probe_training import check_optimizer, train_probe

    try:
        check_optimizer(optimizer)  # before any feature is extracted
        summary = train_probe(
            data, output, backbone=backbone, split=split, images=images, epochs=epochs, seed=seed,
            batch_size=batch_size, lr=lr, weight_decay=weight_decay, optimizer=optimizer, balanced=balanced,
            cache=cache, device=device, skip_bad_images=skip_bad_images,
        )  # fmt: skip
    except ValueError as exc:  # ValidationError included: bad records or images, named by file and line
        _fail(str(exc))
    run, used = summary["run"], summary["train_data"]["n_used"]
    typer.echo(f"backbone {summary['backbone']} ({summary['feature_dim']}-d features) on {run['device']}")
    typer.echo(
        f"records: {used} used of {summary['train_data']['n_records']}; features: {run['extracted']} extracted, "
        f"{run['cached']} from the cache ({run['seconds']:.1f}s)"
    )
    for entry in summary["train_data"]["skipped"]:
        typer.secho(f"skipped {entry['image']}: {entry['reason']}", err=True, fg=typer.colors.YELLOW)
    for head, info in summary["heads"].items():
        counts = ", ".join(f"{c} {n}" for c, n in info["train_counts"].items())
        typer.echo(f"{head}: train accuracy {100 * info['train_accuracy']:.2f}% ({counts})")
    typer.echo(f"trained {epochs} epoch(s) in {run['train_seconds']:.1f}s; total {run['total_seconds']:.1f}s")
    typer.echo(f"wrote {output}")


@dev_app.command("tiny-llava")
def tiny_llava(output: Annotated[Path, typer.Option(help="Directory to save the checkpoint in.")]) -> None:
    """Save a tiny random LLaVA (config objects, in-process tokenizer) for offline runs."""
    from dfa_bench.tiny_models import build_tiny_llava

    typer.echo(str(build_tiny_llava(output)))


def main() -> None:
    app()


if __name__ == "__main__":  # `python -m dfa_bench.cli`, as `accelerate launch --module` starts it
    main()
