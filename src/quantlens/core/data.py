"""One adapter from the data forms users have to batches every layer can run.

Accepted forms (for ``data``, ``calib_data`` and ``train_data`` arguments):

- a tensor of inputs, cut into batches of ``batch_size`` along dim 0;
- a tuple ``(inputs, labels)`` of two tensors with the same first dimension (a *list* of
  two tensors is two batches);
- a dict of tensors (one tokenized batch, passed to the model as keyword arguments);
- an iterable of batches (a list, a generator, a ``DataLoader``), each batch being a
  tensor, an ``(inputs, labels)`` pair / ``[inputs, labels]`` list, or a dict of tensors.

A ``"labels"`` or ``"label"`` key of a dict batch becomes the batch's labels and is not
passed to the model.

Data that would give a silently wrong answer is refused with an :class:`InputError`: no
batch at all, a batch of zero samples, or NaN/Inf in a floating-point input (the message
gives the count and the position of the first bad value).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from itertools import islice
from typing import Any, TypeAlias

import torch

from quantlens.core.progress import track
from quantlens.errors import InputError, QuantlensError, check_number, error_line

DEFAULT_BATCH_SIZE = 64
_OOM = getattr(
    torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError
)  # out of memory is not an input mistake
_LABEL_KEYS = ("labels", "label")

DataSource: TypeAlias = torch.Tensor | tuple | Mapping[str, Any] | Iterable[Any]
"""Any form of ``data`` / ``calib_data`` / ``train_data`` that :func:`iter_batches` accepts
(a tensor, an ``(inputs, labels)`` pair, a dict of tensors, an iterable of batches)."""

ModelInputs: TypeAlias = torch.Tensor | tuple[Any, ...] | Mapping[str, Any]
"""One set of example inputs: a tensor, a tuple of positional inputs or a dict of keyword
inputs (a tokenized Hugging Face batch)."""


@dataclass
class Batch:
    """One batch: positional inputs, keyword inputs and optional labels."""

    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    labels: torch.Tensor | None = None

    def run(self, model: torch.nn.Module) -> Any:
        """Call ``model`` on this batch."""
        return model(*self.args, **self.kwargs)

    @property
    def size(self) -> int:
        """Number of samples (the first dimension of the first input)."""
        first = self.args[0] if self.args else next(iter(self.kwargs.values()))
        return int(first.shape[0]) if isinstance(first, torch.Tensor) and first.ndim else 1

    def to(self, dtype: torch.dtype) -> Batch:
        """A copy with floating-point inputs cast to ``dtype`` (integer ids are left alone)."""
        cast = lambda t: t.to(dtype) if isinstance(t, torch.Tensor) and t.is_floating_point() else t
        return Batch(
            tuple(cast(a) for a in self.args),
            {k: cast(v) for k, v in self.kwargs.items()},
            self.labels,
        )


def _is_pair(data) -> bool:
    return (
        isinstance(data, (tuple, list))
        and len(data) == 2
        and all(isinstance(t, torch.Tensor) for t in data)
        and data[0].ndim > 0
        and data[1].ndim > 0
        and data[0].shape[0] == data[1].shape[0]
    )


def _from_mapping(item: Mapping) -> Batch:
    kwargs = dict(item)
    labels = next((kwargs.pop(k) for k in _LABEL_KEYS if k in kwargs), None)
    return Batch(kwargs=kwargs, labels=labels)


def to_batch(item) -> Batch:
    """One element of an iterable of batches as a :class:`Batch`."""
    if isinstance(item, Batch):
        return item
    if isinstance(item, torch.Tensor):
        return Batch(args=(item,))
    if isinstance(item, Mapping):
        return _from_mapping(item)
    if _is_pair(item):
        return Batch(args=(item[0],), labels=item[1])
    if isinstance(item, (tuple, list)) and item and all(isinstance(t, torch.Tensor) for t in item):
        return Batch(args=tuple(item))
    raise InputError(
        f"cannot use a {type(item).__name__} as a batch; give a tensor, an (inputs, labels) "
        "pair of tensors, or a dict of tensors"
    )


_CLEAN = "clean or drop those samples (quantized results on them would be meaningless)"


def check_finite(
    t: torch.Tensor,
    what: str = "data",
    where: str = "",
    fix: str = _CLEAN,
    error: type[QuantlensError] = InputError,
) -> None:
    """Raise ``error`` if the floating-point tensor ``t`` holds NaN or Inf, giving how many
    and where the first one is (``where`` names the batch, e.g. ``" in batch 3"``; ``fix``
    says what to do).

    Example:
        >>> check_finite(torch.tensor([1.0, float("nan")]), "calib_data")
        Traceback (most recent call last):
        ...
        quantlens.errors.InputError: calib_data holds 1 NaN/Inf value(s); the first is nan at index
        (1,); ...
    """
    if not isinstance(t, torch.Tensor) or not t.is_floating_point() or t.is_meta or not t.numel():
        return
    finite = torch.isfinite(t)
    if bool(finite.all()):
        return
    bad = ~finite
    first = tuple(int(i) for i in bad.nonzero()[0])
    raise error(
        f"{what} holds {int(bad.sum())} NaN/Inf value(s){where}; the first is {float(t[first])} "
        f"at index {first}; {fix}"
    )


def check_batch(batch: Batch, what: str = "data", index: int | None = None) -> Batch:
    """``batch`` after checking it has samples and finite floating-point inputs.

    Raises:
        InputError: an input has zero samples, or holds NaN/Inf (count and first position).
    """
    where = "" if index is None else f" in batch {index}"
    for name, t in [(f"input {i}", a) for i, a in enumerate(batch.args)] + list(
        batch.kwargs.items()
    ):
        if isinstance(t, torch.Tensor):
            if t.ndim and t.shape[0] == 0:
                raise InputError(
                    f"{what}{where} has no samples ({name} has shape {tuple(t.shape)}); "
                    "give at least one sample per batch"
                )
            check_finite(t, what, where)
    return batch


def check_source(data, what: str = "data") -> None:
    """Raise :class:`InputError` unless ``data`` is one of the accepted forms (see the module
    docstring); a tensor needs a first (sample) dimension."""
    if data is None:
        raise InputError(
            f"no {what} given; pass a tensor, an (inputs, labels) pair, a list of batches or a "
            "DataLoader"
        )
    if isinstance(data, torch.Tensor):
        if data.ndim == 0:
            raise InputError(
                f"{what} is a 0-d tensor; give a batch with a first (sample) dimension"
            )
    elif isinstance(data, (str, bytes)) or not isinstance(data, (Iterable, Mapping)):
        raise InputError(
            f"cannot read batches from a {type(data).__name__} ({what}); give a tensor, an "
            "(inputs, labels) pair, a list of batches, a DataLoader, or an iterable of dicts of "
            "tensors"
        )


def is_one_shot(data, what: str = "data") -> bool:
    """Whether ``data`` is an iterator that iterating consumes (a generator), after checking
    it is an accepted form."""
    check_source(data, what)
    return not isinstance(data, (torch.Tensor, Mapping)) and iter(data) is data


def iter_batches(
    data: DataSource,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    limit: int | None = None,
    what: str = "data",
) -> Iterator[Batch]:
    """Yield :class:`Batch` objects from any accepted data form, each checked (see the
    module docstring).

    Args:
        data: see the module docstring.
        batch_size: batch size used when ``data`` is a single tensor or an (inputs, labels) pair.
        limit: stop after this many batches.
        what: the argument's name in error messages (``"calib_data"``, ...).

    Raises:
        InputError: ``data`` is not an accepted form, yields no batch, has an empty batch or
            holds NaN/Inf.

    Example:
        >>> [b.size for b in iter_batches(torch.zeros(10, 3), batch_size=4)]
        [4, 4, 2]
    """
    check_source(data, what)
    check_number("batch_size", batch_size, 1, integer=True)
    check_number("limit", limit, 0, integer=True)
    whole = (
        data
        if isinstance(data, torch.Tensor)
        else data[0]
        if isinstance(data, tuple) and _is_pair(data)
        else None
    )
    if whole is not None:  # one tensor: checked once, positions in it
        check_batch(Batch(args=(whole,)), what)
        pieces = (
            data.split(batch_size)
            if whole is data
            else zip(data[0].split(batch_size), data[1].split(batch_size))
        )
        batches = (
            Batch(args=(p,)) if whole is data else Batch(args=(p[0],), labels=p[1]) for p in pieces
        )
    elif isinstance(data, Mapping):
        batches = (check_batch(b, what) for b in [_from_mapping(data)])
    else:
        batches = (check_batch(to_batch(item), what, i) for i, item in enumerate(data))
    n = 0
    for batch in islice(batches, limit):
        n += 1
        yield batch
    if n == 0 and limit != 0:
        raise InputError(f"{what} is empty: it yielded no batch; give at least one batch of inputs")


def describe_inputs(batch: Batch) -> str:
    """The shapes and dtypes of a batch's inputs, e.g. ``(8, 8) float32``."""
    parts = [
        f"{tuple(a.shape)} {str(a.dtype).removeprefix('torch.')}"
        for a in batch.args
        if isinstance(a, torch.Tensor)
    ]
    parts += [
        f"{k}={tuple(v.shape)} {str(v.dtype).removeprefix('torch.')}"
        for k, v in batch.kwargs.items()
        if isinstance(v, torch.Tensor)
    ]
    return ", ".join(parts) or "none"


