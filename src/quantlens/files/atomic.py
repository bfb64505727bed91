"""Replacing the files quantlens owns in a directory, whole or not at all.

:func:`update_directory` is how checkpoints and report folders are written:

- the new files are written into a staging directory beside the target (inside it when the
  parent cannot be written), flushed to disk, then renamed over the old ones one by one, in
  the order given, with Ctrl-C held off while they move; the staging directory goes away;
- only the files named are replaced (and the stale ones named removed): a user's other files
  in the directory stay, and a symlinked directory stays a symlink (its target is updated);
- an advisory lock (``fcntl.flock`` on the directory itself, no lock file) serialises
  writers to one directory; a writer that waits longer than ``lock_timeout`` fails with
  one line;
- staging directories left by a writer that was killed (``kill -9``) are removed by the next
  writer to that directory, which holds the lock, so none of them can still be in use; one
  killed while its files were moving (it writes the list first) is completed instead, and
  :func:`pending_file` shows readers what it is about to become; an error while they move
  puts the old files back;
- new files and directories get the permissions the umask gives, like any other file.

A reader that must not see a mix of two writers' files checks what it read against what
the last file written records (checkpoints: the SHA-256 of the weights in
``quantlens.json``, which is written last) and reads again when they disagree.

Example:
    >>> update_directory("out", lambda stage: (stage / "a.txt").write_text("hi"), ["a.txt"])
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from quantlens.errors import QuantlensError

try:
    import fcntl
except ImportError:  # Windows: no advisory locks, writers are not serialised
    fcntl = None

__all__ = [
    "LOCK_TIMEOUT_S",
    "STAGING_TAG",
    "locked",
    "pending_file",
    "resolve_target",
    "update_directory",
    "write_text_atomic",
]

LOCK_TIMEOUT_S = 600.0
STAGING_TAG = ".quantlens-staging-"
_MARKER = (
    ".swap"  # in a staging directory: the names being moved, written before the first one moves
)


@contextlib.contextmanager
def locked(
    directory: Path,
    *,
    timeout: float = LOCK_TIMEOUT_S,
    error: type[QuantlensError] = QuantlensError,
) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``directory`` (an existing directory) while the
    ``with`` block runs; other processes' ``locked(directory)`` wait for it.

    Args:
        directory: the directory to lock (its inode: a symlink to it locks the same).
        timeout: seconds to wait for another holder before giving up.
        error: the error class raised when the wait times out.

    Raises:
        ``error``: another process held the lock for ``timeout`` seconds.

    Example:
        >>> with locked(Path("out")):
        ...     ...  # no other quantlens writer changes out/ meanwhile
    """
    if fcntl is None:
        yield
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise error(
                        f"another process has been writing to {directory} for over {timeout:.0f} "
                        "s; wait for it to finish or write somewhere else"
                    ) from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)  # releases the lock


