"""Strict image loading: a damaged file is an error naming it, never an image of grey or black pixels.

lmms-eval sets PIL's global `ImageFile.LOAD_TRUNCATED_IMAGES = True` when it is imported, so a truncated
PNG or JPEG decodes "successfully" with its missing rows filled in. Every image DFA-Bench shows a model
or validates goes through `load_rgb`, which decodes the whole file with that flag off.
"""

from __future__ import annotations

import threading
from pathlib import Path

from dfa_bench.schema import ValidationError

# The flag is a module global of PIL: flip it back and forth under one lock (lmms-eval may call
# doc_to_visual from several threads), and leave it as whoever set it found it.
_FLAG_LOCK = threading.Lock()


def load_rgb(path: Path | str, *, what: str = "image", max_pixels: int | None = None) -> object:
    """The fully decoded RGB PIL image at `path`; ValidationError naming the file if it is damaged, or
    larger than `max_pixels` (checked from the header, before anything is decoded)."""
    from PIL import Image, ImageFile

    with _FLAG_LOCK:
        saved = ImageFile.LOAD_TRUNCATED_IMAGES
        ImageFile.LOAD_TRUNCATED_IMAGES = False
        try:
            with Image.open(path) as image:
                if max_pixels and image.width * image.height > max_pixels:
                    raise ValueError(f"{image.width} x {image.height} pixels, more than the {max_pixels:,} allowed")
                image.load()
                return image.convert("RGB")
        except Exception as exc:  # OSError, UnidentifiedImageError, DecompressionBombError, SyntaxError...
            raise ValidationError(f"unreadable {what}: {exc}", path=str(path)) from None
        finally:
            ImageFile.LOAD_TRUNCATED_IMAGES = saved