def run_batch(model: torch.nn.Module, batch: Batch, what: str = "data"):
    """``batch.run(model)``, where the model rejecting the inputs (a shape or dtype it
    cannot take) becomes an :class:`InputError` naming ``what`` and the inputs' shapes."""
    try:
        return batch.run(model)
    except (QuantlensError, _OOM):
        raise
    except (RuntimeError, ValueError, TypeError, IndexError) as exc:
        raise InputError(
            f"the model cannot run on {what} (inputs {describe_inputs(batch)}: "
            f"{error_line(exc, 160)}); give inputs of the shape and dtype the model takes"
        ) from exc


def observe(
    model: torch.nn.Module,
    data,
    hooks: list,
    *,
    limit: int | None = None,
    progress: bool | None = None,
    what: str = "calibration",
    empty: str = "give a few batches of real inputs",
) -> None:
    """Run ``model`` in eval mode over ``data`` (``"calib_data"`` in errors) for the forward
    ``hooks`` already registered on it to record, with a progress bar named ``what``; the
    hooks are removed and the training mode restored however it ends.

    Raises:
        InputError: ``data`` yielded no batch (the message ends with ``empty``).
    """
    was_training = model.training
    model.eval()
    batches = 0
    try:
        for batch in track(
            iter_batches(data, limit=limit, what="calib_data"), what, enabled=progress
        ):
            run_batch(model, batch, "calib_data")
            batches += 1
    finally:
        for handle in hooks:
            handle.remove()
        model.train(was_training)
    if not batches:
        raise InputError(f"calib_data yielded no batch; {empty}")


