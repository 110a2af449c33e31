"""Leaderboard entries: the schema, its validation, the shipped reference entries and a leaderboard
directory on disk (leaderboard.json + entries/*.json).

An entry is plain JSON, one file per model. Metric values are fractions in [0, 1], exactly as in
the metrics JSON of `dfa-bench score`; tables show them as percentages. Measured entries carry the
full metrics JSON recomputed from the logged samples; reported entries (copied from a publication)
carry only the headline values the publication gives, with no n or CI.
"""

from __future__ import annotations

import json
import math
import os
import re
from importlib import resources
from pathlib import Path
from typing import NamedTuple

from dfa_bench.bench import Bench, read_bench
from dfa_bench.floors import FLOORS, floor_run, score_floor
from dfa_bench.io import read_json, write_json
from dfa_bench.metric_specs import specs
from dfa_bench.schema import ValidationError

SCHEMA = 1
GROUPS = ("vision-only", "general MLLM", "tuned")
PROVENANCES = ("measured", "reported", "floor")
# Floors (`dfa-bench floors`): answers made without the image, scored on the leaderboard's bench; shown as
# reference rows in a group of their own, never ranked against the entries.
FLOOR_GROUP = "floor"
FLOORS_DIR = "floors"
AUDIT_STATUSES = ("verified", "failed")  # `dfa-bench leaderboard audit`; a measured entry without one is unverified
LEADERBOARD_FILE = "leaderboard.json"
ENTRIES_DIR = "entries"
ANSWERS_DIR = "answers"  # each measured entry's submitted answers, for audits
PAPER_CITATION = 'Qin et al., "Towards Interactive Deepfake Analysis"'
# Table II's rows: the abilities whose QA pairs a DFA-GPT run was trained on (`dfa-gpt train --annotations`).
ANNOTATIONS = ("D", "D+C", "D+C+AD", "D+C+AD+FC")


class Column(NamedTuple):
    key: str
    task: str
    metric: str
    label: str
    higher_is_better: bool


# The paper's columns (Tables I-III), in its order: the metrics dfa_bench.metric_specs marks as columns.
COLUMNS = tuple(Column(s.key, s.task, s.name, s.label, s.higher_is_better) for s in specs(column=True))
COLUMN_BY_KEY = {c.key: c for c in COLUMNS}
_SLUG = re.compile(r"[^A-Za-z0-9._-]+")


def slug(name: str) -> str:
    """A file name for an entry: the model name with anything but [A-Za-z0-9._-] made '-'."""
    return _SLUG.sub("-", name).strip("-.")


# The answer by which a model declines a task it has no ability for (the vision-only probe's AD answer).
ABSTAIN = "-"


def _shown_block(entry: dict, task: str) -> dict:
    """The metrics of a task the entry has the ability for; {} for an absent or abstained task."""
    if task in (entry.get("abstained") or ()):
        return {}
    return entry["metrics"].get(task) or {}


def metric_value(entry: dict, column: Column) -> float | None:
    return _shown_block(entry, column.task).get(column.metric)


def metric_ci(entry: dict, column: Column) -> list[float] | None:
    return (_shown_block(entry, column.task).get("ci95") or {}).get(column.metric)


