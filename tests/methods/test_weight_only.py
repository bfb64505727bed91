"""WeightOnly on small hand-written models: config, layer selection, algorithms, checkpoints."""

import json

import pytest
import torch
from helpers import assert_similar, child_verdict, generator, in_child, random_tensor
from torch import nn

import quantlens as ql
from quantlens.api import dequantize
from quantlens.core.metrics import cosine_similarity
from quantlens.errors import CheckpointError, ConfigError, NothingToQuantizeError
from quantlens.methods.base import config_from_dict
from quantlens.methods.weight_only import WeightOnly
from quantlens.methods.weight_only.gptq import collect_hessians, gptq_quantize
from quantlens.methods.weight_only.hqq import hqq_quantize
from quantlens.nn import QEmbedding, QLinear
from quantlens.nn.kernels import force_kernel


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(50, 64)
        self.up = nn.Linear(64, 128)
        self.act = nn.GELU()
        self.down = nn.Linear(128, 64)
        self.head = nn.Linear(64, 32, bias=False)

    def forward(self, ids):
        return self.head(self.down(self.act(self.up(self.emb(ids)))))


def tiny() -> Tiny:
    torch.manual_seed(0)
    return Tiny().eval()


IDS = torch.randint(0, 50, (4, 16), generator=generator(1))


# --- config ------------------------------------------------------------------------------


def test_config_round_trips_through_json_with_modules_as_names():
    cfg = WeightOnly(
        bits=4,
        group_size=64,
        modules=(nn.Linear, nn.Embedding),
        skip=["head"],
        overrides={"up": WeightOnly(bits=8, group_size=None)},
    )
    assert cfg.modules == ("linear", "embedding")
    data = json.loads(json.dumps(cfg.to_dict()))
    assert data["method"] == "weight_only" and data["modules"] == ["linear", "embedding"]
    assert config_from_dict(data) == cfg


def test_symmetric_defaults_to_asymmetric_below_8_bits():
    assert WeightOnly(bits=4).symmetric is False
    assert WeightOnly(bits=8).symmetric is True
    assert (
        WeightOnly(bits=4, symmetric=True).scheme_for((8, 128)).describe()
        == "int4 sym per_group(128)"
    )
    assert (
        WeightOnly(bits=8, group_size=None).scheme_for((8, 128)).describe()
        == "int8 sym per_channel(axis=0)"
    )


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"bits": 9}, "bits"),
        ({"algorithm": "awq2"}, "unknown algorithm"),
        ({"modules": (nn.LSTM,)}, "cannot quantize"),
        ({"codebook": "nf4", "algorithm": "gptq"}, "uniform"),
        ({"group_size": 0}, "group_size"),
    ],
)
def test_bad_configs_raise_config_error(kwargs, words):
    with pytest.raises(ConfigError, match=words):
        WeightOnly(**kwargs)


# --- apply -------------------------------------------------------------------------------


def test_linear_only_by_default_and_model_left_untouched():
    model = tiny()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    qm = ql.quantize(model, WeightOnly(bits=4, group_size=32))
    assert (
        isinstance(qm.up, QLinear)
        and isinstance(qm.head, QLinear)
        and isinstance(qm.emb, nn.Embedding)
    )
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert isinstance(model.up, nn.Linear)
    s = qm.quantlens_summary
    assert [r.name for r in s.quantized] == ["up", "down", "head"]
    assert all(r.bytes_after < r.bytes_before / 4 for r in s.quantized)
    cos = cosine_similarity(qm(IDS).flatten(), model(IDS).flatten())
    assert cos > 0.99


def test_embeddings_quantized_when_asked():
    model = tiny()
    qm = ql.quantize(model, WeightOnly(bits=4, group_size=32, modules=(nn.Linear, nn.Embedding)))
    assert isinstance(qm.emb, QEmbedding)
    assert "emb" in [r.name for r in qm.quantlens_summary.quantized]
    assert_similar(qm(IDS), model(IDS), min_cosine=0.98)


