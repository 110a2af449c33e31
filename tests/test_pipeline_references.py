"""Real sources without an LLM: forgeries with no description are kept (DF-D and DF-C only), descriptions
come from the manifest, region masks from bona fide source pairs, and a useless build fails."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from dfa_bench.bench import read_bench
from dfa_bench.cli import app
from dfa_bench.instruct import forge, mini
from dfa_bench.instruct.build_dir import BuildReport
from dfa_bench.io import iter_jsonl

FORGERY_CATEGORIES = ("face_swapping", "face_reenactment", "face_editing", "entire_face_synthesis")
HUMAN_DESCRIPTION = "1. Skin: a waxy, poreless texture across the cheeks.\n2. Hairline: strands melt into the forehead."
COLUMNS = ["path", "label", "category", "technique", "identity"]


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    """Bona fide faces of different people (photos inside installed packages) and forgeries made from them,
    as a user's folder of face crops: each person has a bona fide face and two forgeries of two categories.
    Two manifests list them: `plain.csv` (no sources, no descriptions: the FF++ c40 case) and `rich.csv`
    (FS/FR/FE rows name their bona fide source; EFS rows carry a person's description)."""
    root = tmp_path_factory.mktemp("faces")
    photos = [(p, mini.locate(p)[0]) for p in mini.photo_specs() if p.kind != "lfw_faces"]
    faces = mini.detect_faces([(p, path) for p, path in photos if path], 224, BuildReport(root / "detect.jsonl"))
    assert len(faces) >= 8, [f.identity for f in faces]
    rng = np.random.default_rng(0)
    plain, rich = [], []
    for i, face in enumerate(faces):
        person = f"person{i}"
        Image.fromarray(face.image).save(root / f"{person}_real.png")
        plain.append([f"{person}_real.png", "bona_fide", "bona_fide", "", person])
        rich.append([*plain[-1], "", ""])
        for category in (FORGERY_CATEGORIES[(2 * i) % 4], FORGERY_CATEGORIES[(2 * i + 1) % 4]):
            made = _forge(category, face.image, faces[(i + 1) % len(faces)].image, rng)
            name = f"{person}_{category}.png"
            Image.fromarray(made.image).save(root / name)
            plain.append([name, "forgery", category, made.technique, person])
            efs = category == "entire_face_synthesis"
            rich.append([*plain[-1], "" if efs else f"{person}_real.png", HUMAN_DESCRIPTION if efs else ""])
    for manifest, columns, rows in (
        ("plain.csv", COLUMNS, plain),
        ("rich.csv", [*COLUMNS, "source", "description"], rich),
    ):
        with open(root / manifest, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(columns)
            writer.writerows(rows)
    return root


def _forge(category: str, face: np.ndarray, other: np.ndarray, rng: np.random.Generator) -> forge.Forgery:
    if category == "face_swapping":
        return forge.face_swap(face, other, rng)
    if category == "entire_face_synthesis":
        return forge.face_synthesis([face, other], rng)
    return (forge.face_reenactment if category == "face_reenactment" else forge.face_edit)(face, rng)


def _build(manifest: Path, out: Path, *extra: str):
    args = ["data", "build", "--manifest", str(manifest), "--output", str(out), "--workers", "0", "--size", "112",
            "--train", "0.6", "--dev", "0.2", *extra]  # fmt: skip
    return CliRunner().invoke(app, args)


def _records(out: Path) -> dict[str, list[dict]]:
    return {s: [r for _, r in iter_jsonl(out / f"records/{s}.jsonl")] for s in ("train", "dev", "test")}


@pytest.fixture(scope="module")
def plain_build(source, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("plain") / "build"
    result = _build(source / "plain.csv", out)
    assert result.exit_code == 0, result.output
    return out


def test_forgeries_without_descriptions_are_kept_with_dfd_and_dfc_items(plain_build, source):
    records = _records(plain_build)
    n_forgeries = sum(1 for r in csv.DictReader(open(source / "plain.csv")) if r["label"] == "forgery")
    assert sum(r["label"] == "forgery" for rows in records.values() for r in rows) >= n_forgeries - 2
    for split, rows in records.items():
        assert {r["label"] for r in rows} == {"bona_fide", "forgery"}, split  # both labels reach every split
    summary = json.loads((plain_build / "build_summary.json").read_text())
    assert all(counts["with"] == 0 and counts["without"] > 0 for counts in summary["ad_references"].values())
    for split in ("dev", "test"):
        bench = read_bench(plain_build / f"bench/{split}")
        tasks: dict[str, set] = {}
        for item in bench.items:
            tasks.setdefault(item["record_id"], set()).add(item["task"])
        assert {r["record_id"] for r in records[split]} == set(tasks)
        assert all(t == {"dfd", "dfc"} for t in tasks.values())  # no reference, so no AD item
    training = json.loads((plain_build / "instruct/dfa_instruct_merged.json").read_text())
    assert len(training) == 2 * len(records["train"]) and summary["qa_pairs"]["ad"] == 0


@pytest.mark.slow
def test_the_probe_trains_and_evaluates_on_a_bench_without_ad(plain_build, tmp_path):
    runner = CliRunner()
    head = tmp_path / "head"
    result = runner.invoke(
        app, ["probe", "train", "--data", str(plain_build), "--output", str(head), "--device", "cpu"]
    )
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["eval", "--model", "dfa_probe", "--model-args", f"head={head},device=cpu",
                                 "--bench", str(plain_build / "bench/test"), "--output", str(tmp_path / "eval")])  # fmt: skip
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "eval/metrics.json").read_text())
    assert metrics["dfd"]["n"] == metrics["dfc"]["n"] == len(_records(plain_build)["test"])
    assert "ad" not in metrics or not metrics["ad"].get("n")