def parse_params(text: str) -> int:
    """'7B', '13b', '350M', '86.6M', '7e9' or '7000000000' -> a parameter count."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][0-9]+)?)\s*([kKmMbBtT]?)\s*", text)
    if not match:
        raise ValueError(f"not a parameter count: {text!r} (use e.g. 7B, 350M or 7000000000)")
    scale = {"": 1, "k": 1e3, "m": 1e6, "b": 1e9, "t": 1e12}[match.group(2).lower()]
    value = round(float(match.group(1)) * scale)
    if value <= 0:
        raise ValueError(f"parameter count must be positive: {text!r}")
    return value


def format_params(params: int | None) -> str:
    if not params:
        return "-"
    for scale, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if params >= scale:
            return f"{params / scale:.3g}{suffix}"
    return str(params)


# ---- validation -------------------------------------------------------------------------------

ROUGE_DIGITS = 6  # an entry's per-item ROUGE-L values are rounded; their mean stays within 1e-6 of the metric


def _fail(message: str, path: str | None, field: str | None = None) -> None:
    raise ValidationError(message, path=path, field=field)


def is_fraction(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and 0 <= value <= 1


def _check_metrics(metrics: object, provenance: str, path: str | None) -> None:
    if not isinstance(metrics, dict) or not metrics:
        _fail("expected a non-empty object of tasks", path, "metrics")
    for task, block in metrics.items():
        where = f"metrics.{task}"
        if task not in ("dfd", "dfc", "ad"):
            _fail("unknown task (expected dfd, dfc or ad)", path, where)
        if not isinstance(block, dict):
            _fail("expected an object", path, where)
        for column in COLUMNS:
            if column.task != task:
                continue
            value = block.get(column.metric)
            if value is None and provenance != "reported" and column.metric in ("acc", "err", "rouge_l"):
                _fail("missing", path, f"{where}.{column.metric}")
            if value is not None and not is_fraction(value):
                _fail(f"expected a fraction in [0, 1], got {value!r}", path, f"{where}.{column.metric}")
            ci = (block.get("ci95") or {}).get(column.metric)
            if ci is not None and not (isinstance(ci, list) and len(ci) == 2 and all(map(is_fraction, ci))):
                _fail(f"expected [low, high] fractions, got {ci!r}", path, f"{where}.ci95.{column.metric}")
        if provenance != "reported" and not (isinstance(block.get("n"), int) and block["n"] > 0):
            _fail(f"expected a positive item count, got {block.get('n')!r}", path, f"{where}.n")


def _check_outcomes(entry: dict, path: str | None) -> None:
    """Outcomes must agree with the entry's metrics: one per item, averaging to the metric."""
    outcomes = entry.get("outcomes")
    if outcomes is None:
        return
    if not isinstance(outcomes, dict) or not set(outcomes) <= set(entry["metrics"]):
        _fail("expected an object keyed by the entry's tasks", path, "outcomes")
    for task, values in outcomes.items():
        block, where = entry["metrics"][task], f"outcomes.{task}"
        if task == "ad":
            ok = isinstance(values, list) and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and 0 <= v <= 1
                for v in values
            )
            mean = math.fsum(values) / len(values) if ok and values else None
            metric, tolerance = block.get("rouge_l"), 1e-6
        else:
            ok = isinstance(values, str) and set(values) <= {"0", "1"}
            mean = values.count("1") / len(values) if ok and values else None
            metric, tolerance = block.get("acc"), 1e-9
        if not ok or len(values) != block.get("n"):
            _fail(f"expected {block.get('n')} per-item outcomes", path, where)
        if metric is None or abs(mean - metric) > tolerance:
            _fail(f"the per-item outcomes average {mean!r}, not the entry's metric {metric!r}", path, where)


def validate_entry(entry: object, *, path: str | None = None) -> dict:
    """Check an entry's fields; raises ValidationError naming the file and field."""
    if not isinstance(entry, dict):
        _fail("an entry must be a JSON object", path)
    if entry.get("schema") != SCHEMA:
        _fail(f"expected {SCHEMA}, got {entry.get('schema')!r}", path, "schema")
    name = entry.get("model")
    if not isinstance(name, str) or not slug(name) or len(name) > 200 or not name.isprintable():
        _fail(f"expected a printable model name of at most 200 characters, got {name!r}", path, "model")
    provenance = entry.get("provenance")
    if provenance not in PROVENANCES:
        _fail(f"expected one of {list(PROVENANCES)}, got {provenance!r}", path, "provenance")
    groups = (FLOOR_GROUP,) if provenance == "floor" else GROUPS
    if entry.get("group") not in groups:
        _fail(f"expected one of {list(groups)}, got {entry.get('group')!r}", path, "group")
    if provenance == "reported" and not (isinstance(entry.get("citation"), str) and entry["citation"].strip()):
        _fail("a reported entry needs its citation", path, "citation")
    params = entry.get("params")
    if params is not None and (isinstance(params, bool) or not isinstance(params, int) or params <= 0):
        _fail(f"expected a positive integer or null, got {params!r}", path, "params")
    bench = entry.get("bench")
    if not isinstance(bench, dict) or not isinstance(bench.get("name"), str):
        _fail("expected {name, version, manifest_sha256}", path, "bench")
    if provenance != "reported" and not re.fullmatch(r"[0-9a-f]{64}", str(bench.get("manifest_sha256"))):
        _fail(f"a {provenance} entry needs its bench's manifest sha256", path, "bench.manifest_sha256")
    _check_metrics(entry.get("metrics"), provenance, path)
    abstained = entry.get("abstained") or []
    if not isinstance(abstained, list) or not set(abstained) <= set(entry["metrics"]):
        _fail(f"expected a list of the entry's tasks, got {abstained!r}", path, "abstained")
    annotations = entry.get("annotations")
    if annotations is not None and (annotations not in ANNOTATIONS or entry["group"] != "tuned"):
        _fail(f"expected null or, for a tuned model, one of {list(ANNOTATIONS)}; got {annotations!r}", path,
              "annotations")  # fmt: skip
    _check_outcomes(entry, path)
    audit = entry.get("audit")
    if audit is not None and not (
        isinstance(audit, dict) and audit.get("status") in AUDIT_STATUSES and is_fraction(audit.get("agreement"))
        and isinstance(audit.get("sample"), int) and not isinstance(audit.get("sample"), bool)
    ):  # fmt: skip
        _fail(f"expected {{status: verified|failed, agreement, sample, ...}}, got {audit!r}", path, "audit")
    for row in entry.get("paper") or []:
        if not (isinstance(row, dict) and row.get("table") in ("I", "II", "III") and isinstance(row.get("row"), int)):
            _fail(f"expected {{table: I|II|III, row: int, label: str}}, got {row!r}", path, "paper")
    return entry


