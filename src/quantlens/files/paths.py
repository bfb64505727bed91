"""What a path names, asked without raising: a spec may be a file, a folder or a name."""

from __future__ import annotations

from pathlib import Path


def path_kind(path: Path) -> str | None:
    """``"file"``, ``"dir"``, ``"other"`` (exists, neither) or None (missing, or a name the
    file system cannot hold, e.g. longer than NAME_MAX: not an error, just not a path).

    Example:
        >>> path_kind(Path("no/such/file")) is None
        True
    """
    try:
        if path.is_file():
            return "file"
        if path.is_dir():
            return "dir"
        return "other" if path.exists() else None
    except (OSError, ValueError):  # ENAMETOOLONG, an embedded NUL byte
        return None
