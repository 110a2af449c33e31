"""The HTML leaderboard in a real headless browser (conftest's `driver`: Debian's chromium)."""

from __future__ import annotations

from leaderboard_fixtures import fake_entry
from PIL import Image

from dfa_bench.leaderboard.render import render


def _entries() -> list[dict]:
    return [
        fake_entry("Alpha", dfd=(0.60, 0.40, 0.45), dfc=0.30, ad=0.20),
        fake_entry("Beta", dfd=(0.70, 0.30, 0.35), dfc=0.10, ad=None),
        fake_entry("Gamma", dfd=(0.55, 0.45, 0.30), dfc=0.50, ad=0.25),
        fake_entry("Delta", dfd=(0.65, 0.35, 0.40), dfc=None, ad=0.05),
        fake_entry("Probe", "vision-only", dfd=(0.80, 0.20, 0.21), dfc=0.60, ad=None),
        fake_entry("Tuned", "tuned", dfd=(0.90, 0.10, 0.11), dfc=0.9, ad=0.40, provenance="reported"),
    ]


def test_html_page_renders_and_sorts_by_clicking_a_header(driver, tmp_path):
    from selenium.webdriver.common.by import By

    page = tmp_path / "leaderboard.html"
    page.write_text(render(_entries(), "html", sort="dfd_acc"), encoding="utf-8")
    driver.get(page.as_uri())
    assert driver.title == "DFA-Bench leaderboard"

    def general_models() -> list[str]:
        cells = driver.find_elements(By.CSS_SELECTOR, 'tbody[data-group="general MLLM"] tr.entry td.model')
        return [c.text for c in cells]

    def group_titles() -> list[str]:
        return [e.text for e in driver.find_elements(By.CSS_SELECTOR, "tr.group th")]

    assert general_models() == ["Beta", "Delta", "Alpha", "Gamma"]  # as rendered: DF-D ACC, best first
    shot = tmp_path / "leaderboard.png"
    assert driver.save_screenshot(str(shot))
    with Image.open(shot) as image:
        assert image.format == "PNG" and image.size[0] >= 800 and image.size[1] >= 500
        assert len(image.convert("RGB").getcolors(1 << 20) or []) > 20  # text and shading, not a blank page
    assert shot.stat().st_size > 10_000

    header = driver.find_element(By.CSS_SELECTOR, 'th[data-key="dfc_acc"]')
    header.click()
    assert general_models() == ["Gamma", "Alpha", "Beta", "Delta"]  # higher DF-C ACC first, missing last
    assert header.get_attribute("aria-sort") == "descending"
    header.click()
    assert general_models() == ["Beta", "Alpha", "Gamma", "Delta"]  # reversed; missing still last
    driver.find_element(By.CSS_SELECTOR, 'th[data-key="dfd_acer"]').click()
    assert general_models() == ["Gamma", "Beta", "Delta", "Alpha"]  # lower ACER first
    driver.find_element(By.CSS_SELECTOR, 'th[data-key="model"]').click()
    assert general_models() == ["Alpha", "Beta", "Delta", "Gamma"]
    assert group_titles() == ["Vision-only models", "General MLLMs", "Tuned models"]  # groups never mix

    # self-contained: the page loaded no resource at all, and ran without script errors
    assert driver.execute_script("return performance.getEntriesByType('resource').length") == 0
    errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors
