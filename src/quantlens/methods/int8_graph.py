"""What Static and QAT share: the per-layer plan, graph capture with float islands,
calibration (their example inputs are in :mod:`quantlens.methods.int8_inputs`, custom
modules in :mod:`quantlens.methods.int8_custom`, the summary in
:mod:`quantlens.methods.int8_summary`).

The torch.ao calls themselves are in :mod:`quantlens.methods.backends.torch_ao`.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from quantlens.core import distributed
from quantlens.core.data import count_batches, iter_batches, run_batch
from quantlens.core.progress import track
from quantlens.errors import ConfigError, InputError, QuantizationFailedError
from quantlens.methods import fusion
from quantlens.methods.backends import torch_ao
from quantlens.methods.base import (
    SKIP_REASON,
    QuantConfig,
    QuantContext,
    configs_in,
    resolve,
)
from quantlens.methods.int8_custom import (  # noqa: F401  (re-exported: Static, QAT, tests)
    attach_custom_qconfigs,
    custom_modules,
    register_custom_module,
    unregister_custom_module,
)
from quantlens.methods.int8_inputs import describe_inputs
from quantlens.methods.int8_state import int8_state
from quantlens.methods.int8_summary import (  # noqa: F401  (re-exported: Static, QAT)
    ctx_method,
    float_layers,
    summarize,
)
from quantlens.nn.registry import standard_class, subclass_reason


class LeafRoot(nn.Module):
    """Holds a model that is one bare layer (``nn.Conv2d``, ``nn.Linear``) as child
    ``module``, so graph capture quantizes a module call, not a functional op."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, x):  # one named input: torch.fx cannot trace *args
        return self.module(x)


def wrap_leaf_root(model: nn.Module) -> nn.Module:
    """``model`` itself, or a :class:`LeafRoot` around it when it has no children."""
    return model if list(model.children()) else LeafRoot(model)


# --- the plan: which module gets which qconfig -------------------------------------------------


@dataclass
class Plan:
    """Per-module decisions for one graph-mode run."""

    backend: str
    global_config: QuantConfig | None
    module_configs: list[tuple[str, QuantConfig | None]] = field(default_factory=list)
    leaves: list[str] = field(default_factory=list)
    reasons: dict[str, str] = field(default_factory=dict)  # float modules -> why
    other_method: set[str] = field(default_factory=set)  # names another method quantizes

    def mapping(self, make_qconfig: Callable[[Any], Any], *, qat: bool) -> Any:
        """torch.ao's QConfigMapping: ``make_qconfig(config)`` for each config of the plan
        (of the method's own config class), None for the modules left in float."""
        cache: dict[int, Any] = {}

        def qc(cfg):
            if cfg is None:
                return None
            if id(cfg) not in cache:
                cache[id(cfg)] = make_qconfig(cfg)
            return cache[id(cfg)]

        entries = [(name, qc(cfg)) for name, cfg in self.module_configs]
        return torch_ao.make_qconfig_mapping(self.backend, qc(self.global_config), entries, qat=qat)


def make_plan(model: nn.Module, config: QuantConfig, cls: type, *, prefix: str = "") -> Plan:
    """Resolve ``config`` for every module: ``cls`` configs get qconfigs, the rest float.
    ``prefix``: the name of ``model`` inside the whole model (a captured region)."""
    ours: list[Any] = [c for c in configs_in(config) if isinstance(c, cls)]  # have .backend
    backends = {c.backend for c in ours}
    if len(backends) != 1:
        raise ConfigError(
            f"one model can use one quantized engine; these configs ask for {sorted(backends)}"
        )
    full = lambda name: f"{prefix}.{name}".strip(".")
    root = resolve(config, prefix)
    plan = Plan(backends.pop(), root if isinstance(root, cls) else None)
    for name, module in model.named_modules():
        if not name:
            continue
        cfg, parent = resolve(config, full(name)), resolve(config, full(name.rpartition(".")[0]))
        if isinstance(cfg, cls) and isinstance(module, fusion.PER_SAMPLE_NORMS):
            plan.module_configs.append((name, None))
            plan.reasons[name] = fusion.norm_reason(module)
            continue
        if isinstance(cfg, cls):
            if cfg is not parent:
                plan.module_configs.append((name, cfg))
            continue
        if not isinstance(parent, cls) and name.rpartition(".")[0]:
            continue  # inside a float subtree already planned
        plan.module_configs.append((name, None))
        plan.leaves.append(name)
        if cfg is None:
            plan.reasons[name] = SKIP_REASON
            if not list(module.children()):
                _make_island(module)
        else:
            plan.other_method.add(name)
    for name, why in standardize_subclasses(
        model, lambda n: isinstance(resolve(config, full(n)), cls)
    ).items():
        plan.module_configs.append((name, None))
        plan.leaves.append(name)
        plan.reasons[name] = why
    return plan


