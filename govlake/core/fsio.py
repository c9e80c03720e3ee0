"""Atomic file writes and a cross-process file lock for every file GovLake writes outside Delta.

A reader of a file written here sees either its old content or its new content, never a part of it, also when the
writer is killed mid-write (``kill -9``, out of memory, a lost machine): the content goes to a temporary file in the
target's own folder (``.<name>.<random>.tmp``), which is flushed and ``fsync``-ed, then ``os.replace``-d onto the
target (one atomic rename on POSIX, same file system by construction), and the folder is ``fsync``-ed so that the
rename survives a crash. On an exception the temporary file is removed and the target is left as it was; a killed
writer can leave a stray ``.<name>.*.tmp`` file (:func:`is_temp_name`), never a partial target.

A rename makes a write atomic for readers, not two writers' read-modify-write cycles: where several processes
update one file (the Great Expectations project of ``govlake.quality.rules``), they hold :func:`file_lock` around it.

Used by: ``govlake.quality.gx`` (the GX project file, stores and Data Docs pages), ``govlake.analysis.report``
(the HTML report), ``govlake.pipeline`` (run summaries), ``govlake.quality.audit`` (recall and cross-check reports),
``govlake.unified.linkage`` (linkage accuracy reports).
"""
from __future__ import annotations

import fcntl
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO

#: Suffix of the temporary files of an atomic write (named ``.<target name>.<random>.tmp``).
TEMP_SUFFIX = ".tmp"


def _umask() -> int:
    """The process's umask, read without changing it (``/proc/self/status``, Linux 4.7+), else by setting and
    restoring it (not thread-safe, so only at import)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


#: Permissions of a new file written here: what ``open(path, "w")`` gives (0666 less the umask); ``mkstemp``'s own
#: 0600 would hide reports and Data Docs pages from other users.
_NEW_FILE_MODE = 0o666 & ~_umask()


def is_temp_name(name: str) -> bool:
    """Whether ``name`` (a file name, no folder) is that of a temporary file of an atomic write (``.<name>.<random>
    .tmp``), e.g. one left by a killed writer; listings of written files skip these."""
    return name.startswith(".") and name.endswith(TEMP_SUFFIX)


def _fsync_dir(folder: Path) -> None:
    """fsync ``folder`` so that a rename in it is on disk (best effort: some file systems refuse it)."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", encoding: str | None = None,
                newline: str | None = None) -> Iterator[IO]:
    """Open ``path`` for writing through a temporary file that replaces ``path`` when the ``with`` block ends
    without an exception (see the module docstring).

    The folder is created if needed. A new file gets the permissions ``open(path, "w")`` would give it; an existing
    file keeps its own.

    Args:
        path: the target file.
        mode: ``"w"`` (text; ``encoding`` defaults to UTF-8) or ``"wb"`` (bytes).
        encoding: text encoding (text mode only).
        newline: as :func:`open` (text mode only).

    Yields:
        the open temporary file.

    Raises:
        ValueError: another ``mode``.
        OSError: the folder or the file cannot be written (the target is left as it was).
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open: mode must be 'w' or 'wb', not {mode!r}")
    target = Path(path)
    folder = target.parent
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=TEMP_SUFFIX, dir=folder)
    handle: IO
    try:
        try:
            os.fchmod(fd, os.stat(target).st_mode & 0o7777)
        except FileNotFoundError:
            os.fchmod(fd, _NEW_FILE_MODE)
        if mode == "wb":
            handle = os.fdopen(fd, "wb")
        else:
            handle = os.fdopen(fd, "w", encoding=encoding or "utf-8", newline=newline)
    except BaseException:
        os.close(fd)
        os.unlink(tmp_name)
        raise
    try:
        with handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    _fsync_dir(folder)


def atomic_write_bytes(path: str | os.PathLike, data: bytes, skip_unchanged: bool = False) -> bool:
    """Write ``data`` to ``path`` atomically (:func:`atomic_open`).

    Args:
        skip_unchanged: leave ``path`` untouched (no write, same modification time) when it already holds exactly
            ``data``.

    Returns:
        True when ``path`` was written, False when it was skipped as unchanged.

    Raises:
        OSError: as :func:`atomic_open`.
    """
    if skip_unchanged:
        try:
            if Path(path).read_bytes() == data:
                return False
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            pass
    with atomic_open(path, "wb") as handle:
        handle.write(data)
    return True


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8",
                      skip_unchanged: bool = False) -> bool:
    """Write ``text`` to ``path`` atomically, encoded with ``encoding`` (no newline translation); see
    :func:`atomic_write_bytes` for ``skip_unchanged`` and the return value."""
    return atomic_write_bytes(path, text.encode(encoding), skip_unchanged=skip_unchanged)


@contextmanager
def file_lock(path: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created if needed, with its folder) for the ``with`` block; blocks
    until it is free.

    ``flock`` belongs to an open file description and every call opens the file anew, so the lock excludes other
    processes and also other threads of this process. Not re-entrant: a thread that nests two locks on one file
    waits for itself forever. Released when the block ends or the process dies.
    """
    lock_path = Path(path)
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
