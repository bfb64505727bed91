"""``quantlens compare --analysis`` writes sensitivity.png and the ranking next to the report."""

from __future__ import annotations

import json

import pytest
import torch

from quantlens import zoo
from quantlens.cli import main


@pytest.fixture(scope="module")
def small_data(tmp_path_factory):
    test = zoo.load_dataset("digits", "test")
    path = tmp_path_factory.mktemp("data") / "digits_small.pt"
    torch.save((test.inputs[:128], test.labels[:128]), path)
    return path


def test_the_analysis_flag_writes_the_sensitivity_plot(capsys, tmp_path, small_data):
    out = tmp_path / "report"
    code = main(["compare", "digits-cnn", "--data", str(small_data), "--calib-data", str(small_data),
                 "--methods", "w8", "--reps", "1", "--no-memory", "--analysis", "--out", str(out)])
    stdout, err = capsys.readouterr()
    assert code == 0, err
    assert (out / "sensitivity.png").is_file()
    data = json.loads((out / "results.json").read_text())
    assert data["sensitivity"]["row"] == "w8" and data["sensitivity"]["rows"][0]["name"] == "fc"
    assert "--analysis" in data["command"]
    assert "most sensitive layer of w8" in stdout
    page = (out / "report.html").read_text()
    assert "Where the error comes from" in page and 'alt="sensitivity"' in page