def read_entry(path: Path | str) -> dict:
    return validate_entry(read_json(path), path=str(path))


def reference_entries() -> list[dict]:
    """The shipped "reported" entries: every row of the paper's Tables I, II and III."""
    folder = resources.files("dfa_bench.leaderboard") / "reference"
    files = sorted((f for f in folder.iterdir() if f.name.endswith(".json")), key=lambda f: f.name)
    return [validate_entry(json.loads(f.read_text(encoding="utf-8")), path=f"reference/{f.name}") for f in files]


# ---- a leaderboard directory ------------------------------------------------------------------


def init_leaderboard(leaderboard_dir: Path | str, bench_dir: Path | str, *, dev_dir: Path | str | None = None) -> dict:
    """Create (or re-point) a leaderboard for one bench, identified by its manifest sha256, with its floors
    (scored anew; their constants chosen on the bench at `dev_dir` where given).

    Re-running with a bench of the same manifest only updates the stored path; a different bench is
    refused, since the existing entries were measured on the old one.
    """
    leaderboard_dir = Path(leaderboard_dir)
    if leaderboard_dir.exists() and not leaderboard_dir.is_dir():
        raise ValidationError("--leaderboard must be a directory; this is a file", path=str(leaderboard_dir))
    bench = read_bench(bench_dir)
    config_path = leaderboard_dir / LEADERBOARD_FILE
    if config_path.exists():
        old = read_config(leaderboard_dir)["bench"]
        if old["manifest_sha256"] != bench.manifest_sha256:
            raise ValidationError(
                f"this leaderboard is for bench {old['name']!r} v{old['version']} (manifest sha256 "
                f"{old['manifest_sha256']}), not {bench.manifest_sha256}; use a new directory",
                path=str(config_path),
            )
    # A relative path keeps the leaderboard and its bench movable together.
    bench_path = os.path.relpath(Path(bench_dir).resolve(), leaderboard_dir.resolve())
    config = {
        "schema": SCHEMA,
        "bench": {
            "name": bench.manifest.get("name"),
            "version": bench.manifest.get("version"),
            "manifest_sha256": bench.manifest_sha256,
            "path": bench_path,
        },
    }
    choose_on = read_bench(dev_dir) if dev_dir is not None else None
    (leaderboard_dir / ENTRIES_DIR).mkdir(parents=True, exist_ok=True)
    write_json(config_path, config)
    write_floors(leaderboard_dir, bench, choose_on=choose_on)
    return config


def floor_entry(bench: Bench, name: str, metrics: dict, run: dict) -> dict:
    """A floor's leaderboard row: its metrics on the leaderboard's bench and what its constants were chosen on."""
    return {
        "schema": SCHEMA,
        "model": FLOORS[name],
        "group": FLOOR_GROUP,
        "provenance": "floor",
        "params": None,
        "bench": {
            "name": bench.manifest.get("name"),
            "version": bench.manifest.get("version"),
            "manifest_sha256": bench.manifest_sha256,
        },
        "metrics": metrics,
        "abstained": [],
        # what the constants were chosen on, by its manifest sha256 (the path is the local machine's)
        "floor": {k: v for k, v in run["floor"].items() if k != "chosen_on"},
    }


