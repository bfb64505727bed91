"""MODEL arguments of the CLI: a zoo name, a quantlens checkpoint folder, a Hugging Face
model folder, or ``package.module:factory``."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from quantlens import zoo
from quantlens.checkpoint import META_FILE, call_factory
from quantlens.cli._args import path_kind, shorten
from quantlens.errors import InputError, UnknownNameError, error_line, require

MAX_FACTORY = 1000  # characters: no module:function name is longer
FORMS = (
    "a zoo model ({zoo}), a quantlens checkpoint folder, a Hugging Face model folder, or "
    "module:factory"
)


@dataclass
class ResolvedModel:
    """A model named on the command line.

    Attributes:
        model: the ``nn.Module`` (eval mode).
        kind: ``"zoo"``, ``"checkpoint"``, ``"hf"`` or ``"factory"``.
        zoo: the zoo name when ``kind == "zoo"``, else None.
    """

    model: nn.Module
    kind: str
    zoo: str | None = None


def resolve_model(spec: str, *, trust_code: bool = False) -> ResolvedModel:
    """Build the model that ``spec`` names.

    Args:
        spec: a zoo name (``minilm``), a folder written by ``ql.save``, a folder holding a
            Hugging Face ``config.json`` (loaded offline with ``transformers.AutoModel``), or
            ``package.module:factory`` (called with no arguments; an error it raises
            becomes an InputError).
        trust_code: let a checkpoint rebuild its skeleton by calling the ``module:factory``
            it records (Hugging Face and zoo checkpoints never need it).

    Returns:
        A :class:`ResolvedModel`.

    Raises:
        UnknownNameError: ``spec`` is none of these (the message lists the zoo names).

    Example:
        >>> resolve_model("digits-cnn").model(torch.rand(1, 1, 8, 8)).shape
        torch.Size([1, 10])
    """
    forms = FORMS.format(zoo=", ".join(zoo.list_models()))
    if spec in zoo.list_models():
        return ResolvedModel(zoo.load_model(spec), "zoo", spec)
    path = Path(spec)
    kind = path_kind(path)
    if kind == "dir":
        if (path / META_FILE).is_file():
            import quantlens as ql

            return ResolvedModel(ql.load(path, trust_code=trust_code), "checkpoint")
        if (path / "config.json").is_file():
            return ResolvedModel(_load_hf(path), "hf")
        raise InputError(
            f"{shorten(path)} is a folder with neither {META_FILE} nor config.json; give {forms}"
        )
    if ":" in spec and kind is None and len(spec) <= MAX_FACTORY:
        return ResolvedModel(_call_factory(spec), "factory")
    if kind is not None:
        raise InputError(f"{shorten(path)} is a file; give {forms}")
    raise UnknownNameError(f"unknown model {shorten(repr(spec))}; give {forms}")


def _load_hf(path: Path) -> nn.Module:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    transformers = require("transformers", "hf")
    try:
        model = transformers.AutoModel.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise InputError(f"transformers cannot load {path}: {error_line(exc)}") from exc
    return model.eval()


def _call_factory(spec: str) -> nn.Module:
    model = call_factory(
        spec,
        {},
        InputError,
        name=f"{spec}()",
        hint="give package.module:function on the Python path, one that builds the model with no "
        "arguments",
    )
    if not isinstance(model, nn.Module):
        raise InputError(f"{spec} returned a {type(model).__name__}, not a torch.nn.Module")
    if getattr(model, "quantlens_source", None) is None:
        model.quantlens_source = {"kind": "factory", "path": spec, "kwargs": {}}
    return model.eval()


def add_trust_code(parser) -> None:
    """The ``--trust-code`` flag of every command that takes a MODEL."""
    parser.add_argument(
        "--trust-code",
        action="store_true",
        help="let a checkpoint given as MODEL rebuild its model by calling the module:factory it "
        "records",
    )
