"""The checkpoint format: ``model.safetensors`` + ``quantlens.json`` in one directory.

``model.safetensors`` holds every tensor of the quantized model's state dict as a plain
tensor: quantized torch tensors are split into their integer representation, scales and
zero-points; tuples (PyTorch's packed parameters) into their elements (see
:mod:`quantlens.checkpoint.state`). ``quantlens.json``
holds the format version, the method config, how to rebuild the float skeleton, and the
non-tensor state entries. Nothing is pickled.

Writes replace only these two files, staged beside the target and renamed into place with
the folder locked; ``quantlens.json``, renamed last, records the SHA-256 of the weights, which
every read verifies. An interrupted save leaves the previous checkpoint (or none), never a
half one that looks whole; a reader during a save gets the old checkpoint or the new one.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from quantlens.checkpoint.state import flatten_state, unflatten_state
from quantlens.errors import CheckpointError, InputError, error_line
from quantlens.files import read_tensors, update_directory, write_tensors
from quantlens.files.atomic import STAGING_TAG, pending_file, resolve_target
from quantlens.files.tensorfile import DigestMismatchError
from quantlens.methods.base import QuantSummary
from quantlens.sources import WEIGHTS_FILE, build_skeleton, call_factory, source_of

FORMAT_VERSION = 1
META_FILE = "quantlens.json"
__all__ = [
    "FORMAT_VERSION",
    "META_FILE",
    "WEIGHTS_FILE",
    "build_skeleton",
    "call_factory",
    "flatten_state",
    "read",
    "read_meta",
    "read_summary",
    "recorded_hash",
    "source_of",
    "unflatten_state",
    "write",
]
_REQUIRED = {
    "method": str,
    "config": dict,
    "state": dict,
}  # quantlens.json entries load cannot do without
_KIND_NAMES = {str: "a string", dict: "an object"}


#
# ``ql.save`` replaces only model.safetensors and quantlens.json in the target (through
# :func:`quantlens.files.update_directory`: staged beside it, swapped in with a lock held,
# a user's other files and a symlinked folder left as they are). quantlens.json is written
# last and records the SHA-256 of model.safetensors, so a reader that catches a save between
# its two renames sees a digest that does not match and reads again.

MAX_DEPTH = 64  # quantlens.json nests a few levels; deeper is an edited file, not ours
_READ_TRIES = 5


def _dedupe(tensors: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors to write, each shared one (tied weights, a module under two names) once, and
    ``{name: the name written}`` for the others."""
    unique: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    seen: dict[tuple, str] = {}
    for key, t in tensors.items():
        if t.device.type == "meta":
            raise CheckpointError(
                f"tensor {key!r} is on the meta device (it has no data to save); load the "
                "model's real weights (e.g. model.to_empty + load_state_dict) before ql.save"
            )
        ident = (
            t.untyped_storage().data_ptr(),
            t.storage_offset(),
            tuple(t.shape),
            t.stride(),
            t.dtype,
        )
        if t.numel() and ident in seen:
            aliases[key] = seen[ident]
            continue
        seen[ident] = key
        unique[key] = t
    return unique, aliases


def write(directory: str | os.PathLike, tensors: dict[str, torch.Tensor], meta: dict) -> Path:
    """Write a checkpoint into ``directory``, replacing only the files of an earlier one.

    ``quantlens.json`` gets ``"files"`` (the SHA-256 and size of ``model.safetensors``) and,
    where tensors are shared, ``"aliases"``. See :func:`quantlens.files.update_directory`
    for what "atomic" means here.

    Returns:
        ``directory``.

    Raises:
        InputError: ``directory`` is a file, a dangling symlink, or a folder of other files
            that holds no checkpoint.
        CheckpointError: writing failed (disk full, no permission; the message says which and
            any checkpoint that was there is unchanged), or another save held the folder too long.
    """
    target = Path(directory)
    real = resolve_target(target, InputError)
    if (
        real.is_dir()
        and not (real / META_FILE).exists()
        and pending_file(real, META_FILE) is None
        and any(not p.name.startswith(STAGING_TAG) for p in real.iterdir())
    ):
        raise InputError(
            f"{target} is a non-empty directory that is not a quantlens checkpoint; choose an "
            "empty or new path"
        )
    unique, aliases = _dedupe(tensors)

    def stage(folder: Path) -> None:
        digest = write_tensors(folder / WEIGHTS_FILE, unique)
        full = {
            **meta,
            "files": {
                WEIGHTS_FILE: {"sha256": digest, "bytes": (folder / WEIGHTS_FILE).stat().st_size}
            },
        }
        if aliases:
            full["aliases"] = aliases
        with open(folder / META_FILE, "w", encoding="utf-8") as f:
            f.write(json.dumps(full, indent=1, default=str))
            f.flush()
            os.fsync(f.fileno())

    try:
        update_directory(target, stage, [WEIGHTS_FILE, META_FILE], error=CheckpointError)
    except OSError as exc:
        raise CheckpointError(
            f"cannot write the checkpoint {target} ({exc.strerror or error_line(exc)}); free space "
            "or choose a folder you can write to (a checkpoint that was there is unchanged)"
        ) from exc
    return target


