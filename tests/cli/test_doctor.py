import json

import torch

from quantlens.cli import main


def test_doctor_json_parses_and_lists_engines(capsys):
    assert main(["doctor", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["engines"]["active"] == torch.backends.quantized.engine
    assert info["engines"]["supported"] and set(info["engines"]["works"]) == set(
        info["engines"]["supported"]
    )
    assert "transformers" in info["extras"] and "avx2" in json.dumps(info["cpu"])


def test_doctor_table(capsys):
    assert main(["doctor", "--no-engine-check"]) == 0
    out = capsys.readouterr().out
    assert "quantized engines" in out and torch.backends.quantized.engine in out
    assert "optional extras" in out and "not checked" in out
