"""The plain-data contract shared by every stage: labels, categories, records and question items.

Records (one per face image) come in; question items (one per question) go out to models.
Both are dicts on disk (JSONL); these helpers validate them and name the offending field.
"""

from __future__ import annotations

from typing import Any

LABELS = ("bona_fide", "forgery")
CATEGORIES = (
    "bona_fide",
    "face_swapping",
    "face_reenactment",
    "face_editing",
    "entire_face_synthesis",
)
FORGERY_CATEGORIES = CATEGORIES[1:]
TASKS = ("dfd", "dfc", "ad")
POLARITIES = ("forged", "authentic")
UNPARSEABLE = "unparseable"

CATEGORY_NAMES = {
    "bona_fide": "Bona fide",
    "face_swapping": "Face swapping (FS)",
    "face_reenactment": "Face reenactment (FR)",
    "face_editing": "Face editing (FE)",
    "entire_face_synthesis": "Entire face synthesis (EFS)",
}
# One-sentence explanations used in DF-C reference answers. They deliberately avoid naming any
# other category, so the reference answers parse back to their own category.
CATEGORY_EXPLANATIONS = {
    "bona_fide": "The face is an unmanipulated photograph of a person.",
    "face_swapping": "The identity of the face was replaced with that of another person.",
    "face_reenactment": "The expression or mouth movement of this person was driven by another person's motion.",
    "face_editing": "Specific facial attributes such as hair, skin, eyes or lips were modified.",
    "entire_face_synthesis": "The whole face was produced from scratch by a generative model.",
}

RECORD_FIELDS = ("record_id", "image", "label", "category", "technique", "identity", "artifact_description")
QUESTION_FIELDS = (
    "question_id",
    "record_id",
    "task",
    "image",
    "question",
    "answer",
    "label",
    "category",
    "technique",
    "identity",
)


class ValidationError(ValueError):
    """A bad record, question item or file; the message names the file, line and field."""

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None, field: str | None = None):
        where = ":".join(str(p) for p in (path, line) if p is not None)
        what = f"field '{field}': " if field else ""
        super().__init__(f"{where}: {what}{message}" if where else f"{what}{message}")
        self.path, self.line, self.field = path, line, field

    def __reduce__(self):
        # keep path/line/field when the error crosses a process boundary (see bench.verify_files)
        return _rebuild_validation_error, (str(self), self.path, self.line, self.field)


def _rebuild_validation_error(message: str, path: str | None, line: int | None, field: str | None) -> ValidationError:
    error = ValidationError(message)
    error.path, error.line, error.field = path, line, field
    return error


def label_of(category: str) -> str:
    return "bona_fide" if category == "bona_fide" else "forgery"


def _require_str(obj: dict, field: str, where: dict, *, allow_empty: bool = False) -> str:
    if field not in obj:
        raise ValidationError("missing", field=field, **where)
    value = obj[field]
    if not isinstance(value, str) or (not allow_empty and not value.strip()):
        raise ValidationError(f"expected a non-empty string, got {value!r}", field=field, **where)
    return value


def validate_record(obj: Any, *, path: str | None = None, line: int | None = None) -> dict:
    """Check one input record and return it normalised (missing optional fields filled)."""
    where = {"path": path, "line": line}
    if not isinstance(obj, dict):
        raise ValidationError(f"expected a JSON object, got {type(obj).__name__}", **where)
    for field in ("record_id", "image", "identity"):
        _require_str(obj, field, where)
    label = _require_str(obj, "label", where)
    if label not in LABELS:
        raise ValidationError(f"unknown label {label!r}; expected one of {LABELS}", field="label", **where)
    category = _require_str(obj, "category", where)
    if category not in CATEGORIES:
        raise ValidationError(f"unknown category {category!r}; expected one of {CATEGORIES}", field="category", **where)
    if label_of(category) != label:
        raise ValidationError(f"label {label!r} contradicts category {category!r}", field="label", **where)
    technique = obj.get("technique") or ""
    if not isinstance(technique, str):
        raise ValidationError(f"expected a string, got {technique!r}", field="technique", **where)
    # a forgery's AD reference (a person's, GPT-4o's or the offline annotator's); a forgery without one still
    # has its DF-D and DF-C items, and a bona fide face has none (AD asks where the artifacts are)
    description = obj.get("artifact_description") or ""
    if not isinstance(description, str):
        raise ValidationError(f"expected a string, got {description!r}", field="artifact_description", **where)
    description = description.strip() if label == "forgery" else ""
    return {
        "record_id": obj["record_id"],
        "image": obj["image"],
        "label": label,
        "category": category,
        "technique": technique,
        "identity": obj["identity"],
        "artifact_description": description,
    }


_QUESTION_STR_FIELDS = (
    "question_id",
    "record_id",
    "image",
    "question",
    "answer",
    "identity",
    "task",
    "label",
    "category",
)


def validate_question(obj: Any, *, path: str | None = None, line: int | None = None) -> dict:
    """Check one question item of a bench's questions.jsonl."""
    where = {"path": path, "line": line}
    if not isinstance(obj, dict):
        raise ValidationError(f"expected a JSON object, got {type(obj).__name__}", **where)
    for field in _QUESTION_STR_FIELDS:
        value = obj.get(field)
        if type(value) is not str or not value.strip():  # cheap check first; _require_str words the error
            _require_str(obj, field, where)
    _require_str(obj, "technique", where, allow_empty=True)
    task, label, category = obj["task"], obj["label"], obj["category"]
    if task not in TASKS:
        raise ValidationError(f"unknown task {task!r}; expected one of {TASKS}", field="task", **where)
    if label not in LABELS:
        raise ValidationError(f"unknown label {label!r}; expected one of {LABELS}", field="label", **where)
    if category not in CATEGORIES:
        raise ValidationError(f"unknown category {category!r}; expected one of {CATEGORIES}", field="category", **where)
    if label_of(category) != label:
        raise ValidationError(f"label {label!r} contradicts category {category!r}", field="label", **where)
    if task == "dfd" and obj.get("polarity") not in POLARITIES:
        raise ValidationError(f"expected one of {POLARITIES}, got {obj.get('polarity')!r}", field="polarity", **where)
    if task == "dfc":
        options = obj.get("options")
        valid = (
            isinstance(options, list)
            and len(options) == len(CATEGORIES)
            and all(isinstance(o, dict) and {"letter", "category", "text"} <= o.keys() for o in options)
            and sorted(o["category"] for o in options) == sorted(CATEGORIES)
        )
        if not valid:
            raise ValidationError(
                "expected the five options as {letter, category, text}, one per category", field="options", **where
            )
    if task == "ad" and label != "forgery":
        raise ValidationError("ad items exist only for forgeries", field="task", **where)
    return obj