def standardize_subclasses(model: nn.Module, ours: Callable[[str], bool]) -> dict[str, str]:
    """Let torch.ao (which matches exact types) quantize a model's own subclasses of its
    layers: one that keeps the base's computation (``class FalconLinear(nn.Linear)``) is
    turned into the base class in place (the model is quantize's own copy; its attributes
    stay). Returns ``{name: reason}`` for the subclasses that override ``forward`` and must
    stay float. ``ours(name)``: whether the module is this method's.
    """
    types = torch_ao.quantizable_types()
    floated: dict[str, str] = {}
    for name, module in model.named_modules():
        if not name or not ours(name) or any(name.startswith(f"{f}.") for f in floated):
            continue
        base = standard_class(module, types)
        if base is not None and base is not type(module):
            module.__class__ = base
        elif (why := subclass_reason(module, types)) is not None:
            floated[name] = why
    return floated


def _make_island(module: nn.Module) -> None:
    """Give a skipped module a same-named subclass so no fusion or quantization pattern
    (they match exact types) picks it up: a skipped BatchNorm stays a float BatchNorm."""
    cls = type(module)
    if getattr(cls, "_quantlens_float_island", False):
        return
    island = _ISLANDS.get(cls)
    if island is None:
        island = type(
            cls.__name__, (cls,), {"_quantlens_float_island": True, "__module__": cls.__module__}
        )
        _ISLANDS[cls] = island
    module.__class__ = island


_ISLANDS: dict[type, type] = {}


def capture(
    model: nn.Module,
    plan: Plan,
    mapping,
    example: tuple,
    *,
    qat: bool,
    keep_islands: Callable[[dict[str, str]], bool] | None = None,
) -> torch.fx.GraphModule:
    """FX-prepare ``model``; modules torch.fx cannot trace become float islands.

    Args:
        keep_islands: given ``{untraceable module: error}``, whether to capture the model
            with those modules as float islands (None: always); when it says no, this raises
            as for an untraceable root, so the caller can capture by regions instead.

    Raises:
        QuantizationFailedError: the model's own forward cannot be traced, or
            ``keep_islands`` refused its islands (the caller may fall back).
    """
    kwargs: dict[str, Any] = {
        "backend": plan.backend,
        "qat": qat,
        "custom_modules": attach_custom_qconfigs(model, mapping),
    }
    try:
        return torch_ao.prepare(model, mapping, example, leaf_names=plan.leaves, **kwargs)
    except Exception as first:
        bad = torch_ao.find_untraceable(model, leaves=plan.leaves)
        if not bad or "" in bad:
            why = bad.get("", f"{type(first).__name__}: {first}")
            raise QuantizationFailedError(
                f"torch.fx cannot capture this model's forward ({why[:300]})"
            ) from first
        if keep_islands is not None and not keep_islands(bad):
            name, why = next(iter(bad.items()))
            raise QuantizationFailedError(
                f"torch.fx cannot trace {len(bad)} module(s) holding layers to quantize, "
                f"such as {name} ({why[:200]})"
            ) from first
    for name, why in bad.items():
        plan.leaves.append(name)
        plan.reasons[name] = f"its forward cannot be traced by torch.fx ({why}); runs in float"
    for name in bad:
        mapping.set_module_name(name, None)
    return torch_ao.prepare(model, mapping, example, leaf_names=plan.leaves, **kwargs)