def count_batches(data, *, batch_size: int = DEFAULT_BATCH_SIZE) -> int | None:
    """Number of batches ``iter_batches`` will yield, when it can be known without iterating."""
    check_number("batch_size", batch_size, 1, integer=True)
    if isinstance(data, torch.Tensor):
        return -(-data.shape[0] // batch_size)
    if isinstance(data, tuple) and _is_pair(data):
        return -(-data[0].shape[0] // batch_size)
    if isinstance(data, Mapping):
        return 1
    return len(data) if hasattr(data, "__len__") else None


def first_batch(data, what: str = "data") -> Batch:
    """The first batch of ``data`` (to trace a model or build example inputs)."""
    for batch in iter_batches(data, limit=1, what=what):
        return batch
    raise InputError(f"{what} is empty: it yielded no batch")


def first_tensor(value) -> torch.Tensor | None:
    """The first tensor in a model's inputs or outputs: the value itself, else the first one
    found in a tuple, list or dict, depth first (a Hugging Face output is a dict: its
    ``last_hidden_state`` or ``logits``); None if there is none.

    Example:
        >>> first_tensor({"loss": None, "logits": (torch.ones(1), torch.zeros(1))})
        tensor([1.])
    """
    if isinstance(value, torch.Tensor):
        return value
    items = (
        value.values()
        if isinstance(value, Mapping)
        else value
        if isinstance(value, (tuple, list))
        else ()
    )
    for item in items:
        found = first_tensor(item)
        if found is not None:
            return found
    return None