def _depth_ok(value: Any) -> bool:
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            return False
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return True


def read_meta(directory: str | os.PathLike) -> dict:
    """``quantlens.json`` of a checkpoint directory, validated; errors name the file."""
    root = Path(directory)
    try:
        if not root.is_dir():
            raise CheckpointError(f"{root} is not a directory; give the folder ql.save wrote")
        meta_path, weights_path = _files(root)
        for path in (meta_path, weights_path):
            if not path.is_file():
                raise CheckpointError(
                    f"{path} is missing; the checkpoint is incomplete, save it again"
                )
    except OSError as exc:  # a name too long for the file system, a folder we may not enter
        shown = str(root) if len(str(root)) <= 80 else str(root)[:77] + "..."
        raise CheckpointError(
            f"{shown} cannot be opened ({exc.strerror or error_line(exc)}); "
            "give the folder ql.save wrote"
        ) from exc
    return read_meta_file(meta_path)


def _files(root: Path) -> tuple[Path, Path]:
    """``quantlens.json`` and ``model.safetensors`` of ``root``; one that a first save killed
    mid-move has not put there yet is read where that save left it (the next save moves it)."""
    paths = [root / META_FILE, root / WEIGHTS_FILE]
    return tuple(p if p.is_file() else (pending_file(root, p.name) or p) for p in paths)


def read_meta_file(meta_path: Path) -> dict:
    """A ``quantlens.json`` file parsed and validated; errors name it."""
    try:
        meta = json.loads(meta_path.read_bytes().decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(
            f"{meta_path} is not valid JSON ({error_line(exc)}); the file is truncated or corrupt"
        ) from exc
    except RecursionError as exc:
        raise CheckpointError(
            f"{meta_path} is nested too deeply to be a quantlens checkpoint; save it again"
        ) from exc
    except OSError as exc:
        raise CheckpointError(
            f"{meta_path} cannot be read ({exc.strerror or error_line(exc)})"
        ) from exc
    if not _depth_ok(meta):
        raise CheckpointError(
            f"{meta_path} is nested deeper than {MAX_DEPTH} levels, which quantlens never writes; "
            "the file was edited, save the checkpoint again"
        )
    if not isinstance(meta, dict) or meta.get("format") != "quantlens":
        raise CheckpointError(f"{meta_path} is not a quantlens checkpoint description")
    version = meta.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"{meta_path} has format version {version!r}, newer than this quantlens reads "
            f"({FORMAT_VERSION}); upgrade quantlens"
        )
    for key, kind in _REQUIRED.items():
        if not isinstance(meta.get(key), kind):
            found = "no" if key not in meta else f"a {type(meta[key]).__name__} as its"
            raise CheckpointError(
                f"{meta_path} has {found} {key!r} entry (expected {_KIND_NAMES[kind]}); the file "
                "is incomplete or was edited, save the checkpoint again"
            )
    source = meta.get("source")
    if source is not None and not isinstance(source, dict):
        raise CheckpointError(
            f"{meta_path}: 'source' is a {type(source).__name__}, not an object; save the "
            "checkpoint again"
        )
    recorded_hash(meta, meta_path)  # a malformed "files" entry fails here
    return meta


