"""`dfa-gpt serve` in headless chromium: upload, Analyse, chat, a corrupt upload, a screenshot."""

from __future__ import annotations

import socket

import numpy as np
import pytest
from PIL import Image

from dfa_bench.bench import build_bench
from dfa_bench.io import iter_jsonl
from dfa_bench.schema import CATEGORIES
from dfa_bench.tiny_models import build_tiny_llava
from dfa_gpt.interactive import TASK_TITLES, Analyst, load_adapter
from dfa_gpt.serve import build_app, example_images, launch


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RecordingAnalyst(Analyst):
    """Records how many earlier turns each chat reply was generated with."""

    seen: list[int] = []

    def stream(self, conversation, text, **settings):
        self.seen.append(len(conversation.turns))
        yield from super().stream(conversation, text, **settings)


@pytest.fixture(scope="module")
def server(tmp_path_factory, synthetic_source):
    root = tmp_path_factory.mktemp("serve")
    analyst = RecordingAnalyst(load_adapter(str(build_tiny_llava(root / "tiny-llava")), device="cpu", dtype="float32",
                                   max_new_tokens=6))  # fmt: skip
    build_bench(synthetic_source / "records.jsonl", synthetic_source, root / "bench", seed=7, name="examples")
    examples = example_images(root / "bench")
    port = free_port()
    app = build_app(analyst, examples)
    launch(app, host="127.0.0.1", port=port, block=False, examples=examples)
    yield f"http://127.0.0.1:{port}/"
    app.close()


def test_examples_are_one_image_per_category(bench_dir):
    examples = example_images(bench_dir)
    category = {
        str(bench_dir / item["image"]): item["category"] for _, item in iter_jsonl(bench_dir / "questions.jsonl")
    }
    assert sorted(category[str(p)] for p in examples) == sorted(CATEGORIES)
    assert all(p.is_file() for p in examples)


def test_upload_analyse_chat_and_a_corrupt_upload(server, driver, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    good = tmp_path / "face.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 48, 3), dtype=np.uint8)).save(good)
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(good.read_bytes()[:80])
    wait = WebDriverWait(driver, 120)

    def text(element_id: str) -> str:
        return driver.find_element(By.ID, element_id).text

    def upload(path) -> None:
        driver.find_element(By.CSS_SELECTOR, "#upload input[type=file]").send_keys(str(path))

    driver.get(server)
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#upload input[type=file]"))
    driver.find_element(By.ID, "analyse").click()
    wait.until(lambda d: "Upload a face image first" in text("analysis"))

    upload(good)
    wait.until(lambda d: "Image: face.png (48 x 48)" in text("status"))
    driver.find_element(By.ID, "analyse").click()
    wait.until(lambda d: all(title in text("analysis") for title in TASK_TITLES.values()))
    analysis = text("analysis")
    assert "Verdict:" in analysis and "P(forgery):" in analysis

    box = driver.find_element(By.CSS_SELECTOR, "#message textarea")
    box.send_keys("Where are the artifacts?", Keys.ENTER)
    wait.until(lambda d: "Where are the artifacts?" in text("chatbot"))
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#chatbot .message-row")) >= 2)
    box = driver.find_element(By.CSS_SELECTOR, "#message textarea")
    box.send_keys("And the mouth?", Keys.ENTER)
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#chatbot .message-row")) >= 4)
    wait.until(lambda d: len(RecordingAnalyst.seen) == 2)
    assert RecordingAnalyst.seen == [0, 2]  # the second reply saw the first turn pair: multi-turn
    shot = tmp_path / "web-demo.png"
    assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 10_000

    upload(corrupt)
    wait.until(lambda d: "Cannot use corrupt.png" in text("status"))
    assert "unreadable" in text("status") and "/" not in text("status")  # no server path shown
    upload(good)  # the server is still there, and the next good upload works
    wait.until(lambda d: "Image: face.png" in text("status"))
    wait.until(lambda d: "Where are the artifacts?" not in text("chatbot"))  # a new image: a new conversation

    driver.find_element(By.CSS_SELECTOR, ".gallery-item, [data-testid='examples'] tbody tr, .examples button").click()
    wait.until(lambda d: "Image: " in text("status") and "face.png" not in text("status"))  # an example image


def test_uploads_leave_nothing_but_the_uploads_behind(tmp_path, monkeypatch):
    """gradio's stock File left an empty temporary file in the upload cache per upload (issue 24)."""
    from gradio_client import Client, handle_file

    cache = tmp_path / "gradio"
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(cache))
    face = tmp_path / "face.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(face)
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(face.read_bytes()[:80])
    app = build_app(analyst=None)  # an upload runs no model
    port = free_port()
    launch(app, host="127.0.0.1", port=port, block=False)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        statuses = [client.predict(handle_file(str(p)), None, api_name="/on_upload")[2] for p in (face, face, corrupt)]
    finally:
        app.close()
    assert statuses[:2] == ["Image: face.png (40 x 40)"] * 2 and statuses[2].startswith("**Cannot use corrupt.png:**")
    left = sorted(p for p in cache.rglob("*") if p.is_file())
    assert [p for p in left if p.stat().st_size == 0] == []
    assert sorted(p.name for p in left if p.suffix == ".png") == ["corrupt.png", "face.png"]  # content-addressed
