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
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from itertools import islice

import torch

from quantlens.errors import InputError

DEFAULT_BATCH_SIZE = 64
_LABEL_KEYS = ("labels", "label")


@dataclass
class Batch:
    """One batch: positional inputs, keyword inputs and optional labels."""

    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    labels: torch.Tensor | None = None

    def run(self, model: torch.nn.Module):
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
        return Batch(tuple(cast(a) for a in self.args), {k: cast(v) for k, v in self.kwargs.items()}, self.labels)


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


def iter_batches(data, *, batch_size: int = DEFAULT_BATCH_SIZE, limit: int | None = None) -> Iterator[Batch]:
    """Yield :class:`Batch` objects from any accepted data form.

    Args:
        data: see the module docstring.
        batch_size: batch size used when ``data`` is a single tensor or an (inputs, labels) pair.
        limit: stop after this many batches.

    Example:
        >>> [b.size for b in iter_batches(torch.zeros(10, 3), batch_size=4)]
        [4, 4, 2]
    """
    if data is None:
        raise InputError("no data given; pass a tensor, an (inputs, labels) pair, a list of batches or a DataLoader")
    if isinstance(data, torch.Tensor):
        if data.ndim == 0:
            raise InputError("data is a 0-d tensor; give a batch with a first (sample) dimension")
        batches = (Batch(args=(chunk,)) for chunk in data.split(batch_size))
    elif isinstance(data, tuple) and _is_pair(data):
        batches = (Batch(args=(x,), labels=y) for x, y in zip(data[0].split(batch_size), data[1].split(batch_size)))
    elif isinstance(data, Mapping):
        batches = iter([_from_mapping(data)])
    elif isinstance(data, Iterable) and not isinstance(data, (str, bytes)):
        batches = (to_batch(item) for item in data)
    else:
        raise InputError(
            f"cannot read batches from a {type(data).__name__}; give a tensor, an (inputs, labels) "
            "pair, a list of batches, a DataLoader, or an iterable of dicts of tensors"
        )
    yield from islice(batches, limit)


def count_batches(data, *, batch_size: int = DEFAULT_BATCH_SIZE) -> int | None:
    """Number of batches ``iter_batches`` will yield, when it can be known without iterating."""
    if isinstance(data, torch.Tensor):
        return -(-data.shape[0] // batch_size)
    if isinstance(data, tuple) and _is_pair(data):
        return -(-data[0].shape[0] // batch_size)
    if isinstance(data, Mapping):
        return 1
    return len(data) if hasattr(data, "__len__") else None


def first_batch(data) -> Batch:
    """The first batch of ``data`` (to trace a model or build example inputs)."""
    for batch in iter_batches(data, limit=1):
        return batch
    raise InputError("the data is empty: it yielded no batch")
