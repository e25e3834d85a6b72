"""One-line errors: the base type of every problem a user can fix, and its formatters.

Every command line and the studio print ``str(e)`` of a :class:`UserError` as
one line (exit 1, or a 4xx answer) and never a traceback; :func:`one_line` and
:func:`first_line` make any text or exception fit that line.
"""

from __future__ import annotations

MAX_MESSAGE = 300   # characters of a message


class UserError(ValueError):
    """A problem in what the user gave (a file, a field, a value); str(e) is one line."""


def one_line(text: str, n: int = MAX_MESSAGE) -> str:
    """``text`` as one printable line of at most ``n`` characters."""
    text = "".join(c if c.isprintable() else " " for c in str(text)[: 4 * n])
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def first_line(e: BaseException | str, n: int = 200) -> str:
    """The first line of an exception's message (its type's name when it has none), or of a text."""
    lines = str(e).strip().splitlines()
    return one_line(lines[0], n) if lines else type(e).__name__
