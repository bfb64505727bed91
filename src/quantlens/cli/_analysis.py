"""What the analysis commands (``debug``, ``sensitivity``, ``inspect``) share: resolving the
model, the data and the method from the command line."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from quantlens import zoo
from quantlens.cli._args import int_in, read_json, shorten
from quantlens.cli._models import add_trust_code
from quantlens.errors import InputError
from quantlens.methods.base import QuantConfig, config_from_dict


@dataclass
class Inputs:
    """The resolved MODEL / --data / --calib-data arguments."""

    model: object
    zoo_name: str | None
    data: object
    calib: object


def resolve_model(spec: str, *, trust_code: bool = False):
    """``(model, zoo name or None)`` for a zoo name, a quantlens checkpoint folder, a Hugging
    Face folder or ``module:factory`` (see :mod:`quantlens.cli._models`)."""
    from quantlens.cli._models import resolve_model as resolve_any

    resolved = resolve_any(spec, trust_code=trust_code)
    return resolved.model, resolved.zoo


def load_inputs(args: argparse.Namespace, *, need_data: bool = True) -> Inputs:
    """Resolve ``args.model``, ``args.data`` (default: the zoo model's data set) and
    ``args.calib_data`` (default: the data set's calib split, else the data)."""
    from quantlens.cli._data import load_data

    model, zoo_name = resolve_model(args.model, trust_code=getattr(args, "trust_code", False))
    spec = getattr(args, "data", None) or (zoo.default_dataset_for(zoo_name) if zoo_name else None)
    if spec is None:
        if need_data:
            raise InputError(
                "give --data for a model that is not from the zoo "
                "(a zoo data set, a .pt/.npz file or an image folder)"
            )
        return Inputs(model, zoo_name, None, None)
    loaded = load_data(spec)
    calib_spec = getattr(args, "calib_data", None)
    calib = load_data(calib_spec).test if calib_spec else (loaded.calib or loaded.test)
    return Inputs(model, zoo_name, loaded.test, calib)


def method_config(args: argparse.Namespace, default: str = "w4", model=None) -> QuantConfig:
    """The config from ``--config FILE.json`` or the ``--method`` preset name (made for
    ``model`` when given: a weight-only preset then covers a CNN's convolutions too, as in
    ``quantlens compare``)."""
    if getattr(args, "config", None):
        data = read_json(args.config)
        if not isinstance(data, dict):
            raise InputError(f"{shorten(args.config)} must hold a JSON object with a 'method' key")
        return config_from_dict(data)
    from quantlens.eval.presets import make_config

    return make_config(args.method or default, model)


def inputs_and_config(args: argparse.Namespace) -> tuple[Inputs, QuantConfig]:
    """:func:`load_inputs` and :func:`method_config` for one command: a bad ``--method`` or
    ``--config`` fails before the model loads, a ``--config`` file is read once, and a
    ``--method`` preset is made for the loaded model.

    Returns:
        ``(inputs, config)``.

    Example:
        >>> inputs, config = inputs_and_config(args)
    """
    config = method_config(args)  # a bad --method or --config fails before the model loads
    inputs = load_inputs(args)
    if not getattr(args, "config", None):
        config = method_config(args, model=inputs.model)
    return inputs, config


def add_common(parser: argparse.ArgumentParser, *, method: bool = True) -> None:
    """MODEL, --data, --calib-data, --method/--config, --max-batches, --metric."""
    from quantlens.eval.presets import PRESETS

    parser.add_argument(
        "model",
        help="zoo name, quantlens checkpoint folder, or Hugging Face folder / module:factory",
    )
    add_trust_code(parser)
    parser.add_argument(
        "--data", help="zoo data set or .pt/.npz of tensors (default: the zoo model's data set)"
    )
    parser.add_argument(
        "--calib-data", help="calibration data (default: the data set's calib split)"
    )
    if method:
        parser.add_argument("--method", help=f"method preset: {', '.join(PRESETS)} (default w4)")
        parser.add_argument(
            "--config", help="a config JSON file (config.to_dict()) instead of --method"
        )
    parser.add_argument(
        "--max-batches",
        type=int_in(1),
        default=None,
        help="measure on this many batches only (a subset)",
    )
    parser.add_argument(
        "--metric",
        choices=("accuracy", "cosine", "agreement", "sqnr"),
        help="what to measure (default: accuracy with labels, cosine for embeddings, else SQNR)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")


def check_positive(value: int | None, flag: str) -> None:
    if value is not None and value < 1:
        raise InputError(f"{flag} must be >= 1, got {value}")
