"""Sample frames from a video at a fixed interval (the paper samples video subsets this way)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from dfa_bench.schema import ValidationError


def sample_frames(video: Path | str, every: int = 10, max_frames: int | None = None) -> Iterator[tuple[int, object]]:
    """Yield (frame index, RGB PIL image) for frames 0, every, 2*every, ... (decoding streams; memory stays flat).

    An unreadable or corrupt video raises ValidationError naming the file.
    """
    import av

    if every < 1:
        raise ValueError(f"every must be >= 1, got {every}")
    try:
        container = av.open(str(video))
    except (av.error.FFmpegError, OSError) as exc:
        raise ValidationError(f"unreadable video: {exc}", path=str(video)) from None
    taken = 0
    try:
        for index, frame in enumerate(container.decode(video=0)):
            if index % every:
                continue
            yield index, frame.to_image()
            taken += 1
            if max_frames is not None and taken >= max_frames:
                return
    except av.error.FFmpegError as exc:
        raise ValidationError(f"corrupt video after {taken} sampled frames: {exc}", path=str(video)) from None
    finally:
        container.close()
