from __future__ import annotations

import shutil
from pathlib import Path

# lmms-eval resets loguru's sinks when these modules are first imported, binding its WARNING sink to the stderr
# of that moment. Imported here, that is the session's stderr, not the stream of one CliRunner invocation,
# which closes when the invocation ends and would make every later warning print a loguru traceback instead.
import lmms_eval.llm_judge.launcher  # noqa: F401
import lmms_eval.models  # noqa: F401
import pytest

from dfa_bench.bench import build_bench
from dfa_bench.instruct.synthetic import make_source


@pytest.fixture(scope="session")
def synthetic_source(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("source")
    make_source(root, 30, seed=1)
    return root


@pytest.fixture
def bench_dir(synthetic_source: Path, tmp_path: Path) -> Path:
    """A fresh, writable 30-record bench per test (tests may tamper with it)."""
    build_bench(synthetic_source / "records.jsonl", synthetic_source, tmp_path / "bench", seed=7, name="test-bench")
    return tmp_path / "bench"


# The browser tests (leaderboard HTML, the web demo) drive Debian's chromium through its chromedriver. Not
# skipped when the browser is missing: they fail and say how to install it. Selenium is pointed at the Debian
# driver and browser explicitly, so Selenium Manager never tries to download one.
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
