"""Files on disk: safetensors written and read with their SHA-256 (:mod:`.tensorfile`) and
directories whose quantlens-owned files are replaced whole or not at all (:mod:`.atomic`),
and strict JSON that keeps infinities (:mod:`.strict_json`). Checkpoints and report folders
are written through them."""

from quantlens.files.atomic import locked, update_directory, write_text_atomic
from quantlens.files.paths import path_kind
from quantlens.files.tensorfile import read_tensors, write_tensors

__all__ = [
    "locked",
    "path_kind",
    "read_tensors",
    "update_directory",
    "write_tensors",
    "write_text_atomic",
]