def test_a_group_size_that_does_not_fit_falls_back_and_says_so():
    model = nn.Sequential(
        nn.Linear(256, 128),
        nn.ReLU(),
        nn.Linear(128, 96),
        nn.Linear(96, 16),
        nn.Linear(200, 8),
        nn.Linear(131, 8),
    )
    qm = ql.quantize(model, WeightOnly(bits=4, group_size=128))
    assert (
        all(isinstance(qm[i], QLinear) for i in (0, 2, 3, 4, 5))
        and not qm.quantlens_summary.skipped
    )
    schemes = {i: qm[i].scheme for i in (0, 2, 3, 4, 5)}
    assert schemes[0].group_size == 128 and schemes[2].group_size == 128  # divides: as asked
    assert schemes[3].granularity == "per_channel"  # 96 < 128: one group per row
    assert schemes[4].granularity == "per_group" and schemes[4].group_size == 100  # 200 = 2 x 100
    assert schemes[5].granularity == "per_channel"  # 131 is prime: no group in [64, 128]
    details = {r.name: r.detail for r in qm.quantlens_summary.records}
    assert (
        details["3"]
        == "uint4 asym per_channel(axis=0), rtn (input size 96 < group_size 128: one group per row)"
    )
    assert details["4"].endswith("(group_size 128 does not divide 200: groups of 100)")
    assert "no group size in [64, 128] divides 131" in details["5"]
    assert "does not fit 3 layer(s)" in str(qm.quantlens_summary)
    x = torch.randn(2, 256)
    assert qm[:4](x).shape == (2, 16)


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_defaults_quantize_a_small_linear(bits):
    model = nn.Sequential(nn.Linear(64, 64))
    qm = ql.quantize(model, WeightOnly(bits=bits))
    assert isinstance(qm[0], QLinear)
    assert qm[0].scheme.granularity == "per_channel"  # 8 bits: the default; below: 64 < 128
    x = torch.randn(4, 64)
    assert (
        cosine_similarity(qm(x).flatten(), model(x).flatten())
        > {2: 0.8, 3: 0.95, 4: 0.98, 8: 0.9999}[bits]
    )


def test_group_size_auto_is_per_channel_at_8_bits_and_128_below():
    assert WeightOnly(bits=8).group_size is None and WeightOnly(bits=4).group_size == 128
    assert WeightOnly(bits=2, group_size="auto").group_size == 128
    assert WeightOnly(bits=8, group_size=64).group_size == 64
    for cfg in (WeightOnly(bits=8), WeightOnly(bits=3)):
        assert config_from_dict(cfg.to_dict()) == cfg


def test_two_bit_mlp_quantizes_every_layer_and_sensitivity_sees_them():
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 256)).eval()
    qm = ql.quantize(model, WeightOnly(bits=2))
    assert [r.name for r in qm.quantlens_summary.quantized] == ["0", "2"]
    result = ql.analysis.sensitivity(
        model, torch.randn(128, 64), WeightOnly(bits=2), metric="cosine"
    )
    assert {r.name for r in result.rows} == {"0", "2"}


def test_skip_and_overrides_give_per_layer_settings():
    cfg = WeightOnly(
        bits=4, group_size=32, skip=["head"], overrides={"up": WeightOnly(bits=8, group_size=None)}
    )
    qm = ql.quantize(tiny(), cfg)
    assert not isinstance(qm.head, QLinear)
    assert qm.up.scheme.bits == 8 and qm.up.scheme.granularity == "per_channel"
    assert qm.down.scheme.bits == 4
    reasons = {r.name: r.reason for r in qm.quantlens_summary.skipped}
    assert reasons == {"head": "matches a skip pattern", "emb": "not in modules=(linear,)"}


def test_summary_names_layers_that_were_never_candidates_and_whole_model_bytes():
    class WithNorm(Tiny):
        def __init__(self):
            super().__init__()
            self.norm = nn.LayerNorm(64)

    torch.manual_seed(0)
    model = WithNorm().eval()
    qm = ql.quantize(model, WeightOnly(bits=4, group_size=32))
    s = qm.quantlens_summary
    floats = {r.name: (r.kind, r.action, r.reason) for r in s.skipped}
    assert floats == {
        "emb": ("Embedding", "float", "not in modules=(linear,)"),
        "norm": ("LayerNorm", "float", "WeightOnly has no quantized layer of this kind"),
    }
    # whole model: every parameter and buffer, float ones included (fp32: 4 bytes each)
    assert s.model_bytes_before == 4 * sum(p.numel() for p in model.parameters())
    assert s.model_bytes_after == sum(
        t.numel() * t.element_size() for t in qm.state_dict().values()
    )
    float_bytes = 4 * (50 * 64 + 2 * 64)  # emb + norm, unchanged
    quantized_after = sum(r.bytes_after for r in s.quantized)
    assert s.model_bytes_after == float_bytes + quantized_after
    text = str(s)
    assert "quantized 3 layer(s), left 2 in float" in text
    assert "  float (1): Embedding: not in modules=(linear,) [emb]" in text
    assert "  float (1): LayerNorm: WeightOnly has no quantized layer of this kind [norm]" in text
    before_mb, after_mb = s.model_bytes_before / 1e6, s.model_bytes_after / 1e6
    assert f"whole model (parameters and buffers): {before_mb:.2f} MB -> {after_mb:.2f} MB" in text
    assert [r.name for r in s.records] == ["emb", "up", "down", "head", "norm"]  # module order