def calibrate(model: nn.Module, ctx: QuantContext, limit: int | None) -> int:
    """Run calibration batches through an observed model; returns the number run."""
    if ctx.calib_data is None:
        raise InputError(
            "Static quantization needs calib_data=... (a few hundred representative inputs)"
        )
    total = count_batches(ctx.calib_data)
    total = min(total, limit) if (total is not None and limit is not None) else (total or limit)
    n = 0
    model.eval()
    with torch.no_grad(), torch_ao.quiet():
        for batch in track(
            iter_batches(ctx.calib_data, limit=limit, what="calib_data"),
            "calibrating",
            total=total,
            enabled=ctx.progress,
        ):
            run_batch(model, batch.to(torch.float32), "calib_data")
            n += 1
    if n == 0:
        raise InputError("calib_data yielded no batch; give at least one batch of inputs")
    return n


def sync_observers(model: nn.Module) -> int:
    """Merge the statistics of every quantlens observer in ``model`` over the ranks of the
    process group, in module order (the same on every rank), so that every rank converts
    with the same quantization parameters. Outside a process group it does nothing.

    Returns:
        The number of observers merged (0 outside a group).
    """
    if not distributed.is_distributed():
        return 0
    observers = [m for _, m in model.named_modules() if isinstance(m, torch_ao.CoreObserver)]
    for module in observers:
        module.sync()
    return len(observers)


def to_kernel_host(model: nn.Module, summary) -> nn.Module:
    """Move a prepared model to CPU float32 (in place) before converting: PyTorch's int8
    kernels run there, whatever ``.to()`` the training loop applied; noted in ``summary``."""
    places = {
        (p.device.type, p.dtype)
        for p in itertools.chain(model.parameters(), model.buffers())
        if p.is_floating_point()
    }
    moved = sorted(
        f"{d} {str(t).removeprefix('torch.')}"
        for d, t in places
        if (d, t) != ("cpu", torch.float32)
    )
    if moved:
        model.to(device="cpu", dtype=torch.float32)
        summary.note(f"moved from {', '.join(moved)} to cpu float32 for the int8 kernels")
    return model


def require_calibrated(model: nn.Module) -> None:
    """Before converting: raise :class:`InputError` if no activation observer of ``model``
    saw data (converting would give every activation a scale of 1.0); warn naming the ones
    that saw none when only some did (a branch the calibration data never took)."""
    empty, total = [], 0
    for name, module in model.named_modules():
        if "activation_post_process" not in name:
            continue
        if isinstance(module, torch_ao.CoreObserver):
            seen = module.observer.min_val is not None
        elif isinstance(module, torch_ao.CoreFakeQuantize):
            seen = module.fq.observed
        else:
            continue
        total += 1
        if not seen:
            empty.append(name)
    if total and len(empty) == total:
        raise InputError(
            "the prepared model saw no calibration data, so every activation range is unknown; "
            "run calibration batches through it (or train it) before ql.convert"
        )
    if empty:
        warnings.warn(
            f"{len(empty)} of {total} activation observer(s) saw no data ({', '.join(empty[:3])}"
            f"{', ...' if len(empty) > 3 else ''}); their ranges default to a scale of 1.0. "
            "Calibrate on data that reaches every branch",
            stacklevel=3,
        )


def record_inputs_on_first_call(model: nn.Module, ctx: QuantContext) -> None:
    """Record the shapes of the first forward's inputs (when none were known at prepare),
    also in a ``copy.deepcopy`` of ``model`` made before that call (the training loop that
    converts a copy every epoch): each copy records into its own context."""

    def hook(module, args):
        state = int8_state(getattr(module, "quantlens_prepared", ctx))
        if state.example_desc is None:
            state.example_desc = describe_inputs(args)
            preserve(module, quantlens_example_inputs=state.example_desc)
        module._forward_pre_hooks.pop(handle.id, None)

    handle = model.register_forward_pre_hook(hook)
    if isinstance(model, torch.fx.GraphModule):  # its deepcopy drops forward hooks

        def rearm(copied: torch.fx.GraphModule) -> None:
            copied_ctx = getattr(copied, "quantlens_prepared", None)
            if copied_ctx is not None and int8_state(copied_ctx).example_desc is None:
                record_inputs_on_first_call(copied, copied_ctx)

        model._register_deepcopy_hook(rearm)


def preserve(model: nn.Module, **attrs) -> None:
    """Set attributes that survive ``copy.deepcopy`` of a GraphModule too."""
    for key, value in attrs.items():
        setattr(model, key, value)
        if isinstance(model, torch.fx.GraphModule):
            model.meta.setdefault("_user_preserved_attributes", {})[key] = value
