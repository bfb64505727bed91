"""The zoo registry: names, errors, data splits and the batch forms they produce."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from quantlens import zoo
from quantlens.core.data import iter_batches
from quantlens.errors import UnknownNameError

pytest.importorskip("sklearn")

MODELS = {"digits-cnn", "digits-lstm", "digits-gru", "cat-cnn", "resnet18", "minilm", "smollm2"}
DATASETS = {"digits", "digits-seq", "random-224", "sentences", "shakespeare"}


def test_lists_name_every_model_and_dataset():
    assert set(zoo.list_models()) == MODELS
    assert set(zoo.list_datasets()) == DATASETS
    for name in MODELS:
        assert zoo.default_dataset_for(name) in DATASETS
        assert zoo.describe(name)
    assert "SYNTHETIC" in zoo.describe("random-224")


@pytest.mark.parametrize(
    "call, valid",
    [
        (lambda: zoo.load_model("resnet-18"), MODELS),
        (lambda: zoo.default_dataset_for("nope"), MODELS),
        (lambda: zoo.example_inputs("nope"), MODELS),
        (lambda: zoo.load_dataset("mnist"), DATASETS),
        (lambda: zoo.load_dataset("digits", split="validation"), {"train", "test", "calib"}),
    ],
)
def test_unknown_names_list_the_valid_ones(call, valid):
    with pytest.raises(UnknownNameError) as info:
        call()
    message = str(info.value)
    assert "valid" in message
    for name in valid:
        assert name in message
    assert isinstance(info.value, KeyError)  # callers catching KeyError still work


def test_digits_splits_are_fixed_stratified_and_scaled():
    train, test, calib = (zoo.load_dataset("digits", s) for s in ("train", "test", "calib"))
    assert (len(train), len(test), len(calib)) == (1347, 450, 256)
    assert test.inputs.shape == (450, 1, 8, 8) and test.inputs.dtype == torch.float32
    assert test.labels.dtype == torch.int64 and test.task == "classification"
    assert 0.0 == float(train.inputs.min()) and float(train.inputs.max()) == 1.0
    counts = torch.bincount(test.labels, minlength=10)
    assert counts.min() >= 44 and counts.max() <= 46  # every class ~1/4 in test
    assert torch.bincount(calib.labels, minlength=10).min() >= 15  # calib covers every class
    assert torch.equal(calib.inputs, train.inputs[:256])
    again = zoo.load_dataset("digits", "test")
    assert torch.equal(again.inputs, test.inputs) and torch.equal(again.labels, test.labels)
    again.inputs.zero_()  # callers get their own tensors: the next load is unaffected
    assert torch.equal(zoo.load_dataset("digits", "test").inputs, test.inputs)


def test_train_and_test_images_do_not_overlap():
    train, test = zoo.load_dataset("digits", "train"), zoo.load_dataset("digits", "test")
    rows = {tuple(x.flatten().tolist()) for x in train.inputs}
    shared = sum(tuple(x.flatten().tolist()) in rows for x in test.inputs)
    assert shared <= 2  # load_digits itself holds a few identical images; the split adds none


def test_digits_seq_is_the_same_images_read_by_rows():
    img, seq = zoo.load_dataset("digits", "test"), zoo.load_dataset("digits-seq", "test")
    assert seq.inputs.shape == (450, 8, 8) and seq.task == "sequence-classification"
    assert torch.equal(seq.inputs, img.inputs[:, 0]) and torch.equal(seq.labels, img.labels)


def test_batches_feed_iter_batches_with_labels():
    test = zoo.load_dataset("digits", "test")
    batches = list(iter_batches(test.batches(100)))
    assert [b.size for b in batches] == [100, 100, 100, 100, 50]
    assert torch.equal(torch.cat([b.labels for b in batches]), test.labels)
    assert torch.equal(torch.cat([b.args[0] for b in batches]), test.inputs)
    assert len(list(iter_batches(test.as_pair(), batch_size=100))) == 5


def test_unlabelled_batches_are_not_mistaken_for_pairs():
    data = zoo.load_dataset("random-224", "calib")  # 8 images -> exactly two batches of 4
    assert data.labels is None and data.extra["synthetic"]
    batches = list(iter_batches(data.batches(4)))
    assert len(batches) == 2
    assert all(b.labels is None and b.args[0].shape == (4, 3, 224, 224) for b in batches)
    assert not torch.equal(data.inputs, zoo.load_dataset("random-224", "test").inputs[:8])


def test_zoodata_is_frozen():
    data = zoo.load_dataset("digits", "calib")
    with pytest.raises(dataclasses.FrozenInstanceError):
        data.labels = None
    with pytest.raises(ValueError):
        data.batches(0)