def test_a_bare_linear_is_replaced_as_the_root():
    lin = nn.Linear(64, 32)
    q = ql.quantize(lin, WeightOnly(bits=8, group_size=None))
    assert isinstance(q, QLinear) and q.quantlens_summary.quantized[0].name == ""
    x = torch.randn(3, 64)
    assert_similar(q(x), lin(x), min_cosine=0.9999)


def test_shared_module_is_replaced_everywhere():
    shared = nn.Linear(64, 64)
    model = nn.Sequential(shared, nn.ReLU(), shared)
    qm = ql.quantize(model, WeightOnly(bits=4, group_size=64))
    assert qm[0] is qm[2] and isinstance(qm[0], QLinear)


def test_model_without_linear_quantizes_its_convolutions_by_default():
    """SqueezeNet-style: a 1x1 conv classifier, no Linear layer at all."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3), nn.ReLU(), nn.Conv2d(16, 10, 1), nn.AdaptiveAvgPool2d(1)
    ).eval()
    qm = ql.quantize(model, WeightOnly(bits=8))
    summary = qm.quantlens_summary
    assert [r.name for r in summary.quantized] == ["0", "2"]
    assert any("no Linear layer" in n and "conv2d" in n for n in summary.notes)
    x = torch.randn(2, 3, 8, 8)
    assert_similar(qm(x), model(x), min_sqnr_db=30, min_cosine=0.999)
    assert WeightOnly().modules is None and WeightOnly(modules="linear").modules == ("linear",)


def test_explicit_modules_stay_strict():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU())
    with pytest.raises(NothingToQuantizeError, match="Conv2d"):
        ql.quantize(model, WeightOnly(bits=4, modules=("linear",)))


def test_a_model_with_linear_layers_keeps_its_convolutions_float_by_default():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(4 * 36, 10))
    records = {r.name: r for r in ql.quantize(model, WeightOnly(bits=8)).quantlens_summary.records}
    assert records["2"].action == "quantized" and records["0"].action == "float"
    assert records["0"].reason == "not in modules=(linear,)"


def test_gptq_needs_calibration_data():
    with pytest.raises(ConfigError, match="calib_data"):
        ql.quantize(tiny(), WeightOnly(bits=4, group_size=32, algorithm="gptq"))


# --- algorithms --------------------------------------------------------------------------


def _correlated_inputs(n=512, d=128, seed=0):
    g = generator(seed)
    mix = torch.randn(d, d, generator=g) / d**0.5
    scales = torch.logspace(-1, 1, d)
    return (torch.randn(n, d, generator=g) * scales) @ mix  # (n, d), strongly non-isotropic


def test_gptq_beats_rtn_on_output_error():
    lin = nn.Linear(128, 64)
    x = _correlated_inputs()
    scheme = WeightOnly(bits=4, group_size=32).scheme_for(lin.weight.shape)
    H = collect_hessians(nn.Sequential(lin), ["0"], x)["0"]
    w = lin.weight.detach()
    err = {
        name: ((x @ (qt.dequantize() - w).T) ** 2).mean().item()
        for name, qt in {
            "rtn": ql.quantize_tensor(w, scheme),
            "gptq": gptq_quantize(w, H, scheme),
        }.items()
    }
    assert err["gptq"] < 0.7 * err["rtn"]


@pytest.mark.parametrize("bits", [2, 4])
def test_hqq_beats_rtn_on_weight_error(bits):
    w = random_tensor(64, 256, dist="laplace")
    scheme = WeightOnly(bits=bits, group_size=64).scheme_for(w.shape)
    rtn = (ql.quantize_tensor(w, scheme).dequantize() - w).abs().mean()
    hq = hqq_quantize(w, scheme)
    assert hq.data.dtype == torch.uint8 and hq.zero_point.dtype == torch.int32
    assert (hq.dequantize() - w).abs().mean() < rtn


def test_gptq_quantized_model_runs_and_embeddings_fall_back():
    cfg = WeightOnly(bits=4, group_size=32, algorithm="gptq", modules=("linear", "embedding"))
    qm = ql.quantize(tiny(), cfg, calib_data=[IDS])
    assert "gptq does not apply to Embedding layers; they use hqq" in qm.quantlens_summary.notes
    assert isinstance(qm.emb, QEmbedding) and qm(IDS).shape == (4, 16, 32)


# --- checkpoints -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cfg",
    [
        WeightOnly(bits=4, group_size=32, modules=("linear", "embedding")),
        WeightOnly(bits=2, group_size=32, algorithm="hqq"),
        WeightOnly(bits=8, group_size=None),
        WeightOnly(bits=4, group_size=32, codebook="nf4"),
    ],
)
def test_save_load_into_a_skeleton_is_bit_identical(tmp_path, cfg):
    qm = ql.quantize(tiny(), cfg)
    ql.save(qm, tmp_path / "ckpt")
    skeleton = Tiny()  # other random weights: they must not matter
    loaded = ql.load(tmp_path / "ckpt", model=skeleton)
    assert torch.equal(loaded(IDS), qm(IDS))
    assert type(loaded.up) is QLinear and loaded.quantlens_config == cfg


def test_a_checkpoint_that_left_a_layer_float_loads_as_it_was_saved(tmp_path):
    """Before group sizes were fitted, layers the group did not divide stayed float: such a
    checkpoint records the layers it quantized, and loading follows that list and schemes."""
    model = nn.Sequential(nn.Linear(256, 64), nn.ReLU(), nn.Linear(64, 96), nn.Linear(96, 8))
    qm = ql.quantize(model, WeightOnly(bits=4, group_size=128, skip=["3"]))
    ql.save(qm, tmp_path / "c")
    meta_path = tmp_path / "c" / "quantlens.json"
    meta = json.loads(meta_path.read_text())
    meta["config"]["skip"] = []  # as an older quantlens wrote it: no skip, layer 3 float
    meta_path.write_text(json.dumps(meta))
    loaded = ql.load(
        tmp_path / "c",
        model=nn.Sequential(nn.Linear(256, 64), nn.ReLU(), nn.Linear(64, 96), nn.Linear(96, 8)),
    )
    assert type(loaded[3]) is nn.Linear and loaded[2].scheme == qm[2].scheme
    x = torch.randn(3, 256)
    assert torch.equal(loaded(x), qm(x))


def test_load_without_source_or_skeleton_says_how(tmp_path):
    ql.save(ql.quantize(tiny(), WeightOnly(bits=4, group_size=32)), tmp_path / "c")
    with pytest.raises(CheckpointError, match="model="):
        ql.load(tmp_path / "c")


def test_skeleton_with_other_shapes_is_a_checkpoint_error(tmp_path):
    ql.save(ql.quantize(tiny(), WeightOnly(bits=4, group_size=32)), tmp_path / "c")
    wrong = nn.Sequential(nn.Linear(64, 32))
    with pytest.raises(CheckpointError, match="model.safetensors"):
        ql.load(tmp_path / "c", model=wrong)


# --- bad checkpoints ---------------------------------------------------------------------


@pytest.fixture()
def saved(tmp_path):
    return ql.save(ql.quantize(tiny(), WeightOnly(bits=4, group_size=32)), tmp_path / "c")


def _break_missing(ckpt):
    (ckpt / "model.safetensors").unlink()
    return "model.safetensors is missing"


def _break_truncated_weights(ckpt):
    path = ckpt / "model.safetensors"
    path.write_bytes(path.read_bytes()[:100])
    return "model.safetensors does not match the SHA-256"  # the digest catches the truncation first


def _break_truncated_json(ckpt):
    path = ckpt / "quantlens.json"
    path.write_text(path.read_text()[:50])
    return "quantlens.json is not valid JSON"


def _break_newer_version(ckpt):
    path = ckpt / "quantlens.json"
    meta = json.loads(path.read_text())
    meta["format_version"] = 99
    path.write_text(json.dumps(meta))
    return "quantlens.json has format version 99"


@pytest.mark.parametrize(
    "breaker",
    [_break_missing, _break_truncated_weights, _break_truncated_json, _break_newer_version],
)
def test_broken_checkpoints_raise_checkpoint_error_naming_the_file(saved, breaker):
    words = breaker(saved)
    with pytest.raises(CheckpointError, match=words):
        ql.load(saved, model=Tiny())


def test_load_never_unpickles(saved, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("torch.load called")

    monkeypatch.setattr(torch, "load", refuse)
    import pickle

    monkeypatch.setattr(pickle, "loads", refuse)
    assert isinstance(ql.load(saved, model=Tiny()).up, QLinear)


def test_conv2d_when_asked_per_channel_and_grouped_over_input_channels(tmp_path):
    from quantlens.nn.qconv import QConv2d

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 8, 1)).eval()
    x = torch.randn(2, 16, 8, 8)
    for group in (None, 16):
        qm = ql.quantize(model, WeightOnly(bits=8, group_size=group, modules=(nn.Conv2d,)))
        assert isinstance(qm[0], QConv2d) and isinstance(qm[2], QConv2d)
        assert_similar(qm(x), model(x), min_cosine=0.999)
    assert qm[0].scheme.axis == 1 and qm[0].scale.shape == (32, 3, 3, 1)
    loaded = ql.load(ql.save(qm, tmp_path / "conv"), model=model)
    assert torch.equal(loaded(x), qm(x))


@pytest.mark.parametrize(
    "cfg",
    [
        WeightOnly(bits=4, group_size=32, modules=("linear", "embedding")),
        WeightOnly(bits=8, group_size=None, modules=("linear", "embedding")),
    ],
)
def test_dequantize_gives_float_layers_and_requantizing_the_same_way_gives_the_same_codes(cfg):
    qm = ql.quantize(tiny(), cfg)
    back = dequantize(qm)
    assert (
        type(back.up) is nn.Linear and type(back.emb) is nn.Embedding and isinstance(qm.up, QLinear)
    )
    assert torch.equal(back.up.weight, qm.up.dequantized_weight()) and torch.equal(
        back.up.bias, qm.up.bias
    )
    with force_kernel(qm, "reference"):  # the definition: float32 matmul of the dequantized weight
        assert_similar(back(IDS), qm(IDS), atol=1e-5)
    assert not hasattr(back, "quantlens_config")
    again = ql.quantize(back, cfg)
    for name in ("emb", "up", "down", "head"):
        assert torch.equal(getattr(again, name).weight_packed, getattr(qm, name).weight_packed), (
            name
        )


def test_dequantize_inplace_turns_the_model_itself_back():
    qm = ql.quantize(tiny(), WeightOnly(bits=4, group_size=32))
    expected = dequantize(qm)
    back = dequantize(qm, inplace=True)
    assert back is qm and type(qm.up) is nn.Linear and not hasattr(qm, "quantlens_config")
    assert torch.equal(back.up.weight, expected.up.weight)


def test_dequantize_refuses_int8_and_float_models():
    from quantlens.api import dequantize
    from quantlens.errors import InputError

    with pytest.raises(InputError, match="not quantized by quantlens"):
        dequantize(tiny())
    with pytest.raises(
        InputError,
        match="dynamic model cannot be turned back into float.*start from the float model",
    ):
        dequantize(ql.quantize(tiny(), ql.Dynamic()))


ODD_SETTINGS = [
    {"bits": b, "group_size": g} for b in (8, 4, 3, 2) for g in ("auto", None, 32, 16, 5)
] + [
    {"bits": 4, "algorithm": "hqq"},
    {"bits": 2, "algorithm": "hqq", "group_size": 16},
    {"bits": 4, "codebook": "nf4"},
    {"bits": 8, "symmetric": False},
    {"bits": 4, "symmetric": True, "group_size": None},
]


def _odd_width_sweep() -> list[str]:
    """The odd-width model at every batch 1..17 (and 3-D, bf16) under every setting."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 32), nn.GELU(), nn.Linear(32, 6)).eval()
    x = torch.randn(17, 20)
    bad = []
    for settings in ODD_SETTINGS:
        qm = ql.quantize(model, WeightOnly(**settings))
        if len(qm.quantlens_summary.quantized) != 2:
            bad.append(f"{settings}: quantized {len(qm.quantlens_summary.quantized)} of 2 layers")
        floor = 0.9 if settings["bits"] >= 3 else 0.5
        for m in range(1, 18):
            cos = cosine_similarity(qm(x[:m]).flatten(), model(x[:m]).flatten())
            if not cos > floor:
                bad.append(f"{settings} batch {m}: cosine {cos:.3f}")
        y3 = qm(x[:15].reshape(3, 5, 20).bfloat16())
        if y3.shape != (3, 5, 6) or y3.dtype != torch.bfloat16:
            bad.append(f"{settings} 3-D bf16: {tuple(y3.shape)} {y3.dtype}")
    return bad


def test_the_odd_width_model_runs_at_every_batch_with_every_setting():
    """Linear(20, 32) -> Linear(32, 6): widths no packed kernel takes; it used to segfault at
    batch 6 (int8pack in bf16). Run in a child so that a crash fails the test."""
    code, failures = in_child(_odd_width_sweep)
    assert code == 0 and not failures, child_verdict(code, failures)
