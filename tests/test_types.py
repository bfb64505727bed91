"""The public API type-checks: mypy over the modules pyproject.toml's [tool.mypy] names (api/,
eval/, methods/, nn/) reports nothing, and a user's script that passes a wrong type or an
unknown option name is caught (the annotations and ``Literal`` options reach user code)."""

import dataclasses
import importlib.util
import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import get_args

import pytest

import quantlens as ql
from quantlens.core.observers import OBSERVERS, ObserverName, get_observer
from quantlens.methods.backends.torch_ao import BACKENDS, Backend
from quantlens.methods.base import LAYER_ACTIONS, config_from_dict
from quantlens.methods.dynamic import ActivationScales, DynamicDtype
from quantlens.methods.static import MODES, StaticMode
from quantlens.nn.dynamic_linear import ACTIVATIONS, DTYPES

ROOT = Path(__file__).resolve().parents[1]
HAS_MYPY = importlib.util.find_spec("mypy") is not None

# Each line marked `# wrong` must be reported, and nothing else.
USER_SCRIPT = """\
import torch
import quantlens as ql

model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU())
calib = [torch.randn(4, 8) for _ in range(2)]
qm = ql.quantize(model, ql.WeightOnly(bits=4, group_size=8), calib_data=calib)
qm = ql.quantize(model, ql.Static(backend="x86", observer="entropy"), calib_data=calib)
qm = ql.quantize(model, ql.Dynamic(), example_inputs=(torch.randn(1, 8),), inplace=False)
qat = ql.prepare_qat(model, ql.QAT(backend="qnnpack"))
path = ql.save(ql.convert(qat), "out/")
ql.export(qm, path / "m.onnx", format="onnx", weight_op="dequantize")
ql.quantize(model, ql.Dynamic(), inplace="yes")  # wrong
ql.export(qm, "m.tflite", format="tflite")  # wrong
ql.quantize(model, ql.Static(backend="x87"))  # wrong
ql.quantize(model, ql.Static(observer="histogramm"))  # wrong
ql.quantize(model, ql.Dynamic(activations="per_row"))  # wrong
ql.load(path, model="MyNet")  # wrong
"""


def _mypy(*extra: str) -> subprocess.CompletedProcess:
    """mypy with the project's configuration, over its files plus ``extra``."""
    config = ROOT / "pyproject.toml"
    files = re.search(r"\[tool\.mypy\].*?files = \[(.*?)\]", config.read_text(), re.DOTALL)
    assert files, "pyproject.toml's [tool.mypy] names no files"
    paths = re.findall(r'"([^"]+)"', files.group(1))
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(config), *paths, *extra],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )


def test_each_literal_type_lists_what_the_run_time_check_accepts():
    assert BACKENDS == get_args(Backend) == ("x86", "fbgemm", "onednn", "qnnpack")
    assert MODES == get_args(StaticMode)
    assert set(get_args(DynamicDtype)) == set(DTYPES)
    assert set(get_args(ActivationScales)) == set(ACTIVATIONS)
    assert set(LAYER_ACTIONS) == {"quantized", "skipped", "float"}
    names = set(get_args(ObserverName))
    assert set(OBSERVERS) <= names
    for name in names:  # every name a type checker lets through builds an observer
        get_observer(name)


@pytest.mark.parametrize(
    "config",
    [
        ql.Static(backend="qnnpack", observer="histogram", weight_observer="minmax", mode="fx"),
        ql.QAT(backend="onednn", observer="entropy"),
        ql.Dynamic(dtype="float16", activations="per_tensor", backend="x86"),
    ],
)
def test_configs_with_literal_options_round_trip_through_json(config):
    data = json.loads(json.dumps(config.to_dict()))
    assert config_from_dict(data) == config
    options = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    assert {k: v for k, v in options.items() if isinstance(v, str)}.items() <= data.items()


@pytest.mark.slow
@pytest.mark.skipif(
    not HAS_MYPY, reason="mypy is not installed: pip install -e '.[dev]' (scripts/setup.sh does)"
)
def test_public_api_type_checks_and_catches_a_users_mistakes(tmp_path):
    script = tmp_path / "user_script.py"
    script.write_text(USER_SCRIPT)
    result = _mypy(str(script))
    lines = result.stdout.splitlines()
    ours = [line for line in lines if line.startswith("src/")]
    assert not ours, "mypy finds errors in quantlens:\n" + "\n".join(ours) + result.stderr
    reported = {
        int(m.group(1))
        for line in lines
        # by file name: mypy's cache may replay the errors of an earlier run's tmp path
        if (m := re.match(rf".*\b{re.escape(script.name)}:(\d+): error", line))
    }
    wrong = {n for n, line in enumerate(USER_SCRIPT.splitlines(), 1) if line.endswith("# wrong")}
    assert reported == wrong, textwrap.indent(result.stdout, "  ")
