"""Static/QAT robustness: the first run after converting (repairs, or an error that names the
op), SyncBatchNorm folded like BatchNorm, per-sample norms left float with a reason, and QAT
models that go through a training loop (deepcopy, state_dict, .to(), DistributedDataParallel)
before ``ql.convert``."""

from __future__ import annotations

import copy
import datetime
import socket

import pytest
import torch
import torch.nn.functional as F
from helpers import assert_similar, generator, torch_threads
from torch import nn

import quantlens as ql
from quantlens.errors import QuantizationFailedError
from quantlens.methods import int8_check
from quantlens.methods.base import QuantSummary
from quantlens.methods.fusion import SyncedBatchNorm

pytestmark = pytest.mark.usefixtures("one_thread")


class Net(nn.Module):
    """Conv-BN-ReLU twice, a standalone BatchNorm1d after the Linear, view before it."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(16)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(16 * 4 * 4, 10)
        self.bn3 = nn.BatchNorm1d(10)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.pool(F.relu(self.bn2(self.conv2(x))))
        return self.bn3(self.fc(x.view(x.size(0), -1)))


class Upsampler(nn.Module):
    """A bicubic upsampling between int8 convolutions: no quantized kernel for it."""

    def __init__(self, op=None):
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3)
        self.conv2 = nn.Conv2d(8, 4, 1)
        self.fc = nn.Linear(4 * 12 * 12, 4)
        self.op = op or (lambda t: F.interpolate(t, scale_factor=2, mode="bicubic"))

    def forward(self, x):
        x = self.conv2(self.op(F.relu(self.conv(x))))
        return self.fc(x.reshape(x.size(0), -1))


def _seeded(cls, seed: int = 0) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = cls()
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            g = generator(seed + 1)
            m.running_mean.copy_(torch.rand(m.num_features, generator=g) * 0.2 - 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return model.eval()


def _x(n: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 1, 8, 8, generator=generator(seed))


def _float_batchnorms(model: nn.Module) -> list[str]:
    """BatchNorms that are not int8 kernels (torch's quantized BatchNorm subclasses BatchNorm)."""
    return [
        n
        for n, m in model.named_modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm)
        and not type(m).__module__.startswith("torch.ao.nn.quantized")
    ]


# --- the first run ----------------------------------------------------------------------------


def test_an_op_without_int8_kernel_is_repaired_to_float_and_noted():
    model = _seeded(Upsampler)
    qm = ql.quantize(model, ql.Static(), calib_data=_x())
    x = _x(seed=1)
    with torch.no_grad():
        assert_similar(qm(x), model(x), min_cosine=0.999)
    notes = "\n".join(qm.quantlens_summary.notes)
    assert "op 'interpolate'" in notes and "runs in float (DeQuant before it)" in notes
    assert "a Quant after it with its input's scale" in notes
    assert {r.name for r in qm.quantlens_summary.quantized} == {"conv", "conv2", "fc"}


def test_a_view_that_still_fails_is_made_contiguous_at_the_first_run(monkeypatch):
    monkeypatch.setattr(
        int8_check, "contiguous_views", lambda model, summary: 0
    )  # no proactive fix
    model = _seeded(Net)
    qm = ql.quantize(model, ql.Static(), calib_data=_x())
    assert any(
        "op 'view'" in n and "inputs made contiguous" in n for n in qm.quantlens_summary.notes
    )
    with torch.no_grad():
        assert_similar(qm(_x(seed=1)), model(_x(seed=1)), min_cosine=0.99)


def test_first_run_raises_a_quantlens_error_when_no_repair_helps():
    class Broken(nn.Module):
        def forward(self, x):
            raise RuntimeError("boom")

    gm = torch.fx.symbolic_trace(nn.Sequential(nn.Identity()))
    gm.add_submodule("broken", Broken())
    out = next(n for n in gm.graph.nodes if n.op == "output")
    with gm.graph.inserting_before(out):
        node = gm.graph.call_module("broken", (out.args[0],))
    out.args = (node,)
    gm.recompile()
    with pytest.raises(
        QuantizationFailedError, match=r"first run in op 'broken' \(module 'broken'"
    ):
        int8_check.first_run(gm, (torch.zeros(2, 3),), QuantSummary())


# --- SyncBatchNorm and other norms --------------------------------------------------------------


