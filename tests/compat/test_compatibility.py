"""A fast subset of the compatibility matrix (benchmarks/compatibility.py): every method on a
few architectures nobody here wrote, run in-process through the matrix's own cell runner.

A cell passes when the quantized model runs on a held-out batch with its main output close
to the float model's (cosine above the method's floor), or when quantlens declines with a
QuantlensError; an exception of another type, a model that fails at first inference or
outputs NaN, fails the test. The full matrix and its figures are in docs/compatibility.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from helpers import torch_threads

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
if str(BENCHMARKS) not in sys.path:
    sys.path.insert(0, str(BENCHMARKS))

import compat_cases as cc
import compatibility

# the lowest cosine with the float output each method must keep on these random-weight
# models: below the lowest the full matrix measured over all its models (docs/compatibility.md:
# >= 0.999 at 8 bits, 0.96-1.0 at 4 bits, 0.64-0.95 at 2 bits), far above a broken model's
FLOORS = {
    "dynamic": 0.99,
    "static": 0.98,
    "qat": 0.98,
    "w8": 0.995,
    "w4": 0.9,
    "w4-gptq": 0.9,
    "w2-hqq": 0.4,
}

CELLS = [
    ("squeezenet", "static"),  # Fire modules: torch.cat of two branches
    ("shufflenet-v2", "qat"),  # chunk, cat, and the channel shuffle by view / transpose
    ("mobilenet-v2", "w4-gptq"),
    ("bert", "dynamic"),
    ("bert", "w4"),
    ("t5", "w8"),
    ("llama", "w2-hqq"),
    ("llama", "w4-gptq"),
]


@pytest.fixture(scope="module")
def references():
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = compatibility.float_reference(cc.CASES[name])
        return cache[name]

    with torch_threads(1):
        yield get


@pytest.mark.parametrize(("model", "method"), CELLS)
def test_cell_runs_close_to_float_or_declines(references, model, method):
    pytest.importorskip("transformers")
    float_model, reference = references(model)
    cell = compatibility.run_cell(cc.CASES[model], method, float_model, reference)
    assert cell.status in ("runs", "declined"), f"{model} / {method}: {cell.status}: {cell.message}"
    if cell.status == "runs":
        assert cell.cosine >= FLOORS[method], (
            f"{model} / {method}: cosine {cell.cosine} < {FLOORS[method]}"
        )
        assert cell.quantized, f"{model} / {method} ran but quantized no layer"
    else:
        assert cell.message and "\n" not in cell.message


def test_a_model_without_linear_layers_gets_dynamic_convolutions(references):
    float_model, reference = references("squeezenet")
    cell = compatibility.run_cell(cc.CASES["squeezenet"], "dynamic", float_model, reference)
    assert cell.status == "runs", cell.message
    assert (cell.quantized, cell.left_float) == (11, 0)  # every Conv2d
    assert cell.cosine >= FLOORS["dynamic"]


def test_a_broken_model_is_reported_broken(references, monkeypatch):
    """The cell runner itself: a quantized model whose output is NaN is a failure."""
    float_model, reference = references("squeezenet")

    def nan_model(method, model, case):
        class Nan(torch.nn.Module):
            def forward(self, x):
                return torch.full((x.shape[0], 10), float("nan"))

        return Nan()

    monkeypatch.setattr(compatibility, "quantize", nan_model)
    cell = compatibility.run_cell(cc.CASES["squeezenet"], "static", float_model, reference)
    assert (cell.status, cell.message) == ("broken", "the output has NaN or inf values")


def test_the_docs_page_is_generated_from_the_committed_results():
    import json

    import compat_docs

    result = json.loads(compatibility.RESULTS.read_text())
    assert compatibility.DOCS.read_text() == compat_docs.render(result)
    assert {c["model"] for c in result["cells"]} == set(cc.CASES)
    assert {c["method"] for c in result["cells"]} == set(compatibility.METHODS)