def test_descriptions_and_source_pairs_give_ad_references_offline(source, tmp_path):
    out = tmp_path / "build"
    result = _build(source / "rich.csv", out)
    assert result.exit_code == 0, result.output
    forgeries = [r for rows in _records(out).values() for r in rows if r["label"] == "forgery"]
    efs = [r for r in forgeries if r["category"] == "entire_face_synthesis"]
    assert efs and all(r["artifact_description"] == HUMAN_DESCRIPTION for r in efs)  # the person's text, as given
    paired = [r for r in forgeries if r["category"] != "entire_face_synthesis"]
    described = [r for r in paired if r["artifact_description"]]
    # a region mask from the difference with the aligned bona fide source: every face swap changes enough
    assert {r["category"] for r in described} >= {"face_swapping"}
    assert all((out / r["mask"]).is_file() and r["artifact_description"].startswith("1. ") for r in described)
    swaps = [r for r in described if r["category"] == "face_swapping"]
    assert all("blending seam" in r["artifact_description"] for r in swaps)
    mask = np.asarray(Image.open(out / swaps[0]["mask"])) > 127
    assert 0.01 < mask.mean() < 0.9  # the changed inner face, not the whole crop
    for split in ("dev", "test"):
        bench = read_bench(out / f"bench/{split}")
        with_ad = {i["record_id"] for i in bench.items if i["task"] == "ad"}
        split_records = _records(out)[split]
        assert with_ad == {r["record_id"] for r in split_records if r["artifact_description"]}
    summary = json.loads((out / "build_summary.json").read_text())
    assert sum(c["with"] for c in summary["ad_references"].values()) == len(efs) + len(described)
    assert "forgeries with AD reference" in result.output


def test_a_build_whose_forgeries_are_all_refused_fails(source, tmp_path):
    """Every forgery is refused at alignment (no face in them): the splits hold bona fide faces only."""
    folder = tmp_path / "src"
    folder.mkdir()
    rows = []
    blank = Image.new("RGB", (224, 224), (90, 120, 150))
    for row in csv.DictReader(open(source / "plain.csv")):
        if row["label"] == "forgery":
            blank.save(folder / row["path"])  # a crop in which the detector finds no face
        else:
            (folder / row["path"]).write_bytes((source / row["path"]).read_bytes())
        rows.append([row[c] for c in COLUMNS])
    with open(folder / "m.csv", "w", newline="") as handle:
        csv.writer(handle).writerows([COLUMNS, *rows])
    out = tmp_path / "build"
    result = _build(folder / "m.csv", out, "--max-dropped", "1")
    assert result.exit_code == 1, result.output
    assert "the train split has" in result.output and "forged records (needs both)" in result.output
    assert "align: no face found" in result.output  # the summary says why, before the error
    summary = json.loads((out / "build_summary.json").read_text())
    assert summary["problems"] and summary["records"]["train"] > 0  # written, for a look and a resumed fix
    # and with the default --max-dropped, the refused share is named too
    result = _build(folder / "m.csv", out)
    assert result.exit_code == 1 and "inputs were refused" in result.output
