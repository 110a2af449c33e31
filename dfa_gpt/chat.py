"""`dfa-gpt chat`: a terminal conversation about one face image, replies streamed as they are generated.

Lines are read from standard input (a terminal or a pipe); a line that starts with `/` is a command.
"""

from __future__ import annotations

import sys
from typing import TextIO

from dfa_gpt.interactive import TASK_TITLES, Analyst, Conversation, Finding, load_image

HELP = """commands:
  /analyse      ask DF-D, DF-C and AD with the bench's prompts; show each parsed verdict and P(forgery)
  /image PATH   switch to another image (a new conversation)
  /reset        start a new conversation about the same image
  /help         this list
  /quit         leave (so does end of input)
anything else is a question about the image"""


def format_finding(finding: Finding) -> str:
    lines = [f"[{TASK_TITLES[finding.task]}] {finding.question}"]
    if finding.error:
        lines.append(f"  error: {finding.error}")
        return "\n".join(lines)
    lines.append(f"  answer: {finding.response}")
    if finding.verdict is not None:
        lines.append(f"  verdict: {finding.verdict_text}")
    if finding.probability is not None:
        lines.append(f"  P(forgery): {finding.probability:.3f}")
    return "\n".join(lines)


class ChatSession:
    """The command loop, with its own input and output streams (so that tests can drive it)."""

    def __init__(
        self,
        analyst: Analyst,
        conversation: Conversation,
        *,
        stdin: TextIO = sys.stdin,
        stdout: TextIO = sys.stdout,
        temperature: float = 0.0,
        top_p: float = 1.0,
        max_new_tokens: int = 512,
    ) -> None:
        self.analyst, self.conversation = analyst, conversation
        self.stdin, self.stdout = stdin, stdout
        self.settings = {"temperature": temperature, "top_p": top_p, "max_new_tokens": max_new_tokens}
        self.interactive = stdin.isatty()

    def say(self, text: str = "", end: str = "\n") -> None:
        self.stdout.write(text + end)
        self.stdout.flush()

    def run(self) -> int:
        self.say(f"image: {self.conversation.name} ({self.conversation.image.width} x "
                 f"{self.conversation.image.height}). /help lists the commands.")  # fmt: skip
        while True:
            if self.interactive:
                self.say("you> ", end="")
            line = self.stdin.readline()
            if not line:  # end of input
                return 0
            line = line.strip()
            if not line:
                continue
            if line.startswith("/"):
                if self.command(line) == "quit":
                    return 0
                continue
            self.reply(line)

    def command(self, line: str) -> str | None:
        name, _, argument = line.partition(" ")
        if name in ("/quit", "/exit"):
            return "quit"
        if name == "/help":
            self.say(HELP)
        elif name == "/reset":
            self.conversation = Conversation(self.conversation.image, self.conversation.name)
            self.say("new conversation")
        elif name == "/image":
            if not argument.strip():
                self.say("error: /image needs a path")
                return None
            try:
                image = load_image(argument.strip())
            except ValueError as exc:  # the conversation so far is kept
                self.say(f"error: {exc}")
                return None
            self.conversation = Conversation(image, argument.strip())
            self.say(f"image: {argument.strip()} ({image.width} x {image.height}); new conversation")
        elif name in ("/analyse", "/analyze"):
            for finding in self.analyst.analyse(self.conversation):
                self.say(format_finding(finding))
        else:
            self.say(f"error: unknown command {name}; /help lists them")
        return None

    def reply(self, text: str) -> None:
        self.say("dfa-gpt> ", end="")
        try:
            for piece in self.analyst.stream(self.conversation, text, **self.settings):
                self.stdout.write(piece)
                self.stdout.flush()
        except Exception as exc:  # a failed generation ends this reply, not the session
            self.say(f"\nerror: {type(exc).__name__}: {exc}")
            return
        self.say()
