import json

import torch

from quantlens.eval.environment import EXTRAS, cpu_info, environment_info, extras_info


def test_environment_info_is_json_ready_and_complete():
    info = environment_info()
    assert json.loads(json.dumps(info)) == info
    assert info["torch"] == torch.__version__
    engines = info["engines"]
    assert engines["active"] == torch.backends.quantized.engine
    assert set(engines["supported"]) == {
        e for e in torch.backends.quantized.supported_engines if e != "none"
    }
    assert set(engines["works"]) == set(engines["supported"])
    assert all(isinstance(w["ok"], bool) and w["detail"] for w in engines["works"].values())
    assert set(info["extras"]) == set(EXTRAS)
    assert isinstance(info["cuda"]["available"], bool)
    compiled = info["compiled_kernel"]
    assert compiled["loaded"] in (True, False) and compiled["built"] >= compiled["loaded"]
    assert compiled["loaded"] or "build_kernels" in compiled["detail"]
    assert info["threads"]["intra_op"] >= 1


def test_engine_check_restores_active_engine():
    before = torch.backends.quantized.engine
    environment_info()
    assert torch.backends.quantized.engine == before


def test_x86_engine_works_here():
    works = environment_info()["engines"]["works"]
    for engine in ("x86", "fbgemm"):
        if engine in works:
            assert works[engine]["ok"], works[engine]


def test_cpu_features_from_cpuinfo(tmp_path, monkeypatch):
    fake = tmp_path / "cpuinfo"
    fake.write_text(
        "model name\t: Test CPU\nflags\t\t: fpu sse avx2 avx512f avx512_vnni amx_int8\n"
    )
    monkeypatch.setattr("platform.machine", lambda: "x86_64")
    info = cpu_info(fake)
    assert info["model"] == "Test CPU"
    assert (
        info["features"]["avx2"]
        and info["features"]["avx512_vnni"]
        and info["features"]["amx_int8"]
    )
    assert not info["features"]["amx_tile"] and not info["features"]["avx_vnni"]
    assert cpu_info(tmp_path / "missing")["features"]["avx2"] is False


def test_extras_report_versions_and_import_check():
    extras = extras_info(import_check=False)
    assert all(e["imports"] is None for e in extras.values())
    assert extras["torchvision"]["extra"] == "vision"
    for entry in extras.values():
        assert entry["installed"] == (entry["version"] is not None)
