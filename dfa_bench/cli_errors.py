"""How every command line (dfa-bench, its leaderboard commands, dfa-gpt) refuses bad input: one red
`error:` line on stderr and the documented exit status (2: bad input, 1: a run that failed)."""

from __future__ import annotations

from pathlib import Path
from typing import NoReturn

import typer


def fail(message: str, code: int = 2) -> NoReturn:
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    raise typer.Exit(code)


def check_outputs(outputs: dict[str, Path | None], inputs: dict[str, Path] | None = None) -> None:
    """Refuse an output path that is a directory, or that is one of the inputs (or another output)."""
    seen: dict[Path, str] = {path.resolve(): flag for flag, path in (inputs or {}).items()}
    for flag, path in outputs.items():
        if path is None:
            continue
        if path.is_dir():
            fail(f"{path}: {flag} is a directory; give a file path")
        resolved = path.resolve()
        if resolved in seen:
            fail(f"{path}: {flag} is also {seen[resolved]}; it would be overwritten")
        seen[resolved] = flag
