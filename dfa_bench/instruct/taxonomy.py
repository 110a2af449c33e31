"""DF-40 technique -> DFA-Bench category, from the DF40 dataset's own listing.

FE in DF-40 proper has one well-populated subset; the paper adds StarGAN, StarGANv2 and StyleCLIP
edits, which DF40 ships under face editing as well, so all of them are here.
"""

from __future__ import annotations

TECHNIQUES_BY_CATEGORY: dict[str, tuple[str, ...]] = {
    "face_swapping": ("fsgan", "faceswap", "simswap", "inswap", "blendface", "uniface", "mobileswap", "e4s",
                      "facedancer", "deepfacelab"),
    "face_reenactment": ("fomm", "facevid2vid", "wav2lip", "mraa", "one_shot_free", "pirender", "tpsm", "lia", "danet",
                         "sadtalker", "mcnet", "hyperreenact", "heygen"),
    "entire_face_synthesis": ("vqgan", "stylegan2", "stylegan3", "styleganxl", "sd2.1", "ddim", "rddm", "pixart", "dit",
                              "sit", "midjourney", "whichfaceisreal"),
    "face_editing": ("collabdiff", "e4e", "stargan", "starganv2", "styleclip"),
}  # fmt: skip
TECHNIQUE_CATEGORY: dict[str, str] = {t: c for c, techniques in TECHNIQUES_BY_CATEGORY.items() for t in techniques}
# Techniques whose DF40 folders hold `fake/` and `real/` halves instead of `ff/` and `cdf/` source domains.
FAKE_REAL_LAYOUT = frozenset({"heygen", "midjourney", "whichfaceisreal", "stargan", "starganv2", "styleclip", "e4e",
                              "collabdiff"})  # fmt: skip


def normalise_technique(name: str) -> str:
    """'SimSwap', 'sd-2.1', 'one-shot-free' -> the DF40 folder name."""
    key = name.strip().lower().replace("-", "_").replace(" ", "_")
    return {"sd_2.1": "sd2.1", "sd21": "sd2.1", "stylegan_xl": "styleganxl", "face_swap": "faceswap"}.get(key, key)


def category_of(technique: str) -> str:
    """The DFA-Bench category of a DF-40 technique; KeyError names the unknown technique."""
    key = normalise_technique(technique)
    if key not in TECHNIQUE_CATEGORY:
        raise KeyError(f"unknown DF-40 technique {technique!r}; known: {sorted(TECHNIQUE_CATEGORY)}")
    return TECHNIQUE_CATEGORY[key]