def recorded_hash(meta: Mapping, origin: str | os.PathLike = META_FILE) -> str | None:
    """The SHA-256 ``quantlens.json`` records for ``model.safetensors``; None for a
    checkpoint saved before quantlens recorded them."""
    files = meta.get("files")
    if files is None:
        return None
    entry = files.get(WEIGHTS_FILE) if isinstance(files, Mapping) else None
    digest = entry.get("sha256") if isinstance(entry, Mapping) else None
    if not (isinstance(digest, str) and len(digest) == 64):
        raise CheckpointError(
            f"{origin}: its 'files' entry has no SHA-256 of {WEIGHTS_FILE}; the file was edited, "
            "save the checkpoint again"
        )
    return digest


def _stamp(*paths: Path) -> tuple:
    out = []
    for path in paths:
        try:
            st = path.stat()
            out.append((st.st_ino, st.st_mtime_ns, st.st_size))
        except OSError:
            out.append(None)
    return tuple(out)


def read(
    directory: str | os.PathLike, *, verify: bool = True
) -> tuple[dict[str, torch.Tensor], dict]:
    """Read and validate a checkpoint directory; errors name the file and the problem.

    The weights are checked against the SHA-256 ``quantlens.json`` records (computed while
    the file is read). A mismatch while another process is saving there (one of the two
    files changed during the read) reads again, so the result is the old checkpoint or the
    new one, never a mix; a mismatch with no save going on is corruption.

    Args:
        directory: the checkpoint folder.
        verify: check the digest (False: only compute it; ``quantlens info`` without --verify).

    Returns:
        ``(tensors, meta)``; ``meta["files_verified"]`` is True when the digest was checked,
        False for a checkpoint that records none (saved by an older quantlens; a warning says so).

    Raises:
        CheckpointError: a file is missing, unreadable, truncated, malformed or does not match
            its recorded SHA-256 (the message names the file).
    """
    root = Path(directory)
    for attempt in range(_READ_TRIES):
        try:
            meta_path, weights_path = _files(root)
        except OSError:  # read_meta says what is wrong with the folder
            meta_path, weights_path = root / META_FILE, root / WEIGHTS_FILE
        before = _stamp(meta_path, weights_path)
        meta = read_meta(root)
        expected = recorded_hash(meta, meta_path) if verify else None
        try:
            tensors, _digest = read_tensors(weights_path, sha256=expected)
        except OSError as exc:
            raise CheckpointError(
                f"{weights_path} cannot be read ({exc.strerror or error_line(exc)})"
            ) from exc
        except DigestMismatchError as exc:
            meta = _pending_meta(root, exc.found)  # a save cut off between its two renames
            if meta is not None:
                tensors, _digest = read_tensors(weights_path, sha256=exc.found)
                break
            time.sleep(0.02 * (attempt + 1))
            if attempt + 1 < _READ_TRIES and _stamp(meta_path, weights_path) != before:
                continue  # a save replaced the files while we read them: read the new ones
            raise
        break
    if recorded_hash(meta, meta_path) is None:
        warnings.warn(
            f"{root} records no SHA-256 of its weights (saved by an older quantlens), so they are "
            "not verified; save it again to add one",
            stacklevel=3,
        )
    meta["files_verified"] = expected is not None
    _restore_aliases(tensors, meta, meta_path)
    return tensors, meta


def _pending_meta(root: Path, digest: str) -> dict | None:
    """The quantlens.json of a save that was killed after moving the weights in and before
    moving this file (the next save completes it), when it records ``digest``."""
    pending = pending_file(root, META_FILE)
    if pending is None:
        return None
    try:
        meta = read_meta_file(pending)
        return meta if recorded_hash(meta, pending) == digest else None
    except CheckpointError:
        return None


def _restore_aliases(tensors: dict[str, torch.Tensor], meta: Mapping, origin: Path) -> None:
    aliases = meta.get("aliases", {})
    if not isinstance(aliases, Mapping) or not all(
        isinstance(v, str) and v in tensors for v in aliases.values()
    ):
        raise CheckpointError(
            f"{origin}: its 'aliases' entry names tensors {WEIGHTS_FILE} does not have; "
            "save the checkpoint again"
        )
    for name, kept in aliases.items():
        tensors[name] = tensors[kept]


def read_summary(meta: Mapping) -> QuantSummary | None:
    """The summary ``ql.quantize`` wrote into ``quantlens.json`` (what was quantized, what
    was left in float and why), or None where the file records none or one this quantlens
    cannot read (edited, or from another version)."""
    data = meta.get("summary")
    if not isinstance(data, Mapping):
        return None
    try:
        return QuantSummary.from_dict(data)
    except (TypeError, AttributeError, ValueError):
        return None
