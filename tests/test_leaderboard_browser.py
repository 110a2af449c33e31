"""The HTML leaderboard in a real headless browser (Debian's chromium through chromedriver).

Not skipped when the browser is missing: it fails and says how to install it. Selenium is pointed at
the Debian driver and browser explicitly, so Selenium Manager never tries to download one.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from leaderboard_fixtures import fake_entry
from PIL import Image

from dfa_bench.leaderboard.render import render

INSTALL = "apt-get update && apt-get install -y chromium chromium-driver (and pip install selenium: the dev extra)"
CHROMIUM = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
CHROMEDRIVER = "/usr/bin/chromedriver"


@pytest.fixture
def driver():
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail(f"selenium is not installed; install the browser test's tools: {INSTALL}")
    browser = next((p for p in CHROMIUM if Path(p).is_file()), None) or shutil.which("chromium")
    if not browser or not Path(CHROMEDRIVER).is_file():
        pytest.fail(f"chromium or {CHROMEDRIVER} is missing; run the install step: {INSTALL}")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    instance = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        yield instance
    finally:
        instance.quit()


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