@pytest.mark.parametrize("mode", ["fx", "eager"])
def test_sync_batchnorm_model_quantizes_like_its_plain_twin(mode):
    plain = _seeded(Net)
    sync = nn.SyncBatchNorm.convert_sync_batchnorm(copy.deepcopy(plain)).eval()
    assert sum(isinstance(m, nn.SyncBatchNorm) for m in sync.modules()) == 3
    x, calib = _x(seed=1), _x()
    q_plain = ql.quantize(plain, ql.Static(mode=mode), calib_data=calib)
    q_sync = ql.quantize(sync, ql.Static(mode=mode), calib_data=calib)
    assert _float_batchnorms(q_sync) == [] == _float_batchnorms(q_plain)
    assert not any(isinstance(m, nn.SyncBatchNorm) for m in q_sync.modules())
    assert [r.name for r in q_sync.quantlens_summary.quantized] == [
        r.name for r in q_plain.quantlens_summary.quantized
    ]
    with torch.no_grad():
        assert torch.equal(q_sync(x), q_plain(x))
        assert_similar(q_sync(x), sync(x), min_cosine=0.99)
    assert any("3 SyncBatchNorm" in n for n in q_sync.quantlens_summary.notes)


def test_qat_keeps_sync_batchnorm_while_training_and_folds_it_at_convert():
    sync = nn.SyncBatchNorm.convert_sync_batchnorm(_seeded(Net))
    x = _x()
    qat = ql.prepare_qat(sync, ql.QAT(), example_inputs=(x,))
    syncs = [n for n, m in qat.named_modules() if isinstance(m, SyncedBatchNorm)]
    assert syncs == ["conv1.bn", "conv2.bn", "fc.bn"]  # inside the fused QAT Conv/Linear+BN
    before = qat.get_submodule("conv1.bn").running_mean.clone()
    opt = torch.optim.SGD(qat.parameters(), lr=0.01)
    for seed in range(3):
        loss = qat(_x(seed=seed)).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert not torch.equal(qat.get_submodule("conv1.bn").running_mean, before)  # it trained
    qm = ql.convert(qat)
    assert _float_batchnorms(qm) == []
    assert {r.name for r in qm.quantlens_summary.quantized} == {"conv1", "conv2", "fc"}
    qat.eval()
    with torch.no_grad():
        assert_similar(qm(x), qat(x), min_cosine=0.99)


