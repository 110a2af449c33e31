"""`dfa-gpt serve`: the interactive deepfake analysis web demo (Gradio).

Upload a face image (a new image starts a new conversation), press Analyse for the bench's three abilities
with their parsed verdicts and the DF-D forgery probability, then chat about the image with streamed
replies. One model, loaded once, serves every visitor; its requests queue one at a time.
"""

from __future__ import annotations

import html
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dfa_bench.io import iter_jsonl
from dfa_gpt.interactive import TASK_TITLES, Analyst, Conversation, Finding, load_image

# no usage reports or update checks from an offline demo
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

NO_IMAGE = "Upload a face image first."
SYSTEM_FONTS = ("ui-sans-serif", "system-ui", "sans-serif")  # the default theme would fetch Google Fonts


def example_images(bench: Path | str, per_category: int = 1) -> list[Path]:
    """The first `per_category` images of each category in a bench directory (DFA-Bench-mini's test split)."""
    bench = Path(bench)
    chosen: dict[str, list[Path]] = {}
    for _, item in iter_jsonl(bench / "questions.jsonl"):
        paths = chosen.setdefault(item["category"], [])
        path = bench / item["image"]
        if len(paths) < per_category and path not in paths:
            paths.append(path)
    return [p for paths in chosen.values() for p in paths]


def findings_markdown(findings: list[Finding]) -> str:
    parts = []
    for f in findings:
        lines = [f"### {TASK_TITLES[f.task]}", f"**Question:** {html.escape(f.question)}".replace("\n", "  \n")]
        if f.error:
            lines.append(f"**Error:** {html.escape(f.error)}")
        else:
            lines.append(f"**Answer:** {html.escape(f.response)}".replace("\n", "  \n"))
            if f.verdict is not None:
                lines.append(f"**Verdict:** {f.verdict_text}")
            if f.probability is not None:
                lines.append(f"**P(forgery):** {f.probability:.3f}")
        parts.append("\n\n".join(lines))
    return "\n\n".join(parts)


def upload_box(**kwargs: Any) -> Any:
    """A gr.File whose upload reaches the handler as its path, with nothing else created on the server.

    gradio's own File.preprocess (type="filepath", gradio 6.31 components/file.py) opens a
    NamedTemporaryFile(delete=False) in the upload cache for every upload and never removes it: one empty
    file left behind per upload. The upload is already a file in that cache; its path is all we need. The
    method is replaced on the instance: a gr.File subclass would make gradio write a .pyi beside this module.
    """
    import gradio as gr

    box = gr.File(type="filepath", **kwargs)
    box.preprocess = lambda payload: None if payload is None else str(payload.path)
    return box


def build_app(analyst: Analyst, examples: list[Path] | None = None) -> Any:
    import gradio as gr

    # The upload box is emptied after each file (the image shows beside it), ready for the next one.
    def on_upload(path: str | None, conversation: Conversation | None) -> tuple:
        if not path:
            return conversation, gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()
        name = html.escape(Path(path).name)
        try:
            image = load_image(path)
        except ValueError as exc:  # the current image and conversation are kept
            # the file's own name, not where Gradio keeps its upload on the server
            status = f"**Cannot use {name}:** {html.escape(str(exc).replace(str(path), Path(path).name))}"
            return conversation, None, gr.skip(), status, gr.skip(), gr.skip()
        status = f"Image: {name} ({image.width} x {image.height})"
        return Conversation(image, Path(path).name), None, image, status, "", []

    def on_analyse(conversation: Conversation | None) -> str:
        if conversation is None:
            return NO_IMAGE
        return findings_markdown(analyst.analyse(conversation))

    def on_message(
        text: str, history: list, conversation: Conversation | None, temperature: float, top_p: float,
        max_new_tokens: float,
    ) -> Iterator[tuple]:  # fmt: skip
        """Streams (chat history, message box, status, conversation); the finished turn joins the conversation."""
        text = (text or "").strip()
        if not text:
            yield history, gr.skip(), gr.skip(), gr.skip()
            return
        if conversation is None:
            yield history, text, NO_IMAGE, gr.skip()
            return
        history = [*history, {"role": "user", "content": text}, {"role": "assistant", "content": ""}]
        yield history, "", gr.skip(), gr.skip()
        try:
            for piece in analyst.stream(
                conversation, text, temperature=temperature, top_p=top_p, max_new_tokens=int(max_new_tokens)
            ):
                history[-1] = {"role": "assistant", "content": history[-1]["content"] + piece}
                yield history, "", gr.skip(), gr.skip()
        except Exception as exc:  # a failed reply is reported; the server and the conversation go on
            yield history, "", f"**Error:** {html.escape(f'{type(exc).__name__}: {exc}')}", conversation
            return
        yield history, "", gr.skip(), conversation  # stored back: the next turn sees this one

    with gr.Blocks(title="DFA-GPT: interactive deepfake analysis") as app:
        conversation = gr.State(None)
        gr.Markdown("# DFA-GPT: interactive deepfake analysis\nUpload a face, press **Analyse**, then ask about it.")
        with gr.Row():
            with gr.Column(scale=1):
                upload = upload_box(label="Face image", file_types=["image"], elem_id="upload")
                shown = gr.Image(label="Image", type="pil", interactive=False, elem_id="shown")
                status = gr.Markdown(NO_IMAGE, elem_id="status")
                analyse = gr.Button("Analyse", variant="primary", elem_id="analyse")
                with gr.Accordion("Parameters", open=False):
                    temperature = gr.Slider(0.0, 1.5, value=0.0, step=0.05, label="Temperature (0: greedy)")
                    top_p = gr.Slider(0.05, 1.0, value=1.0, step=0.05, label="Top-p")
                    max_new_tokens = gr.Slider(16, 1024, value=256, step=16, label="Max new tokens")
                if examples:
                    gr.Examples([[str(p)] for p in examples], inputs=[upload], label="Examples from DFA-Bench-mini")
            with gr.Column(scale=2):
                analysis = gr.Markdown(elem_id="analysis")
                chatbot = gr.Chatbot(label="Conversation", elem_id="chatbot")
                message = gr.Textbox(label="Ask about the image", placeholder="Where are the artifacts?",
                                     elem_id="message")  # fmt: skip
        # one model: every request that runs it waits in one queue, one at a time
        upload.change(on_upload, [upload, conversation], [conversation, upload, shown, status, analysis, chatbot])
        analyse.click(on_analyse, [conversation], [analysis], concurrency_id="model")
        message.submit(
            on_message,
            [message, chatbot, conversation, temperature, top_p, max_new_tokens],
            [chatbot, message, status, conversation],
            concurrency_id="model",
        )
    return app


def launch(app: Any, *, host: str, port: int, examples: list[Path] | None = None, block: bool = True) -> Any:
    import gradio as gr

    return app.launch(
        server_name=host,
        server_port=port,
        theme=gr.themes.Default(font=SYSTEM_FONTS, font_mono=("ui-monospace", "monospace")),
        allowed_paths=sorted({str(p.parent.resolve()) for p in examples or []}),
        prevent_thread_lock=not block,
        show_error=True,
        quiet=not block,
    )
