from __future__ import annotations

import pytest

from dfa_bench.instruct.sources.manifest import read_manifest
from dfa_bench.schema import ValidationError


def test_reads_good_rows_and_reports_bad_ones(tmp_path):
    for name in ("a.png", "b.png", "clip.mp4"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "m.csv").write_text(
        "path,label,category,technique,identity,source,related_identities\n"
        "a.png,bona_fide,bona_fide,,p1,,\n"
        "b.png,forgery,face_swapping,simswap,p2,a.png,p1\n"
        "clip.mp4,forgery,face_reenactment,fomm,p1,a.png,\n"
        "b.png,fake,face_swapping,simswap,p2,,\n"
        "b.png,forgery,bona_fide,,p2,,\n"
        "nope.png,bona_fide,bona_fide,,p3,,\n"
        "b.png,forgery,face_editing,stargan,p2,missing.png,\n"
        "b.png,bona_fide,bona_fide,,,,\n"
    )
    items, problems = read_manifest(tmp_path / "m.csv")
    assert [(i.path.name, i.category, i.line) for i in items] == [
        ("a.png", "bona_fide", 2), ("b.png", "face_swapping", 3), ("clip.mp4", "face_reenactment", 4)]  # fmt: skip
    assert items[1].source == tmp_path / "a.png" and items[1].related_identities == ("p1",)
    assert items[2].is_video and not items[0].is_video
    assert [p.split(": ", 1)[1] for p in problems] == [
        "unknown label 'fake'",
        "category 'bona_fide' does not fit label 'forgery'",
        f"file not found: {tmp_path / 'nope.png'}",
        f"source file not found: {tmp_path / 'missing.png'}",
        "empty identity",
    ]
    assert problems[0].startswith(f"{tmp_path / 'm.csv'}:5:")


def test_a_header_without_required_columns_refuses_the_manifest(tmp_path):
    (tmp_path / "m.csv").write_text("path,label\nx.png,bona_fide\n")
    with pytest.raises(ValidationError, match=r"m.csv:1: missing columns category, technique, identity \("):
        read_manifest(tmp_path / "m.csv")


def test_a_description_column_gives_forgeries_their_ad_reference(tmp_path):
    (tmp_path / "a.png").write_bytes(b"x")
    (tmp_path / "m.csv").write_text(
        "path,label,category,technique,identity,description\n"
        'a.png,forgery,face_swapping,simswap,p1,"1. Eyes: mismatched gaze.\n2. Mouth: blurred teeth."\n'
        "a.png,forgery,face_editing,stargan,p1,\n"
        "a.png,bona_fide,bona_fide,,p1,looks fine\n"
    )
    items, problems = read_manifest(tmp_path / "m.csv")
    assert [i.description for i in items] == ["1. Eyes: mismatched gaze.\n2. Mouth: blurred teeth.", ""]
    assert len(problems) == 1 and problems[0].endswith("bona fide faces have none")
