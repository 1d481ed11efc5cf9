"""The one error type users see: a clear one-line message and exit status 2, never a traceback."""
from __future__ import annotations

import click


class UserError(click.ClickException):
    """Bad input or a refused action. The message names the file, line or field and what was expected.

    Library code raises it too; the CLI prints ``Error: <message>`` and exits with status 2.
    """

    exit_code = 2

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split("\n")))


def where(path, line: int | None = None) -> str:
    """Format a location for messages: ``file.txt`` or ``file.txt:12``."""
    return f"{path}:{line}" if line is not None else str(path)