@contextlib.contextmanager
def _no_interrupt() -> Iterator[None]:
    """Hold off SIGINT (it is delivered when the block ends) in the main thread."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(
        signal, "pthread_sigmask"
    ):
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _is_staging(path: Path, name: str, owned: frozenset[str]) -> bool:
    """Whether ``path`` is a staging directory of a writer to the directory ``name``."""
    if not path.is_dir() or path.is_symlink():
        return False
    if path.name.startswith(f".{name}{STAGING_TAG}") or path.name.startswith(STAGING_TAG):
        return True
    legacy = re.compile(
        re.escape(f".{name}.") + r"[a-z0-9_]{8}\.tmp"
    )  # mkdtemp names of quantlens <= 0.1
    return bool(legacy.fullmatch(path.name)) and {p.name for p in path.iterdir()} <= owned


def _stagings(real: Path, owned: frozenset[str] = frozenset()) -> list[Path]:
    found = []
    for folder in (real.parent, real):
        try:
            found += [
                p
                for p in folder.iterdir()
                if p.name.startswith(".") and _is_staging(p, real.name, owned)
            ]
        except OSError:
            continue
    return found


def _swap_plan(staging: Path) -> list[str] | None:
    """The names a swap that was under way in ``staging`` still has to move (None: it had not
    begun)."""
    try:
        order = json.loads((staging / _MARKER).read_text())
    except (OSError, ValueError):
        return None
    return [n for n in order if isinstance(n, str) and (staging / n).is_file()]


def pending_file(target: str | os.PathLike, name: str) -> Path | None:
    """The file ``name`` of a swap into ``target`` that was cut off (``kill -9``) after it began
    and before ``name`` moved: what ``target/name`` is once the next writer completes it."""
    real = Path(target).resolve()
    for staging in _stagings(real):
        if name in (_swap_plan(staging) or []):
            return staging / name
    return None


def _remove_debris(real: Path, owned: frozenset[str]) -> None:
    """Complete the swaps that were cut off, remove every other staging directory (the
    caller holds the lock, so no writer is using one)."""
    for staging in _stagings(real, owned):
        for name in _swap_plan(staging) or []:
            os.replace(staging / name, real / name)  # roll forward: the new files were whole
        shutil.rmtree(staging, ignore_errors=True)


def _make_staging(real: Path) -> Path:
    try:
        return Path(
            tempfile.mkdtemp(prefix=f".{real.name}{STAGING_TAG}", suffix=".tmp", dir=real.parent)
        )
    except PermissionError:  # a parent we cannot write: stage inside the target
        return Path(tempfile.mkdtemp(prefix=STAGING_TAG, suffix=".tmp", dir=real))


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _swap(staging: Path, real: Path, order: list[str], stale: list[str]) -> None:
    """Move the staged files over the old ones; on an error, put the old ones back."""
    written = [n for n in order if (staging / n).is_file()]
    backups = {}
    for name in written:  # hard links to the old files, for a rollback
        with contextlib.suppress(OSError):
            os.link(real / name, staging / f"{name}.old")
            backups[name] = staging / f"{name}.old"
    with open(staging / _MARKER, "w") as f:  # from here on a cut-off swap is rolled forward
        f.write(json.dumps(written))
        f.flush()
        os.fsync(f.fileno())
    _fsync_dir(staging)
    done: list[str] = []
    with _no_interrupt():
        try:
            for name in written:
                os.replace(staging / name, real / name)
                done.append(name)
            for name in stale:
                if name not in written:
                    with contextlib.suppress(FileNotFoundError):
                        (real / name).unlink()
        except BaseException:
            for name in reversed(done):
                with contextlib.suppress(OSError):
                    if name in backups:
                        os.replace(backups[name], real / name)
                    else:
                        (real / name).unlink()
            (staging / _MARKER).unlink(missing_ok=True)
            raise
        _fsync_dir(real)


def resolve_target(target: str | os.PathLike, error: type[QuantlensError]) -> Path:
    """The real directory ``target`` names (symlinks followed); created when missing."""
    path = Path(target)
    if path.is_symlink() and not path.exists():
        raise error(
            f"{path} is a symlink to {os.readlink(path)}, which does not exist; create it or give "
            "another path"
        )
    if path.exists() and not path.is_dir():
        raise error(f"{path} exists and is not a directory; choose another output path")
    return path.resolve()


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` through a uniquely named temporary file beside it,
    renamed into place: a reader sees the old file or the new one, two writers never share
    a temporary name, and the file gets the permissions the umask gives.

    Example:
        >>> write_text_atomic("out/results.json", "{}")
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp made it 0600
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def update_directory(
    target: str | os.PathLike,
    write: Callable[[Path], None],
    order: Iterable[str],
    *,
    stale: Iterable[str] = (),
    error: type[QuantlensError] = QuantlensError,
    lock_timeout: float = LOCK_TIMEOUT_S,
) -> Path:
    """Replace the files ``order`` names in ``target`` with those ``write(staging)`` makes.

    Args:
        target: the directory (created with its parents when missing; a symlink to a
            directory is followed and stays a symlink).
        write: writes the new files into the staging directory it is given.
        order: the file names to move into ``target``, in this order (the last one is the
            one readers check the others against); a name ``write`` did not create is skipped.
        stale: names removed from ``target`` when ``write`` did not create them (files an
            earlier version of the directory had that this one has not).
        error: the error class for a target that cannot be written or a lock that is not had.
        lock_timeout: seconds to wait for another writer to the same directory.

    Returns:
        The real (symlink-resolved) directory.

    Raises:
        ``error``: the target is a file or a dangling symlink, or is locked too long.
        OSError: writing failed (disk full, permissions); the old files are untouched.
    """
    real = resolve_target(target, error)
    created = not real.exists()
    real.mkdir(parents=True, exist_ok=True)
    order, stale = list(order), list(stale)
    owned = frozenset(order) | frozenset(stale)
    staging = None
    try:
        with locked(real, timeout=lock_timeout, error=error):
            if not real.is_dir():  # a first write that failed removed it while we waited
                raise error(f"{real} was removed while this write waited for another; write again")
            _remove_debris(real, owned)
            staging = _make_staging(real)
            write(staging)
            _swap(staging, real, order, stale)
    except BaseException:
        if created:
            with contextlib.suppress(OSError):
                if staging is not None:
                    shutil.rmtree(staging, ignore_errors=True)
                real.rmdir()  # only when nothing else was put there
        raise
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
    return real
