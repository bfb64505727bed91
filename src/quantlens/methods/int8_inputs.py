"""Example inputs for Static and QAT graph capture: taken from ``example_inputs`` or the
first calibration batch, described as JSON (shapes with batch 1, dtypes) so a checkpoint can
record them, and made again from that description; :func:`keyword_root` lets a model whose
batches are keyword inputs (a tokenized dict) be captured with them.

Example:
    >>> desc = describe_inputs((torch.randn(4, 3, 32, 32),))
    >>> desc  # doctest: +SKIP
    {"args": [{"shape": [1, 3, 32, 32], ...}]}
    >>> make_batch(desc).args[0].shape
    torch.Size([1, 3, 32, 32])
"""

from __future__ import annotations

import inspect
import itertools
import keyword as keyword_module
from collections.abc import Mapping
from typing import Literal, overload

import torch
from torch import nn

from quantlens.core.data import Batch, check_batch, first_batch, is_one_shot, to_batch
from quantlens.errors import InputError
from quantlens.methods.base import QuantContext


def _spec(t) -> dict:
    if not isinstance(t, torch.Tensor):
        raise InputError(f"graph capture needs tensor inputs, got a {type(t).__name__}")
    return {
        "shape": [1, *t.shape[1:]] if t.ndim else [],
        "dtype": str(t.dtype).removeprefix("torch."),
    }


def describe_inputs(args: tuple, kwargs: dict | None = None) -> dict:
    """A JSON-able description (shapes with batch 1, dtypes) of positional and keyword inputs."""
    out: dict = {"args": [_spec(a) for a in args]}
    if kwargs:
        out["kwargs"] = {k: _spec(v) for k, v in kwargs.items()}
    return out


def _make(spec: dict, gen: torch.Generator) -> torch.Tensor:
    dtype = getattr(torch, spec["dtype"])
    if dtype.is_floating_point:
        return torch.rand(spec["shape"], generator=gen).to(dtype)
    return torch.zeros(spec["shape"], dtype=dtype)


def make_batch(desc: dict | None) -> Batch:
    """A batch of the described inputs: uniform [0, 1) floats, zeros for integers.

    Raises:
        InputError: there is no description (the model recorded no example inputs).
    """
    if desc is None:
        raise InputError(
            "no example input shapes were recorded; pass example_inputs=... (or calib_data)"
        )
    gen = torch.Generator().manual_seed(0)
    args = tuple(_make(spec, gen) for spec in desc["args"])
    return Batch(args, {k: _make(spec, gen) for k, spec in desc.get("kwargs", {}).items()})


def make_inputs(desc: dict) -> tuple:
    """Positional inputs of the described shapes (see :func:`make_batch`)."""
    return make_batch(desc).args


@overload
def example_batch(ctx: QuantContext, *, required: Literal[True] = ...) -> Batch: ...
@overload
def example_batch(ctx: QuantContext, *, required: bool) -> Batch | None: ...
def example_batch(ctx: QuantContext, *, required: bool = True) -> Batch | None:
    """Example inputs: ``ctx.example_inputs`` (a tuple, a tensor, a dict of tensors or a
    recorded description), else the first calibration batch, else None when not ``required``."""
    ex = ctx.example_inputs
    if isinstance(ex, dict) and isinstance(ex.get("args"), list):
        return make_batch(ex)
    if isinstance(ex, torch.Tensor):
        return Batch(args=(ex,))
    if isinstance(ex, Mapping):  # keyword inputs (a tokenized batch)
        return to_batch(ex).to(torch.float32)
    if ex is not None:  # positional inputs, all of them (never read as (inputs, labels))
        return Batch(args=tuple(ex))
    if ctx.calib_data is None:
        if not required:
            return None
        raise InputError(
            "graph capture needs example inputs: pass calib_data=... or example_inputs=(x,)"
        )
    data = ctx.calib_data
    if is_one_shot(data, "calib_data"):  # a one-shot iterator (generator): put its first batch back
        first = next(data, None)
        if first is None:
            raise InputError("calib_data yielded no batch; give at least one batch of inputs")
        ctx.calib_data = itertools.chain([first], data)
        return check_batch(to_batch(first), "calib_data", 0).to(torch.float32)
    return first_batch(data, "calib_data").to(torch.float32)


def keyword_root(model: nn.Module, batch: Batch) -> tuple:
    """Let graph capture take keyword inputs: for a batch with keyword inputs (a tokenized
    dict), give ``model`` a same-named subclass whose ``forward`` takes exactly the batch's
    inputs as named parameters and passes them on by keyword, so torch.fx sees them as the
    graph's inputs and every other argument at its default. Returns the positional example
    inputs in that order. :func:`plain_root` undoes it.
    """
    if not batch.kwargs:
        return batch.args
    cls = type(model)
    try:
        bound = inspect.signature(model.forward).bind(*batch.args, **batch.kwargs)
    except TypeError as exc:
        raise InputError(
            f"the batch does not fit {cls.__name__}.forward ({exc}); give the inputs it takes"
        ) from exc
    params = inspect.signature(model.forward).parameters
    names, keyword = [], []
    for name, value in bound.arguments.items():
        kind = params[name].kind
        if kind is inspect.Parameter.VAR_POSITIONAL:
            raise InputError(
                f"{cls.__name__}.forward takes *{name}; give its inputs by name (a dict batch)"
            )
        entries = value.items() if kind is inspect.Parameter.VAR_KEYWORD else [(name, value)]
        for key, _ in entries:
            if not key.isidentifier() or keyword_module.iskeyword(key):
                raise InputError(
                    f"input name {key!r} is not a Python identifier; rename that key of the batch"
                )
            names.append(key)
            keyword.append(kind is not inspect.Parameter.POSITIONAL_ONLY)
    call = ", ".join(f"{n}={n}" if kw else n for n, kw in zip(names, keyword))
    source = f"def forward(self, {', '.join(names)}):\n    return _forward(self, {call})\n"
    scope: dict = {"_forward": cls.forward}
    code = compile(source, f"<quantlens keyword root of {cls.__name__}>", "exec")
    exec(code, scope)  # noqa: S102 - names checked above
    model.__class__ = type(
        cls.__name__,
        (cls,),
        {"forward": scope["forward"], "_quantlens_keyword_root": cls, "__module__": cls.__module__},
    )
    values = {**dict(zip(list(bound.arguments)[: len(batch.args)], batch.args)), **batch.kwargs}
    return tuple(values[n] for n in names)


def plain_root(model: nn.Module) -> nn.Module:
    """Undo :func:`keyword_root` (the model's own class again)."""
    base = type(model).__dict__.get("_quantlens_keyword_root")
    if base is not None:
        model.__class__ = base
    return model