def write_floors(leaderboard_dir: Path | str, bench: Bench, *, choose_on: Bench | None = None) -> list[Path]:
    """LEADERBOARD/floors/<floor>.json, one entry per floor of dfa_bench.floors."""
    folder = Path(leaderboard_dir) / FLOORS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in FLOORS:
        metrics, _, _ = score_floor(bench, name, choose_on=choose_on)
        entry = validate_entry(floor_entry(bench, name, metrics, floor_run(bench, name, choose_on=choose_on)))
        paths.append(folder / f"{name}.json")
        write_json(paths[-1], entry)
    return paths


def load_floors(leaderboard_dir: Path | str) -> list[dict]:
    """The floor rows of a leaderboard (none for one made before floors existed), each on its bench."""
    expected = read_config(leaderboard_dir)["bench"]["manifest_sha256"]
    floors = []
    for path in sorted((Path(leaderboard_dir) / FLOORS_DIR).glob("*.json")):
        entry = read_entry(path)
        if entry["provenance"] != "floor" or entry["bench"]["manifest_sha256"] != expected:
            raise ValidationError("not a floor of this leaderboard's bench", path=str(path))
        floors.append(entry)
    return floors


def read_config(leaderboard_dir: Path | str) -> dict:
    path = Path(leaderboard_dir) / LEADERBOARD_FILE
    if not path.is_file():
        raise ValidationError(
            "not a leaderboard (run `dfa-bench leaderboard init --bench DIR --leaderboard DIR`)", path=str(path)
        )
    config = read_json(path)
    bench = config.get("bench") if isinstance(config, dict) else None
    if not isinstance(bench, dict) or not all(isinstance(bench.get(k), str) for k in ("manifest_sha256", "path")):
        raise ValidationError("expected {name, version, manifest_sha256, path}", path=str(path), field="bench")
    return config


def bench_path(leaderboard_dir: Path | str, config: dict) -> Path:
    return (Path(leaderboard_dir) / config["bench"]["path"]).resolve()


def entry_path(leaderboard_dir: Path | str, name: str) -> Path:
    return Path(leaderboard_dir) / ENTRIES_DIR / f"{slug(name)}.json"


def answers_path(leaderboard_dir: Path | str, name: str) -> Path:
    return Path(leaderboard_dir) / ANSWERS_DIR / f"{slug(name)}.jsonl"


def load_entries(leaderboard_dir: Path | str) -> list[dict]:
    """The measured entries of a leaderboard, validated, in file-name order; each must be on its bench."""
    expected = read_config(leaderboard_dir)["bench"]["manifest_sha256"]
    folder = Path(leaderboard_dir) / ENTRIES_DIR
    entries = [read_entry(path) for path in sorted(folder.glob("*.json"))] if folder.is_dir() else []
    for entry, path in zip(entries, sorted(folder.glob("*.json"))):
        if entry["bench"].get("manifest_sha256") != expected:
            raise ValidationError(
                f"measured on another bench (manifest sha256 {entry['bench'].get('manifest_sha256')}, "
                f"the leaderboard's is {expected})",
                path=str(path),
                field="bench.manifest_sha256",
            )
    return entries


def write_entry(leaderboard_dir: Path | str, entry: dict, *, replace: bool = False) -> Path:
    """Write one entry atomically (a crash leaves the old file or none, never half a file)."""
    validate_entry(entry)
    path = entry_path(leaderboard_dir, entry["model"])
    if replace:
        write_json(path, entry)
        return path
    # Complete the file under a private name, then link it in: the link fails if another submission
    # took the name meanwhile, where a check-then-write would let the later one overwrite the first.
    staged = path.with_name(f".{path.name}.{os.getpid()}.new")
    write_json(staged, entry)
    try:
        os.link(staged, path)
    except FileExistsError:
        raise FileExistsError(f"{path} exists: an entry named {entry['model']!r} is on the leaderboard") from None
    finally:
        staged.unlink(missing_ok=True)
    return path
