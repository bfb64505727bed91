"""The output head of a causal language model, which weight-only and dynamic quantization
leave in float unless asked (``WeightOnly(lm_head=True)``, ``Dynamic(lm_head=True)``).

AutoGPTQ / GPTQModel, AutoAWQ, llm-compressor and torchao all keep a Llama model's
``lm_head`` (and its input embedding) in float by default: the head turns the last hidden
state into the logits of every token, so its error reaches the loss directly, and in a small
model it is a large share of the weights (SmolLM2-135M: 49152 x 576, a fifth of them).
On SmolLM2, w4 g128 RTN with the head quantized costs about twice the perplexity increase
it costs with the head float (``benchmarks/results/llm.json`` has both rows).

The head of a model is found three ways: the output embeddings of a Hugging Face model that
generates (``*ForCausalLM``, ``*LMHeadModel``: ``get_output_embeddings()``), a module named
``lm_head``, and a Linear whose weight is an Embedding's weight (a tied pair). An Embedding
tied to a head stays with it: quantizing it alone would unshare the tensor and save nothing.

Example:
    >>> heads = output_heads(llama)       # {id(module): "head" or "tied"}
    >>> heads[id(llama.lm_head)]
    'head'
"""

from __future__ import annotations

from typing import Literal

from torch import nn

from quantlens.methods.base import QuantConfig, matches

HeadRole = Literal["head", "tied"]

LM_HEAD_REASON = "language-model head (default for causal LMs; pass lm_head=True to quantize it)"
TIED_REASON = (
    "input embedding tied to the language-model head, which stays float "
    "(default for causal LMs; pass lm_head=True to quantize both)"
)
HEAD_NAME = "lm_head"


def _generates(model: nn.Module) -> bool:
    """A Hugging Face model that generates text (a causal LM or a seq2seq LM)."""
    can_generate = getattr(model, "can_generate", None)
    try:
        generates = bool(can_generate()) if callable(can_generate) else False
    except Exception:  # noqa: BLE001 - a model whose check itself fails is not one
        generates = False
    return generates or type(model).__name__.endswith(("ForCausalLM", "LMHeadModel"))


def output_heads(model: nn.Module) -> dict[int, HeadRole]:
    """The language-model head(s) of ``model`` and the embeddings tied to them.

    Args:
        model: any module; a model that is not a language model has none.

    Returns:
        ``{id(module): role}``: ``"head"`` for an output head, ``"tied"`` for an Embedding
        sharing its weight with one.

    Example:
        >>> output_heads(nn.Sequential(nn.Linear(4, 4)))
        {}
    """
    heads: dict[int, nn.Module] = {}
    get_output = getattr(model, "get_output_embeddings", None)
    if _generates(model) and callable(get_output):
        out = get_output()
        if isinstance(out, nn.Module):
            heads[id(out)] = out
    embeddings = {}
    for name, module in model.named_modules():
        if name.rpartition(".")[2] == HEAD_NAME:
            heads[id(module)] = module
        if isinstance(module, nn.Embedding):
            embeddings[id(module.weight)] = module
    for module in model.modules():
        if isinstance(module, nn.Linear) and id(module.weight) in embeddings:
            heads[id(module)] = module
    roles: dict[int, HeadRole] = dict.fromkeys(heads, "head")
    head_weights = {id(getattr(m, "weight", None)) for m in heads.values()}
    for weight_id, embedding in embeddings.items():
        if weight_id in head_weights and id(embedding) not in roles:
            roles[id(embedding)] = "tied"
    return roles


def head_asked(root: QuantConfig, name: str, resolved: QuantConfig) -> bool:
    """Whether the user asked to quantize the head ``name``: its resolved config says
    ``lm_head=True``, or an override pattern names it."""
    return bool(getattr(resolved, "lm_head", False)) or any(
        matches(name, pattern) for pattern, _ in root.overrides
    )


def head_reason(role: HeadRole) -> str:
    """The summary reason of a head (or its tied embedding) kept float."""
    return LM_HEAD_REASON if role == "head" else TIED_REASON
