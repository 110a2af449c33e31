"""Read DeepfakeBench-style dataset JSON files, the form DF-40 is distributed in.

A file maps dataset -> label name -> split -> [compression ->] video -> {"label", "frames"}; the
nesting depth varies between datasets, so entries are found by walking to every dict that holds a
"frames" list. Frame paths are resolved against a root directory, and every path is checked: DF-40
ships JSON entries whose frames are missing, which are reported rather than silently dropped. A video
entry may carry a "description" (its artifact description, e.g. a person's): its frames' AD reference.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from dfa_bench.instruct.taxonomy import TECHNIQUE_CATEGORY, normalise_technique
from dfa_bench.schema import ValidationError

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class FrameEntry:
    """One frame listed by a dataset JSON, with where it came from."""

    json_file: str
    key_path: tuple[str, ...]  # the JSON keys leading to the video entry
    video: str
    frame: str  # as listed
    path: Path  # resolved against the root
    is_real: bool
    technique: str  # DF-40 technique, "" for bona fide frames
    split: str  # train / val / test, or "" when the JSON names none
    description: str = ""  # the video entry's artifact description ("description" key), if the JSON has one


def _is_real(label: str) -> bool:
    text = label.lower()
    return "real" in text or text in ("0", "pristine", "original")


def _technique(json_file: Path, key_path: tuple[str, ...]) -> str:
    """The first name on the way to the entry (file stem, then keys) that is a DF-40 technique."""
    for name in (json_file.stem, *key_path):
        key = normalise_technique(name)
        if key in TECHNIQUE_CATEGORY:
            return key
    return ""


def _videos(node: object, key_path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], dict]]:
    if isinstance(node, dict):
        if isinstance(node.get("frames"), list):
            yield key_path, node
            return
        for key, child in node.items():
            yield from _videos(child, (*key_path, str(key)))


def read_deepfakebench_json(json_file: Path | str, root: Path | str) -> tuple[list[FrameEntry], list[str]]:
    """All frame entries of one file, and a report line for every listed frame whose file is missing."""
    json_file, root = Path(json_file), Path(root)
    try:
        data = json.loads(json_file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValidationError(f"unreadable dataset JSON: {exc}", path=str(json_file)) from None
    entries, missing = [], []
    for key_path, video in _videos(data, ()):
        label = str(video.get("label", key_path[1] if len(key_path) > 1 else ""))
        is_real = _is_real(label)
        technique = "" if is_real else _technique(json_file, key_path)
        split = next((k for k in key_path if k in SPLITS), "")
        description = video.get("description") or video.get("artifact_description") or ""
        if not isinstance(description, str):
            raise ValidationError(f"{'/'.join(key_path)}: description is not a string", path=str(json_file))
        description = "" if is_real else description.strip()
        for frame in video["frames"]:
            path = Path(frame) if Path(frame).is_absolute() else root / frame
            if not path.is_file():
                missing.append(f"{json_file}: {'/'.join(key_path)}: frame not found: {frame}")
                continue
            entries.append(
                FrameEntry(str(json_file), key_path, key_path[-1], frame, path, is_real, technique, split, description)
            )
    return entries, missing
