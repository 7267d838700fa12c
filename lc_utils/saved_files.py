"""Files the package writes and reads back: atomic writes, and refusing a file made with other settings.

Every file a run, a study or the annotator saves goes through :func:`atomic_write` (an interrupted
write leaves the previous file whole; two writers never share a temporary name), and every file
that is reused only when it was made the same way goes through :func:`refuse_other_settings`.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


def _default_mode() -> int:
    """The permissions a new file gets here (``0o666`` less the umask): ``mkstemp`` makes its file
    private, which the file written in its place should not inherit."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextmanager
def atomic_write(path: str | Path, mode: str = "w", *, encoding: str | None = "utf-8",
                 newline: str | None = None) -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path`` for writing, and on a clean exit flush it to disk and
    rename it over ``path`` in one step.

    The temporary name is unique (two processes or editors saving the same file at once never
    write into each other's), and an exception, a disconnect or a full disk mid-write leaves the
    previous ``path`` intact and no temporary file behind. ``mode`` is ``"w"`` (text, in
    ``encoding``) or ``"wb"``. An existing file's permissions are kept.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write writes new files only (mode 'w' or 'wb'), got {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, path.stat().st_mode & 0o7777 if path.exists() else _default_mode())
        text = "b" not in mode
        with os.fdopen(handle, mode, encoding=encoding if text else None,
                       newline=newline if text else None) as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def write_text(path: str | Path, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (:func:`atomic_write`); return ``path``."""
    with atomic_write(path, encoding=encoding) as file:
        file.write(text)
    return Path(path)


class OtherSettingsError(ValueError):
    """A saved file was made with other settings than the ones asked for now."""


def refuse_other_settings(path: str | Path, saved: Mapping[str, Any], wanted: Mapping[str, Any], *,
                          what: str = "was made", fix: str = "choose another file or delete it") -> None:
    """Raise :class:`OtherSettingsError` naming ``path`` and every setting whose saved value differs
    from the wanted one (both values shown), with ``fix``, the way out, at the end; nothing when
    they agree. Only the keys of ``wanted`` are compared: a caller fills in what an older file
    lacks (how it was made before the key existed) before asking."""
    changed = [key for key in wanted if saved.get(key) != wanted[key]]
    if not changed:
        return
    details = "; ".join(f"{key}: {_short(saved.get(key))} there, {_short(wanted[key])} now"
                        for key in changed)
    raise OtherSettingsError(f"{path} {what} with other settings ({details}); {fix}")


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit - 3]}..."
