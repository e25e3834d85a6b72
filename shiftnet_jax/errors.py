"""One-line errors: the base type of every problem a user can fix, and its formatters.

Every command line and the studio print ``str(e)`` of a :class:`UserError` as
one line (exit 1, or a 4xx answer) and never a traceback; :func:`one_line` and
:func:`first_line` make any text or exception fit that line.
"""

from __future__ import annotations

MAX_MESSAGE = 300   # characters of a message


class UserError(ValueError):
    """A problem in what the user gave (a file, a field, a value); str(e) is one line."""


def cannot_write(path, e: OSError, needed: int | None = None) -> UserError:
    """One line for a failed write: the file, the reason and, when the disk is full, the free
    space and the space needed (``needed`` bytes)."""
    import os
    import shutil

    why = e.strerror or first_line(e)
    try:
        free = shutil.disk_usage(os.path.dirname(os.path.abspath(path)) or ".").free
        space = f"; {free / 2**20:.3g} MB free" + (f", {needed / 2**20:.3g} MB needed" if needed else "")
    except OSError:
        space = ""
    return UserError(f"cannot write {escaped(os.fspath(path))} ({why}{space})")


def write_atomically(path, data: bytes):
    """Write ``data`` to ``path`` (parent folders created) through a temporary file renamed into
    place: never a partial file; a failure (a full disk) is one :func:`cannot_write` line."""
    import os
    from pathlib import Path

    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise cannot_write(path, e, len(data)) from None
    return path


def one_line(text: str, n: int = MAX_MESSAGE) -> str:
    """``text`` as one printable line of at most ``n`` characters."""
    text = "".join(c if c.isprintable() else " " for c in str(text)[: 4 * n])
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def first_line(e: BaseException | str, n: int = 200) -> str:
    """The first line of an exception's message (its type's name when it has none), or of a text."""
    lines = str(e).strip().splitlines()
    return one_line(lines[0], n) if lines else type(e).__name__



def escaped(text, n: int = 200) -> str:
    """``text`` (a file name, a key) for a message: control characters escaped (a name with a
    newline or ESC cannot break or colour the line), at most ``n`` characters and an ellipsis."""
    text = text if isinstance(text, str) else str(text)
    out = "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text[:n])
    return out[: n + 20] + ("…" if len(text) > n else "")


def quote(text, n: int = 60) -> str:
    """``text`` escaped (:func:`escaped`) and in quotes."""
    out = escaped(text, n)
    return "'" + (out[:-1] + "…'" if out.endswith("…") else out + "'")
