"""ql.load_data and load_data_for: zoo sets, tensor/npz/csv/text files, what they hold, and
the errors (an unknown spec, a file that cannot be data, text without a tokenizer)."""

import numpy as np
import pytest
import torch

import quantlens as ql
from quantlens import zoo
from quantlens.cli import main
from quantlens.core.data import iter_batches
from quantlens.errors import InputError, UnknownNameError
from quantlens.sources import load_data_for, resolve_model


def test_a_zoo_data_set_comes_in_batches_with_its_splits_and_task():
    loaded = ql.load_data("digits", batch_size=100)
    test = zoo.load_dataset("digits", "test")
    assert [b[0].shape[0] for b in loaded.test] == [100, 100, 100, 100, 50]
    assert torch.equal(torch.cat([b[0] for b in loaded.test]), test.inputs)
    assert torch.equal(torch.cat([b[1] for b in loaded.test]), test.labels)
    assert sum(b[0].shape[0] for b in loaded.calib) == len(zoo.load_dataset("digits", "calib"))
    assert loaded.train is not None and loaded.task == "classification"
    assert loaded.description == "zoo data set 'digits' (450 test samples)"
    assert ql.load_data("random-224").train is None  # a set without a train split


def test_a_pt_file_is_read_as_tensors_and_never_unpickles(tmp_path):
    x, y = torch.rand(10, 3), torch.arange(10)
    torch.save({"inputs": x, "labels": y.int()}, tmp_path / "d.pt")
    inputs, labels = ql.load_data(tmp_path / "d.pt").test
    assert torch.equal(inputs, x) and torch.equal(labels, y) and labels.dtype == torch.int64

    class Evil:
        def __reduce__(self):
            import os

            return (os.system, (f"touch {tmp_path / 'MARKER'}",))

    torch.save({"inputs": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(InputError, match="evil.pt cannot be read as tensors"):
        ql.load_data(tmp_path / "evil.pt")
    assert not (tmp_path / "MARKER").exists()


def test_an_npz_file_gives_inputs_and_labels(tmp_path):
    x = np.arange(12, dtype=np.float64).reshape(4, 3)
    np.savez(tmp_path / "d.npz", x=x, y=np.array([0, 1, 1, 0]))
    inputs, labels = ql.load_data(tmp_path / "d.npz").test
    assert inputs.dtype == torch.float32 and torch.equal(inputs, torch.tensor(x).float())
    assert labels.tolist() == [0, 1, 1, 0]


def test_a_csv_file_with_a_label_column(tmp_path):
    (tmp_path / "d.csv").write_text("a,label,b\n1.5,2,3\n4,0,-6e-1\n\n")
    inputs, labels = ql.load_data(tmp_path / "d.csv").test
    assert inputs.dtype == torch.float32 and inputs.tolist() == [
        [1.5, 3.0],
        [4.0, -0.6000000238418579],
    ]
    assert labels.dtype == torch.int64 and labels.tolist() == [2, 0]


def test_a_csv_file_without_a_header_is_all_inputs(tmp_path):
    (tmp_path / "d.csv").write_text("1,2\n3,4\n5,6\n")
    inputs = ql.load_data(tmp_path / "d.csv").test
    assert inputs.tolist() == [[1, 2], [3, 4], [5, 6]]
    assert [b.size for b in iter_batches(inputs, batch_size=2)] == [2, 1]


@pytest.mark.parametrize(
    "text, words",
    [
        ("a,b\n1,x\n", "row 2 has 'x'; give a CSV of numbers"),
        ("1,2\n3\n", "row 2 has 1 columns, not 2"),
        ("a,b\n", "has no rows of numbers"),
    ],
)
def test_a_csv_file_that_is_not_a_table_of_numbers(tmp_path, text, words):
    (tmp_path / "d.csv").write_text(text)
    with pytest.raises(InputError, match=words):
        ql.load_data(tmp_path / "d.csv")


def _tokenizer(lines, *, padding, truncation, max_length, return_tensors):
    """A tokenizer with Hugging Face's call: one id per character, padded to the batch."""
    assert padding is True and truncation is True and return_tensors == "pt"
    ids = [[ord(c) for c in line][:max_length] for line in lines]
    width = max(len(i) for i in ids)
    return {
        "input_ids": torch.tensor([i + [0] * (width - len(i)) for i in ids]),
        "attention_mask": torch.tensor([[1] * len(i) + [0] * (width - len(i)) for i in ids]),
    }


def test_a_text_file_gives_lines_or_token_batches(tmp_path):
    (tmp_path / "t.txt").write_text("To be,\n\n  or not to be:\nthat is\n")
    lines = ql.load_data(tmp_path / "t.txt")
    assert lines.test == ["To be,", "or not to be:", "that is"] and lines.task == "text"
    tokens = ql.load_data(tmp_path / "t.txt", tokenizer=_tokenizer, batch_size=2, max_length=5)
    first, second = tokens.test
    assert first["input_ids"].shape == (2, 5) and second["input_ids"].shape == (1, 5)
    assert first["attention_mask"].tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 1, 1]]
    assert second["input_ids"][0].tolist() == [ord(c) for c in "that "]
    assert tokens.task is None


def test_unknown_and_unsupported_data_specs(tmp_path):
    with pytest.raises(UnknownNameError, match=r"unknown data 'nope'.*valid zoo data sets: digits"):
        ql.load_data("nope")
    (tmp_path / "d.json").write_text("{}")
    with pytest.raises(InputError, match=r"unsupported data file type '.json'; give a .pt"):
        ql.load_data(tmp_path / "d.json")
    with pytest.raises(InputError, match="batch_size must be an integer >= 1"):
        ql.load_data("digits", batch_size=0)


def test_data_for_a_model_defaults_to_its_zoo_set_and_takes_overrides(tmp_path):
    torch.save(torch.rand(5, 1, 8, 8), tmp_path / "calib.pt")
    loaded = load_data_for(resolve_model("digits-cnn"), calib_data=tmp_path / "calib.pt")
    assert loaded.description.startswith("zoo data set 'digits'")
    assert loaded.calib.shape == (5, 1, 8, 8) and loaded.train is not None
    with pytest.raises(InputError, match="give data for a model that is not from the zoo"):
        load_data_for(resolve_model("torch.nn:Identity", trust_code=True))
    (tmp_path / "t.txt").write_text("words\n")
    with pytest.raises(InputError, match=r"t.txt is a text file, which needs a tokenizer"):
        load_data_for(None, "digits", train_data=tmp_path / "t.txt")


def test_the_command_line_refuses_text_data_in_one_line(tmp_path, capsys):
    (tmp_path / "t.txt").write_text("words\n")
    argv = ["quantize", "digits-cnn", "--method", "static", "--calib-data", str(tmp_path / "t.txt")]
    assert main([*argv, "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert "t.txt is a text file, which needs a tokenizer" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_the_command_line_runs_a_file_factory_it_was_given(tmp_path, capsys):
    (tmp_path / "nets.py").write_text(
        "import torch\ndef make():\n    return torch.nn.Sequential(torch.nn.Linear(64, 64))\n"
    )
    out = tmp_path / "out"
    assert main(["quantize", f"{tmp_path / 'nets.py'}:make", "--bits", "8", "-o", str(out)]) == 0
    capsys.readouterr()
    loaded = ql.load(out, trust_code=True)
    assert type(loaded[0]).__name__ == "QLinear"
