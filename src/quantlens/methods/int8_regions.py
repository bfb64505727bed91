"""Graph capture by regions, for models whose own ``forward`` torch.fx cannot trace.

A Hugging Face transformer builds its masks, caches and outputs in Python that torch.fx
cannot follow, but the blocks it is made of trace well. When the root cannot be captured,
Static and QAT capture *regions* instead. The model runs once on the example batch with a
hook on every module, recording how each is called. A region is an outermost module that

- torch.fx traces (itself and everything under it);
- is called with tensors only, each bound to a parameter without a default, and takes no
  other parameter (no optional arguments, no ``*args`` / ``**kwargs``): the graph traced
  from that call is then the graph of every call;
- holds a Conv/Linear layer that the config quantizes.

Each region is captured, observed (or fake-quantized) and converted on its own, in place of
the module; tensors cross its boundary in float (a Quant at each input, a DeQuant at each
output). Everything between regions runs in float as written: in a BERT-style encoder the
Q/K/V projections, the attention output, the feed-forward block and the pooler become int8,
and the attention math (masks, softmax, the matmuls of activations) stays float.

Example:
    >>> found = find_regions(model, batch, ctx.config, Static)
    >>> found  # doctest: +SKIP
    {"encoder.layer.0.intermediate": ...}
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from quantlens.core.data import Batch
from quantlens.methods.backends import torch_ao
from quantlens.methods.base import SKIP_REASON, QuantConfig, module_bytes, resolve
from quantlens.methods.int8_choice import Choice, strip_observers
from quantlens.methods.int8_graph import LeafRoot, Plan, capture, make_plan, preserve
from quantlens.nn.registry import standard_class


@dataclass
class Region:
    """One captured region: its module name, example inputs and plan."""

    name: str
    example: tuple
    plan: Plan
    leaf: bool  # a bare layer, captured inside a LeafRoot (its layer is ``name + ".module"``)


def _strict_call(module: nn.Module, args: tuple, kwargs: dict) -> bool:
    """True when ``module`` is called with tensors bound to all of its parameters, none of
    which has a default (so one traced call stands for every call)."""
    try:
        sig = inspect.signature(module.forward)
        bound = sig.bind(*args, **kwargs)
    except (TypeError, ValueError):
        return False
    for param in sig.parameters.values():
        if (
            param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD)
            or param.default is not param.empty
        ):
            return False
    return all(
        isinstance(v, torch.Tensor) and v.is_floating_point() for v in bound.arguments.values()
    )


def record_calls(model: nn.Module, batch: Batch) -> dict[str, tuple | None]:
    """Run ``model`` once on ``batch`` in eval mode (a QAT model's BatchNorm statistics stay
    as they were; each module's mode is restored); ``{module name: positional inputs}`` of
    every module called only in the strict form :func:`_strict_call` accepts (None for the
    others)."""
    calls: dict[str, tuple | None] = {}
    handles = []
    for name, module in model.named_modules():

        def hook(mod, args, kwargs, name=name):
            if _strict_call(mod, args, kwargs):
                bound = inspect.signature(mod.forward).bind(*args, **kwargs)
                calls.setdefault(name, tuple(bound.arguments.values()))
            else:
                calls[name] = None

        handles.append(module.register_forward_pre_hook(hook, with_kwargs=True))
    modes = [(m, m.training) for m in model.modules()]
    try:
        with torch.no_grad(), torch_ao.quiet():
            batch.run(model.eval())
    finally:
        for h in handles:
            h.remove()
        for m, training in modes:
            m.training = training
    return {n: (None if a is None else tuple(t.detach() for t in a)) for n, a in calls.items()}


def find_regions(
    model: nn.Module, batch: Batch, config: QuantConfig, cls: type
) -> tuple[list[tuple[str, tuple]], dict[str, str]]:
    """The regions of ``model`` (outermost first) and the modules torch.fx cannot trace.

    Returns:
        ``([(region name, example inputs)], {untraceable module name: error})``.
    """
    calls = record_calls(model, batch)
    bad = torch_ao.find_untraceable(model)
    modules = dict(model.named_modules())

    def has_target(name: str, module: nn.Module) -> bool:
        prefix = f"{name}." if name else ""
        return any(
            standard_class(m, torch_ao.EAGER_TYPES) is not None
            and isinstance(resolve(config, prefix + n if n else name), cls)
            for n, m in module.named_modules()
        )

    found: list[tuple[str, tuple]] = []

    def visit(name: str, module: nn.Module) -> None:
        if not has_target(name, module):
            return
        clean = not any(b == name or b.startswith(f"{name}.") or not name for b in bad)
        if name and clean and (call := calls.get(name)) is not None:
            found.append((name, call))
            return
        for child, sub in module.named_children():
            visit(f"{name}.{child}" if name else child, sub)

    visit("", modules[""])
    return found, bad


def regions_cover_more(
    model: nn.Module, batch: Batch, config: QuantConfig, cls: type, bad: dict[str, str]
) -> bool:
    """Whether capturing ``model`` by regions makes more of its Conv/Linear layers int8 than
    one graph of the whole model in which the untraceable modules ``bad`` run as float islands.

    A Hugging Face decoder layer (its attention takes optional arguments and ``**kwargs``)
    cannot be traced, yet the root traces around it: one whole-model graph would then leave
    every block float and quantize only the head, while regions reach the projections and the
    MLP inside each block. An untraceable module that holds no such layer (a gate, a custom
    op) costs the whole graph nothing, and it is kept.

    Args:
        model: the float model (before capture).
        batch: the example batch (run once to record how each module is called).
        bad: ``{untraceable module name: error}`` from the whole-model capture.

    Returns:
        True when regions hold strictly more of the layers ``config`` gives to ``cls``.

    Example:
        >>> regions_cover_more(llama, batch, ql.Static(), Static, {"model.layers.0": "..."})
        True
    """

    def within(name: str, owners) -> bool:
        return any(name == p or name.startswith(f"{p}.") for p in owners)

    targets = [
        n
        for n, m in model.named_modules()
        if n
        and standard_class(m, torch_ao.EAGER_TYPES) is not None
        and isinstance(resolve(config, n), cls)
    ]
    whole = sum(not within(n, bad) for n in targets)
    if whole == len(targets):
        return False
    found, _ = find_regions(model, batch, config, cls)
    return sum(within(n, [r for r, _ in found]) for n in targets) > whole


def capture_regions(
    model: nn.Module,
    batch: Batch,
    config: QuantConfig,
    cls: type,
    make_qconfig: Callable[[Any], Any],
    *,
    qat: bool,
) -> list[Region]:
    """Capture every region of ``model`` in place (each becomes a prepared GraphModule).

    Returns:
        The captured regions (empty when none was found; the model is then unchanged).
    """
    found, _ = find_regions(model, batch, config, cls)
    regions = []
    for name, example in found:
        module = model.get_submodule(name)
        leaf = not list(module.children())
        root = LeafRoot(module) if leaf else module
        plan = make_plan(root, config, cls, prefix=name + (".module" if leaf else ""))
        layers_only(root, plan)
        prepared = capture(root, plan, plan.mapping(make_qconfig, qat=qat), example, qat=qat)
        _set(model, name, prepared)
        regions.append(Region(name, example, plan, leaf))
    return regions


LAYERS_ONLY_REASON = (
    "int8 here covers the Conv/Linear layers only (a captured region, or a model fed "
    "integer inputs); runs in float between them"
)
"""The summary reason of the other layers with weights (LayerNorm, ...) under
:func:`layers_only`."""


def layers_only(root: nn.Module, plan: Plan) -> None:
    """Give the plan's qconfigs to Conv/Linear layers only (what fuses into them, such as
    BatchNorm and ReLU, goes along): adds, multiplications, LayerNorms and the like between
    them stay float. For regions and for models fed integer inputs (token ids, masks):
    BERT-style residual streams with outlier channels lose too much on one per-tensor int8
    grid, and integer masks reach elementwise ops that int8 kernels cannot take."""

    def config_of(name: str) -> QuantConfig | None:
        owners = [(n, c) for n, c in plan.module_configs if name == n or name.startswith(f"{n}.")]
        return max(owners, key=lambda e: len(e[0]))[1] if owners else plan.global_config

    layers = [
        (n, config_of(n)) for n, m in root.named_modules() if n and type(m) in torch_ao.EAGER_TYPES
    ]
    for n, m in root.named_modules():
        own = (
            n and not list(m.children()) and type(m) not in torch_ao.EAGER_TYPES and module_bytes(m)
        )
        if (
            own
            and config_of(n) is not None
            and not any(n == p or n.startswith(f"{p}.") for p in plan.reasons)
        ):
            plan.reasons[n] = LAYERS_ONLY_REASON
    plan.global_config = None
    plan.module_configs = [(n, None) for n, _ in plan.module_configs] + [
        (n, c) for n, c in layers if c is not None
    ]


def has_integer_inputs(batch: Batch) -> bool:
    """True when a batch holds integer tensors (token ids, attention masks)."""
    return any(
        isinstance(t, torch.Tensor) and not t.is_floating_point()
        for t in (*batch.args, *batch.kwargs.values())
    )


def convert_regions(
    model: nn.Module,
    regions: list[Region],
    config: QuantConfig,
    cls: type,
    custom_modules,
    choices: dict[str, Choice] | None = None,
    float_reason=str,
) -> Plan:
    """Convert every captured region in place; one :class:`Plan` over the whole model for
    the summary (its float reasons under the regions' full names).

    A region with an observer choice (``choices``, by region name) keeps the int8 graph the
    choice measured, or, below the SQNR floor, stays float without its observers, with
    ``float_reason(choice)`` as the reason."""
    choices = choices or {}
    merged = Plan(regions[0].plan.backend, None)
    inside = tuple(f"{r.name}." for r in regions)
    for name, module in model.named_modules():
        if (
            not name
            or list(module.children())
            or name.startswith(inside)
            or not module_bytes(module)
        ):
            continue
        cfg = resolve(config, name)
        if cfg is None:
            merged.reasons[name] = SKIP_REASON
        elif not isinstance(cfg, cls):
            merged.other_method.add(name)
        else:
            merged.reasons[name] = OUTSIDE_REASON
    backend = merged.backend
    for region in regions:
        prefix = region.name + (".module" if region.leaf else "")
        prepared, choice = model.get_submodule(region.name), choices.get(region.name)
        if choice is not None and choice.keep_float:
            converted = strip_observers(prepared)
            merged.reasons[prefix] = float_reason(choice)
        elif choice is not None and choice.converted is not None:
            converted, choice.converted = choice.converted, None  # measured: the one to keep
        else:
            converted = torch_ao.convert(prepared, backend=backend, custom_modules=custom_modules)
        _set(model, region.name, converted)
        merged.reasons.update({_join(prefix, n): why for n, why in region.plan.reasons.items()})
        merged.other_method.update(_join(prefix, n) for n in region.plan.other_method)
    return merged


def rename_layers(before: dict, regions: list[Region]) -> dict:
    """Float layer names as they read after capture: a bare-layer region's layer sits at
    ``name + ".module"`` (inside its LeafRoot)."""
    leaves = {r.name for r in regions if r.leaf}
    return {(f"{n}.module" if n in leaves else n): v for n, v in before.items()}


OUTSIDE_REASON = (
    "outside every region torch.fx can capture (an enclosing forward cannot be traced, or the "
    "layer is called with optional arguments); runs in float"
)
"""The summary reason of a Conv/Linear that no region holds."""


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if name else prefix


def _set(model: nn.Module, name: str, module: nn.Module) -> None:
    """Put ``module`` at ``name``, answering the attributes the module it replaces had (see
    :func:`_face`): models read them (ViT casts its pixels to
    ``projection.weight.dtype``; Whisper reads ``conv1.stride``)."""
    parent_name, _, attr = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    face = _face(getattr(parent, attr))
    face = {
        k: v
        for k, v in face.items()
        if not hasattr(module, k) or k in getattr(module, "_quantlens_face", ())
    }
    if face:
        preserve(module, _quantlens_face=tuple(face), **face)
    setattr(parent, attr, module)


def _face(module: nn.Module) -> dict:
    """The plain attributes of a module a region replaces (``stride``, ``in_features``, a
    ``config``) and stand-ins for its own weights: a tensor of the weight's shape, dtype and
    device that holds one zero (expanded), so ``.weight.dtype`` / ``.shape`` / ``.device``
    read as before while the float values are gone. A region keeps its float module's face
    through convert."""
    given = getattr(module, "_quantlens_face", None)
    if given is not None:
        return {k: getattr(module, k) for k in given}
    face = {k: v for k, v in vars(module).items() if not k.startswith("_") and k != "training"}
    for k, t in itertools.chain(
        module.named_parameters(recurse=False), module.named_buffers(recurse=False)
    ):
        if t is not None:
            face[k] = torch.zeros((), dtype=t.dtype, device=t.device).expand(t.shape)
    return face


def regions_note(regions: list[Region], exc: Exception) -> str:
    """The summary note of a regional capture."""
    shown = ", ".join(r.name for r in regions[:4]) + (", ..." if len(regions) > 4 else "")
    return (
        f"the model's forward cannot be captured whole ({str(exc)[:160]}); captured {len(regions)} "
        f"region(s) with torch.fx instead ({shown}), float between them"
    )
