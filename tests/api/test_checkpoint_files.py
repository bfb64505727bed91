"""What ql.save leaves on disk and what a damaged checkpoint does: SHA-256 integrity, a
user's files and symlinks kept, umask permissions, debris cleaned, shared tensors saved
once, and every kind of corruption one CheckpointError (library) or one line (CLI)."""

import hashlib
import json
import os
import stat
import warnings

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

import quantlens as ql
from quantlens import checkpoint
from quantlens.cli import main
from quantlens.errors import CheckpointError
from quantlens.files import atomic
from quantlens.methods.weight_only import WeightOnly


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 16)).eval()


def _save(path):
    return ql.save(
        ql.quantize(_mlp(), WeightOnly(bits=4, group_size=32)),
        path,
        source={"kind": "factory", "path": f"{__name__}:_mlp", "kwargs": {}},
    )


def _meta(ckpt):
    return json.loads((ckpt / checkpoint.META_FILE).read_text())


def _flip(path, offset_from_end=10):
    data = bytearray(path.read_bytes())
    data[-offset_from_end] ^= 0x01
    path.write_bytes(bytes(data))


def test_the_sha256_is_recorded_and_the_file_stays_safetensors(tmp_path):
    ckpt = _save(tmp_path / "c")
    weights = ckpt / checkpoint.WEIGHTS_FILE
    entry = _meta(ckpt)["files"][checkpoint.WEIGHTS_FILE]
    assert entry == {
        "sha256": hashlib.sha256(weights.read_bytes()).hexdigest(),
        "bytes": weights.stat().st_size,
    }
    ours, _ = checkpoint.read(ckpt)
    theirs = load_file(str(weights))  # the safetensors library reads what we wrote
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_a_flipped_data_byte_is_refused_naming_the_file(tmp_path, capsys):
    ckpt = _save(tmp_path / "c")
    _flip(ckpt / checkpoint.WEIGHTS_FILE)
    with pytest.raises(CheckpointError, match=r"model\.safetensors does not match the SHA-256"):
        ql.load(ckpt, trust_code=True)
    assert main(["info", str(ckpt)]) == 0  # without --verify the weights are not read
    assert main(["info", str(ckpt), "--verify"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "model.safetensors does not match" in err


def test_a_checkpoint_without_hashes_still_loads_and_says_so(tmp_path, capsys):
    ckpt = _save(tmp_path / "c")
    meta = _meta(ckpt)
    del meta["files"]
    (ckpt / checkpoint.META_FILE).write_text(json.dumps(meta))
    with pytest.warns(UserWarning, match="records no SHA-256"):
        loaded = ql.load(ckpt, trust_code=True)
    x = torch.randn(3, 64)
    assert torch.equal(loaded(x), ql.load(_save(tmp_path / "d"), trust_code=True)(x))
    assert main(["info", str(ckpt), "--verify"]) == 0
    assert "no SHA-256 recorded (saved by an older quantlens)" in capsys.readouterr().out


def _truncate(ckpt):
    path = ckpt / checkpoint.WEIGHTS_FILE
    path.write_bytes(path.read_bytes()[:100])


def _truncate_unrecorded(ckpt):  # no digest to catch it: the header check does
    meta = _meta(ckpt)
    del meta["files"]
    (ckpt / checkpoint.META_FILE).write_text(json.dumps(meta))
    _truncate(ckpt)


def _edit_json(ckpt):
    text = (ckpt / checkpoint.META_FILE).read_text()
    (ckpt / checkpoint.META_FILE).write_text(text[: len(text) // 2])


def _edit_digest(ckpt):
    meta = _meta(ckpt)
    meta["files"][checkpoint.WEIGHTS_FILE]["sha256"] = "0" * 63
    (ckpt / checkpoint.META_FILE).write_text(json.dumps(meta))


def _deep_list(ckpt):
    (ckpt / checkpoint.META_FILE).write_text("[" * 100_000 + "]" * 100_000)


def _deep_state(ckpt):  # parses, but nests far deeper than quantlens writes
    meta = _meta(ckpt)
    entry = {"kind": "tensor"}
    for _ in range(200):
        entry = {"kind": "tuple", "items": [entry]}
    meta["state"]["0.bias"] = entry
    (ckpt / checkpoint.META_FILE).write_text(json.dumps(meta))


CORRUPTIONS = {
    "truncated weights": (_truncate, r"model\.safetensors does not match"),
    "truncated weights, no digest": (
        _truncate_unrecorded,
        r"model\.safetensors is not a readable safetensors file",
    ),
    "flipped byte": (
        lambda c: _flip(c / checkpoint.WEIGHTS_FILE),
        r"model\.safetensors does not match",
    ),
    "flipped header byte": (
        lambda c: _flip(
            c / checkpoint.WEIGHTS_FILE, c.joinpath(checkpoint.WEIGHTS_FILE).stat().st_size - 20
        ),
        r"model\.safetensors does not match",
    ),
    "edited JSON": (_edit_json, r"quantlens\.json is not valid JSON"),
    "edited digest": (_edit_digest, r"quantlens\.json: its 'files' entry has no SHA-256"),
    "missing weights": (
        lambda c: (c / checkpoint.WEIGHTS_FILE).unlink(),
        r"model\.safetensors is missing",
    ),
    "missing JSON": (lambda c: (c / checkpoint.META_FILE).unlink(), r"quantlens\.json is missing"),
    "deep nesting": (_deep_list, r"quantlens\.json is nested too deeply"),
    "deep state": (_deep_state, r"quantlens\.json is nested deeper than 64 levels"),
}


@pytest.mark.parametrize("corrupt", CORRUPTIONS, ids=list(CORRUPTIONS))
def test_a_corrupt_checkpoint_is_one_error_everywhere(tmp_path, capsys, corrupt):
    change, message = CORRUPTIONS[corrupt]
    ckpt = _save(tmp_path / "c")
    change(ckpt)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "records no SHA-256"
        with pytest.raises(CheckpointError, match=message):
            ql.load(ckpt, trust_code=True)
        for command in (["info", str(ckpt), "--verify"], ["inspect", str(ckpt)]):
            assert main(command) == 2, command
            err = capsys.readouterr().err
            assert err.count("\n") == 1 and "Traceback" not in err, (command, err)


def test_saving_keeps_a_users_files_symlinks_and_siblings(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real, target_is_directory=True)
    _save(link)
    (real / "notes.txt").write_text("mine")
    (tmp_path / ".link.old").mkdir()
    (tmp_path / ".real.old").write_text("also mine")
    _save(link)
    assert link.is_symlink() and sorted(p.name for p in real.iterdir()) == [
        "model.safetensors",
        "notes.txt",
        "quantlens.json",
    ]
    assert (real / "notes.txt").read_text() == "mine" and (
        tmp_path / ".real.old"
    ).read_text() == "also mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".link.old", ".real.old", "link", "real"]
    assert isinstance(ql.load(link, trust_code=True)[0], ql.nn.QLinear)


def test_files_follow_the_umask(tmp_path):
    old = os.umask(0o002)
    try:
        ckpt = _save(tmp_path / "shared" / "c")
    finally:
        os.umask(old)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (ckpt, *ckpt.iterdir())}
    assert modes == {"c": 0o775, "model.safetensors": 0o664, "quantlens.json": 0o664}


def test_earlier_debris_is_cleaned_and_a_cut_off_swap_completed(tmp_path):
    ckpt = _save(tmp_path / "c")
    killed = tmp_path / f".c{atomic.STAGING_TAG}abc123.tmp"  # a save killed while writing
    killed.mkdir()
    (killed / checkpoint.WEIGHTS_FILE).write_bytes(b"\0" * 1000)
    legacy = tmp_path / ".c.k2j4h5g6.tmp"  # the staging name of quantlens <= 0.1
    legacy.mkdir()
    (legacy / checkpoint.WEIGHTS_FILE).write_bytes(b"\0" * 1000)
    users = tmp_path / ".c.notmine.tmp"
    users.mkdir()
    _save(ckpt)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".c.notmine.tmp", "c"]


@pytest.mark.parametrize("first", [False, True], ids=["over an old one", "the first save"])
def test_a_save_killed_between_its_two_renames_reads_as_the_new_one(tmp_path, first):
    ckpt = tmp_path / "c"
    if first:
        ckpt.mkdir()
    else:
        checkpoint.write(ckpt, {"a": torch.zeros(1000)}, _plain_meta(0))
    pid = os.fork()
    if pid == 0:  # the writer: killed right after the weights moved in
        real = atomic.os.replace

        def die_after_the_weights(src, dst):
            real(src, dst)
            if str(dst).endswith(checkpoint.WEIGHTS_FILE):
                os._exit(9)

        atomic.os.replace = die_after_the_weights
        checkpoint.write(ckpt, {"a": torch.ones(1000)}, _plain_meta(1))
        os._exit(0)
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 9
    on_disk = ckpt / checkpoint.META_FILE  # torn on disk ...
    assert not on_disk.exists() if first else json.loads(on_disk.read_text())["version"] == 0
    tensors, meta = checkpoint.read(ckpt)  # ... read as the new checkpoint, whole
    assert meta["version"] == 1 and torch.equal(tensors["a"], torch.ones(1000))
    checkpoint.write(
        tmp_path / "c", {"a": torch.full((5,), 2.0)}, _plain_meta(2)
    )  # completes it, then saves
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c"]
    assert checkpoint.read(ckpt)[1]["version"] == 2


def _plain_meta(version):
    return {
        "format": "quantlens",
        "format_version": checkpoint.FORMAT_VERSION,
        "method": "weight_only",
        "config": {"method": "weight_only"},
        "state": {"a": {"kind": "tensor"}},
        "version": version,
    }


class _Tied(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.emb = nn.Embedding(32, 16)
        self.head = nn.Linear(16, 32, bias=False)
        self.head.weight = self.emb.weight  # a tied pair, left float
        self.body = nn.Linear(16, 16)
        self.again = self.body  # one module under two names

    def forward(self, ids):
        return self.head(self.again(self.emb(ids)))


def test_tied_and_shared_weights_save_once_and_load_tied(tmp_path):
    qm = ql.quantize(_Tied(), WeightOnly(bits=8, group_size=None, skip=["emb", "head"]))
    ckpt = ql.save(qm, tmp_path / "t")
    assert _meta(ckpt)["aliases"] == {
        "head.weight": "emb.weight",
        "again.weight_packed": "body.weight_packed",
        "again.scale": "body.scale",
        "again.bias": "body.bias",
    }
    loaded = ql.load(ckpt, model=_Tied())
    ids = torch.arange(10).reshape(2, 5)
    assert torch.equal(loaded(ids), qm(ids))
    assert loaded.head.weight is loaded.emb.weight and loaded.again is loaded.body


def test_info_of_a_path_too_long_for_the_file_system_is_one_line(capsys):
    assert main(["info", "x" * 5000]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "File name too long" in err and len(err) < 300