def test_group_layer_and_instance_norms_stay_float_with_the_reason():
    class Norms(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1, self.gn = nn.Conv2d(1, 8, 3, padding=1), nn.GroupNorm(2, 8)
            self.conv2, self.inorm = (
                nn.Conv2d(8, 8, 3, padding=1),
                nn.InstanceNorm2d(8, affine=True),
            )
            self.fc, self.ln, self.head = nn.Linear(8 * 64, 16), nn.LayerNorm(16), nn.Linear(16, 4)

        def forward(self, x):
            x = F.relu(self.inorm(self.conv2(F.relu(self.gn(self.conv1(x))))))
            return self.head(self.ln(self.fc(x.view(x.size(0), -1))))

    model = _seeded(Norms)
    for config in (ql.Static(), ql.Static(mode="eager"), ql.QAT()):
        qm = ql.quantize(model, config, calib_data=_x())
        floats = {r.name: r.reason for r in qm.quantlens_summary.records if r.action == "float"}
        assert set(floats) == {"gn", "inorm", "ln"}, config
        assert all("each input's own statistics" in why for why in floats.values())
        quantized = {
            r.name.removesuffix(".module") for r in qm.quantlens_summary.quantized
        }  # eager: the island's
        assert quantized == {"conv1", "conv2", "fc", "head"}
        with torch.no_grad():
            assert_similar(qm(_x(seed=1)), model(_x(seed=1)), min_cosine=0.99)


# --- QAT through a training loop ---------------------------------------------------------------


def _train_steps(model: nn.Module, steps: int = 2) -> None:
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    labels = torch.arange(32) % 10
    model.train()
    for seed in range(steps):
        loss = F.cross_entropy(model(_x(seed=seed)), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()


@pytest.fixture(scope="module")
def trained_qat():
    with torch_threads(1):
        qat = ql.prepare_qat(_seeded(Net), ql.QAT(), example_inputs=(_x(),))
        _train_steps(qat)
    return qat


def _converted_output(prepared: nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return ql.convert(prepared)(_x(seed=7))


def test_deepcopy_of_a_prepared_model_converts_like_the_original(trained_qat):
    ref = _converted_output(trained_qat)
    assert torch.equal(_converted_output(copy.deepcopy(trained_qat)), ref)
    # converting again (every epoch) leaves one summary per converted model
    a, b = ql.convert(trained_qat), ql.convert(copy.deepcopy(trained_qat))
    assert len(a.quantlens_summary.records) == len(b.quantlens_summary.records) == 3
    assert len(trained_qat.quantlens_summary.records) == 0


def test_a_copy_made_before_the_first_call_saves_and_loads(tmp_path):
    with torch_threads(1):
        original = ql.prepare_qat(_seeded(Net), ql.QAT())  # no example inputs: learnt in training
        qat = copy.deepcopy(original)
        _train_steps(qat, steps=1)
        qm = ql.convert(qat.eval())
        ql.save(qm, tmp_path / "ckpt")
        loaded = ql.load(tmp_path / "ckpt", model=_seeded(Net))
        with torch.no_grad():
            assert torch.equal(loaded(_x(seed=7)), qm(_x(seed=7)))
    # the copy's first call recorded into its own context, not the original's
    assert getattr(original, "quantlens_example_inputs", None) is None


def test_state_dict_loads_into_a_freshly_prepared_model(trained_qat):
    fresh = ql.prepare_qat(_seeded(Net, seed=5), ql.QAT(), example_inputs=(_x(),))
    fresh.load_state_dict(trained_qat.state_dict())
    assert torch.equal(_converted_output(fresh), _converted_output(trained_qat))
    _train_steps(fresh, steps=1)  # and training goes on from the loaded ranges
    scale = fresh.get_submodule("activation_post_process_0").fq.scale
    loaded = trained_qat.get_submodule("activation_post_process_0").fq.scale
    assert abs(float(scale) - float(loaded)) < 0.05 * float(loaded)


def test_moved_prepared_model_converts_on_cpu_float32(trained_qat):
    moved = copy.deepcopy(trained_qat).to(torch.float64)
    qm = ql.convert(moved)
    assert any("moved from cpu float64 to cpu float32" in n for n in qm.quantlens_summary.notes)
    with torch.no_grad():
        assert_similar(qm(_x(seed=7)), _converted_output(trained_qat), min_cosine=0.9999)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("sync", [False, True], ids=["batchnorm", "syncbatchnorm"])
def test_ddp_wrapped_qat_model_trains_and_its_module_converts(sync):
    dist = torch.distributed
    if not dist.is_available():
        pytest.skip("torch.distributed is not built in")

    def model():
        net = _seeded(Net)
        return nn.SyncBatchNorm.convert_sync_batchnorm(net) if sync else net

    timeout = datetime.timedelta(seconds=30)  # every collective gives up instead of hanging
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{_free_port()}", rank=0, world_size=1, timeout=timeout
    )
    try:  # on CPU, torch's own SyncBatchNorm refuses to train here; quantlens' synchronises
        qat = ql.prepare_qat(model(), ql.QAT(), example_inputs=(_x(),))
        ddp = nn.parallel.DistributedDataParallel(qat)
        _train_steps(ddp)
        qm = ql.convert(ddp.module)
    finally:
        dist.destroy_process_group()
    assert {r.name for r in qm.quantlens_summary.quantized} == {"conv1", "conv2", "fc"}
    assert _float_batchnorms(qm) == []
    twin = ql.prepare_qat(model(), ql.QAT(), example_inputs=(_x(),))
    _train_steps(twin)  # one rank averages nothing: DDP trains exactly like the plain loop
    with torch.no_grad():
        assert_similar(qm(_x(seed=7)), _converted_output(twin), atol=1e-5, rtol=1e-4)


def test_eager_first_run_failure_names_the_innermost_module():
    class Fails(nn.Module):
        def forward(self, x):
            if x.is_quantized:
                raise RuntimeError("no kernel")
            raise RuntimeError("this layer always fails")

    model = nn.Sequential(nn.Linear(4, 4), nn.Sequential(nn.ReLU(), Fails()))
    with pytest.raises(
        QuantizationFailedError,
        match=r"first run in module '1\.1' \(Fails\): this layer always fails",
    ):
        int8_check.first_run(model, (torch.zeros(2, 4),), QuantSummary())
