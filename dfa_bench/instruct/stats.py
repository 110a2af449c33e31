"""The paper's Fig. 3 statistics for a DFA-Instruct build: a word cloud of the answers, QA pairs per
ability, images per split and per category, plus stats.json with every count behind the plots.

Everything is read from the build's outputs (records/{split}.jsonl and instruct/dfa_instruct_*.json),
never from its work/ journals, so the numbers describe what a user of the build actually gets.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dfa_bench.instruct.pipeline import ABILITIES, SPLITS
from dfa_bench.io import atomic_open, iter_jsonl, write_json
from dfa_bench.schema import CATEGORIES, CATEGORY_NAMES, ValidationError, validate_record

ABILITY_NAMES = {"dfd": "DF-D", "dfc": "DF-C", "ad": "AD", "fc": "FC"}
OPTIONAL_ABILITIES = ("fc",)  # offline builds have no free conversations
TOP_WORDS = 50
PLOTS = {
    "answers_wordcloud": "answers_wordcloud.png",
    "qa_by_ability": "qa_by_ability.png",
    "images_by_split": "images_by_split.png",
    "images_by_category": "images_by_category.png",
}
_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")
_DPI = 100  # figures are sized in pixels: inches = pixels / dpi


def data_stats(
    build_dir: Path | str, output_dir: Path | str | None = None, *, width: int = 1200, height: int = 600
) -> dict[str, Any]:
    """Write the four Fig. 3 plots and stats.json to `output_dir` (default BUILD/stats); return the stats."""
    build = Path(build_dir)
    output = Path(output_dir) if output_dir is not None else build / "stats"
    images = _image_counts(build)
    qa_pairs, absent, words = _qa_counts(build)

    stats: dict[str, Any] = {
        "build": str(build),
        "output": str(output),
        "qa_pairs": qa_pairs,
        "qa_pairs_total": sum(qa_pairs.values()),
        "abilities_absent": absent,
        **images,
        "plots": dict(PLOTS),
        # ties broken alphabetically so the list is the same on every run
        "top_words": [{"word": w, "count": n} for w, n in sorted(words.items(), key=lambda x: (-x[1], x[0]))][
            :TOP_WORDS
        ],
    }

    _write_wordcloud(output / PLOTS["answers_wordcloud"], words, width, height)
    _write_bars(
        output / PLOTS["qa_by_ability"],
        "QA pairs by ability",
        # say so when a zero bar means "not built" (offline builds skip FC) rather than "built empty"
        [ABILITY_NAMES[a] + (" (absent)" if a in absent else "") for a in ABILITIES],
        {"": list(qa_pairs.values())},
        width,
        height,
        unit="QA pairs",
    )
    _write_bars(
        output / PLOTS["images_by_split"],
        "Images by split",
        list(SPLITS),
        {"": list(images["images_by_split"].values())},
        width,
        height,
    )
    # stacked by split, so the one chart also shows how each category is divided among the splits
    _write_bars(
        output / PLOTS["images_by_category"],
        "Images by category",
        [CATEGORY_NAMES[c] for c in CATEGORIES],
        {s: [images["images_by_split_category"][s][c] for c in CATEGORIES] for s in SPLITS},
        width,
        height,
        horizontal=True,
    )
    write_json(output / "stats.json", stats)
    return stats


def _image_counts(build: Path) -> dict[str, Any]:
    """Images (one record each) per split, per category and per split x category; identities per split."""
    records_dir = build / "records"
    if not records_dir.is_dir():
        raise ValidationError("records directory not found (is this a build directory?)", path=str(records_dir))
    by_split_category = {s: dict.fromkeys(CATEGORIES, 0) for s in SPLITS}
    identities: dict[str, set[str]] = {s: set() for s in SPLITS}
    for split in SPLITS:
        path = records_dir / f"{split}.jsonl"
        for line_no, obj in iter_jsonl(path):
            record = validate_record(obj, path=str(path), line=line_no)
            by_split_category[split][record["category"]] += 1
            identities[split].add(record["identity"])
    by_split = {s: sum(by_split_category[s].values()) for s in SPLITS}
    return {
        "images_total": sum(by_split.values()),
        "images_by_split": by_split,
        "images_by_category": {c: sum(by_split_category[s][c] for s in SPLITS) for c in CATEGORIES},
        "images_by_split_category": by_split_category,
        "identities_by_split": {s: len(identities[s]) for s in SPLITS},
    }


def _qa_counts(build: Path) -> tuple[dict[str, int], list[str], Counter[str]]:
    """QA pairs per ability, the abilities whose file is absent, and answer word counts.

    Reads the per-ability files only: the merged file repeats them, so counting it would double everything.
    """
    from wordcloud import STOPWORDS

    qa_pairs = dict.fromkeys(ABILITIES, 0)
    absent = []
    words: Counter[str] = Counter()
    for ability in ABILITIES:
        path = build / "instruct" / f"dfa_instruct_{ability}.json"
        if ability in OPTIONAL_ABILITIES and not path.exists():
            absent.append(ability)
            continue
        for answer in _answers(path):
            qa_pairs[ability] += 1
            words.update(w for w in _WORD.findall(answer.lower()) if len(w) > 1 and w not in STOPWORDS)
    return qa_pairs, absent, words


def _answers(path: Path) -> Iterator[str]:
    """Every gpt turn that answers a human turn (one QA pair each) in a LLaVA-format JSON list, streamed
    with ijson: instruct files are written element by element because they can outgrow memory."""
    import ijson

    if not path.is_file():
        raise ValidationError("file not found", path=str(path))
    with open(path, "rb") as handle:
        try:
            for index, entry in enumerate(ijson.items(handle, "item")):
                turns = entry.get("conversations") if isinstance(entry, dict) else None
                valid = isinstance(turns, list) and all(
                    isinstance(t, dict) and t.get("from") in ("human", "gpt") and isinstance(t.get("value"), str)
                    for t in turns
                )
                if not valid:
                    raise ValidationError(
                        f"entry {index}: expected a list of {{from: human|gpt, value: str}} turns",
                        path=str(path),
                        field="conversations",
                    )
                yield from (b["value"] for a, b in zip(turns, turns[1:]) if a["from"] == "human" and b["from"] == "gpt")
        except ijson.JSONError as exc:
            raise ValidationError(f"malformed JSON list: {exc}", path=str(path)) from None


def _figure(width: int, height: int):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width / _DPI, height / _DPI), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(figure)  # attaches itself to the figure; no pyplot global state
    return figure


def _save(figure, path: Path) -> None:
    # no bbox_inches="tight": the PNG must be exactly width x height pixels
    with atomic_open(path, "wb") as handle:
        figure.savefig(handle, format="png", dpi=_DPI)


def _write_bars(
    path: Path,
    title: str,
    labels: list[str],
    series: dict[str, list[int]],
    width: int,
    height: int,
    *,
    unit: str = "images",
    horizontal: bool = False,
) -> None:
    """A bar chart, stacked when `series` holds more than one named series; totals are written on the bars."""
    from matplotlib.ticker import MaxNLocator

    figure = _figure(width, height)
    ax = figure.add_subplot()
    base = [0] * len(labels)
    bars = None
    for name, values in series.items():
        if horizontal:
            bars = ax.barh(labels, values, left=base, label=name or None)
        else:
            bars = ax.bar(labels, values, bottom=base, label=name or None)
        base = [b + v for b, v in zip(base, values)]
    ax.bar_label(bars, labels=[f"{t:,}" for t in base], padding=3)  # the last series' bars carry the totals
    # explicit limits: zero-width stacked bars pin autoscaling to the data, leaving no room for the totals
    limit = max(max(base) * 1.12, 1)
    value_axis = ax.xaxis if horizontal else ax.yaxis
    value_axis.set_major_locator(MaxNLocator(integer=True))  # counts: no 0.5 ticks
    if horizontal:
        ax.invert_yaxis()  # first category on top
        ax.set_xlim(0, limit)
        ax.set_xlabel(unit)
    else:
        ax.set_ylim(0, limit)
        ax.set_ylabel(unit)
    ax.set_title(title)
    if len(series) > 1:
        figure.legend(title="split", loc="outside right upper")  # outside: never covers a bar or its total
    _save(figure, path)


def _write_wordcloud(path: Path, words: Counter[str], width: int, height: int) -> None:
    """The answers' word cloud from the same counts as top_words; a blank image when there are no answers."""
    from PIL import Image
    from wordcloud import WordCloud

    if words:
        cloud = WordCloud(width=width, height=height, background_color="white", random_state=0)
        image = cloud.generate_from_frequencies(words).to_image()
    else:
        image = Image.new("RGB", (width, height), "white")
    with atomic_open(path, "wb") as handle:
        image.save(handle, format="PNG")
