"""Writing user-named output files: checked up front, written atomically, ordinary permissions.

Every command writes its results through :func:`write_atomic`: the data goes
to a hidden temporary file beside the target, which is renamed over it only
when complete, so an interrupted run never leaves a half-written file.  The
temporary file is created with mode 0666 filtered by the umask (0644
normally), like any file a program writes, and an error names the user's
path, never the temporary one.  :func:`check_outputs` refuses, before any
work is done, an output that is a directory, cannot be created, or is one of
the inputs.
"""
from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Iterable, Mapping

__all__ = ["OutputPathError", "write_atomic", "check_outputs"]


class OutputPathError(OSError):
    """An output path cannot be written, or would overwrite an input."""


def _cannot_write(path: Path, e: OSError) -> OutputPathError:
    err = OutputPathError(f"cannot write {path}: {e.strerror or e}")
    err.errno = e.errno
    return err


def write_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temporary file + rename), creating parent folders.

    Raises
    ------
    OutputPathError
        The file cannot be written; the message names ``path``.
    """
    path = Path(path)
    if path.is_dir():
        raise OutputPathError(f"cannot write {path}: is a directory (give a file name)")
    tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies, as for any file
    except OSError as e:
        raise _cannot_write(path, e) from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError):
            raise _cannot_write(path, e) from None
        raise


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return a.resolve() == b.resolve()


def check_outputs(outputs: Mapping[str, str | os.PathLike | None],
                  inputs: Iterable[str | os.PathLike | None] = ()) -> None:
    """Refuse outputs that cannot be written, before any work is done.

    Parameters
    ----------
    outputs : mapping
        Option name (for the message, e.g. ``"-o"``) to the path it names;
        ``None`` entries are skipped.
    inputs : iterable of path
        Files the command reads; no output may be one of them (also not
        through a symlink or another spelling of the path).

    Raises
    ------
    OutputPathError
        An output is a directory, sits under a file or an unwritable folder,
        is an input, or is named twice.
    """
    ins = [Path(p) for p in inputs if p is not None]
    seen: dict[Path, str] = {}
    for flag, p in outputs.items():
        if p is None:
            continue
        path = Path(p)
        for src in ins:
            if _same_file(path, src):
                raise OutputPathError(f"{flag} {path} is the input file {src}; refusing to overwrite it "
                                      "(choose another output name)")
        key = path.resolve()
        if key in seen:
            raise OutputPathError(f"{flag} {path} is also {seen[key]}; give each output its own file")
        seen[key] = f"{flag} {path}"
        if path.is_dir():
            raise OutputPathError(f"{flag} {path}: is a directory (give a file name)")
        parent = path.parent
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
        if not parent.is_dir():
            raise OutputPathError(f"{flag} {path}: {parent} is not a directory")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise OutputPathError(f"{flag} {path}: cannot write in {parent} (permission denied)")
