"""What the analysis commands (``debug``, ``sensitivity``, ``inspect``) share: resolving the
model, the data and the method from the command line."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from quantlens.cli._args import add_trust_code, int_in, model_arg, read_json, shorten
from quantlens.errors import InputError
from quantlens.methods.base import QuantConfig, config_from_dict


@dataclass
class Inputs:
    """The resolved MODEL / --data / --calib-data arguments."""

    model: object
    zoo_name: str | None
    data: object
    calib: object


def load_inputs(args: argparse.Namespace, *, need_data: bool = True) -> Inputs:
    """Resolve ``args.model``, ``args.data`` (default: the zoo model's data set) and
    ``args.calib_data`` (default: the data set's calib split, else the data)."""
    from quantlens.sources import load_data_for

    source = model_arg(args.model, trust_code=getattr(args, "trust_code", False))
    data = getattr(args, "data", None) or None
    if data is None and source.zoo is None:
        if need_data:
            raise InputError(
                "give --data for a model that is not from the zoo "
                "(a zoo data set, a .pt/.npz/.csv file or an image folder)"
            )
        return Inputs(source.model, None, None, None)
    loaded = load_data_for(source, data, calib_data=getattr(args, "calib_data", None))
    calib = loaded.calib if loaded.calib is not None else loaded.test
    return Inputs(source.model, source.zoo, loaded.test, calib)


def method_config(args: argparse.Namespace, default: str = "w4", model=None) -> QuantConfig:
    """The config from ``--config FILE.json`` or the ``--method`` preset name (made for
    ``model`` when given: a weight-only preset then covers a CNN's convolutions too, as in
    ``quantlens compare``)."""
    if getattr(args, "config", None):
        data = read_json(args.config)
        if not isinstance(data, dict):
            raise InputError(f"{shorten(args.config)} must hold a JSON object with a 'method' key")
        return config_from_dict(data)
    from quantlens.compare.presets import make_config

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
    from quantlens.compare.presets import PRESETS

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
        choices=("accuracy", "cosine", "agreement", "sqnr", "perplexity"),
        help="what to measure (default: perplexity for a causal LM on a token stream, "
        "accuracy with labels, cosine for embeddings, else SQNR)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")


def check_positive(value: int | None, flag: str) -> None:
    if value is not None and value < 1:
        raise InputError(f"{flag} must be >= 1, got {value}")
