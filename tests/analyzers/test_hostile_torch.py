"""Hostile PyTorch files: nothing they pickle runs, nothing exhausts memory, every refusal is one sentence.

Each file is built here with real torch (torch.save, torch.export.save, torch.jit.save) and then
tampered with. A payload is an object whose `__reduce__` is `os.system("touch MARKER")`: the marker
file existing afterwards would prove that code ran.
"""

from __future__ import annotations

import importlib
import io
import json
import os
import shlex
import struct
import sys
import textwrap
import warnings
import zipfile
import zlib
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from torch import nn

from analyzers.errors import CorruptFile, UnsupportedFile
from analyzers.loaders import LoadOptions, open_model, torch_pickle
from analyzers.loaders.pytorch_loader import load_checkpoint
from analyzers.tasks import drive
from tests.analyzers.format_cli import run_cli_batch
from tests.analyzers.test_contract import check_contract


class System:
    """Unpickling this runs `touch <marker>` through os.system."""

    def __init__(self, marker: Path) -> None:
        self.command = f"touch {shlex.quote(str(marker))}"

    def __reduce__(self):
        return (os.system, (self.command,))


class Small(nn.Module):
    """fc.weight is 60 x 24 float32: a 5,760-byte storage record."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(24, 60)
        self.norm = nn.BatchNorm1d(60)
        self.out = nn.Linear(60, 4)
        self.out.bias.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.norm(self.fc(x))))


def counts(model: nn.Module) -> tuple[int, int, int]:
    """(parameters, trainable, buffer elements) as torch counts them."""
    return (sum(p.numel() for p in model.parameters()),
            sum(p.numel() for p in model.parameters() if p.requires_grad),
            sum(b.numel() for b in model.buffers()))


def summary_counts(summary) -> tuple[int, int, int]:
    """The same three numbers from a summary."""
    return summary.totals.params, summary.totals.trainable_params, summary.totals.buffers


def open_summary(path: Path, **options):
    return drive(open_model(path, LoadOptions(**options)))


def payload_bytes(marker: Path) -> bytes:
    """A torch.save file (itself a zip) whose pickle runs the payload when fully unpickled."""
    buf = io.BytesIO()
    torch.save({"x": System(marker)}, buf)
    return buf.getvalue()


def rewrite(src: Path, dst: Path, replace: dict[str, bytes] | None = None, rename: dict[str, str] | None = None,
            add: tuple[tuple[str, bytes], ...] = (), first: tuple[tuple[str, bytes], ...] = ()) -> None:
    """Copy a zip, replacing, renaming or adding members (`first` goes before every other member)."""
    replace, rename = replace or {}, rename or {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate names some tests want
        with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
            for name, data in first:
                zout.writestr(name, data)
            for info in zin.infolist():
                data = replace.get(info.filename, zin.read(info))
                zout.writestr(rename.get(info.filename, info.filename), data)
            for name, data in add:
                zout.writestr(name, data)


def member(path: Path, suffix: str) -> str:
    with zipfile.ZipFile(path) as zf:
        return next(n for n in zf.namelist() if n.endswith(suffix))


def refused(path: Path, *fragments: str, **options) -> str:
    """Open `path`, expecting one CorruptFile sentence that names the file; return it."""
    with pytest.raises(CorruptFile) as err:
        open_summary(path, **options)
    text = str(err.value)
    assert "\n" not in text and text.startswith(path.name + ":"), text
    for fragment in fragments:
        assert fragment in text, text
    return text


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Small saved four ways, once."""
    tmp = tmp_path_factory.mktemp("hostile_torch")
    model = Small().eval()
    torch.export.save(torch.export.export(model, (torch.randn(2, 24),)), str(tmp / "small.pt2"))
    torch.jit.script(model).save(str(tmp / "script.pt"))
    torch.save(model.state_dict(), tmp / "state.pt")
    return {"tmp": tmp, "model": model}


# --- torch.export archives -------------------------------------------------------------------------------


def test_pt2_sample_inputs_renamed_to_upper_case_pickle_runs_nothing(saved: dict, tmp_path: Path) -> None:
    marker = tmp_path / "MARKER"
    src = saved["tmp"] / "small.pt2"
    inputs = member(src, "data/sample_inputs/model.pt")
    crafted = tmp_path / "upper.pt2"
    rewrite(src, crafted, replace={inputs: payload_bytes(marker)},
            rename={inputs: inputs.replace("model.pt", "MODEL.PT")})
    summary = open_summary(crafted)
    assert not marker.exists()
    check_contract(summary)
    assert summary_counts(summary) == counts(saved["model"])


def test_pt2_upper_case_pickle_beside_the_real_one_is_refused(saved: dict, tmp_path: Path) -> None:
    marker = tmp_path / "MARKER"
    src = saved["tmp"] / "small.pt2"
    inputs = member(src, "data/sample_inputs/model.pt")
    crafted = tmp_path / "both.pt2"
    rewrite(src, crafted, add=((inputs.replace("model.pt", "MODEL.PT"), payload_bytes(marker)),))
    refused(crafted, "differ only in case")
    assert not marker.exists()


def _weights_config(src: Path) -> tuple[str, dict]:
    name = member(src, "_weights_config.json")
    with zipfile.ZipFile(src) as zf:
        return name, json.loads(zf.read(name))


def test_pt2_pickled_weight_behind_a_case_mismatched_path_is_refused(saved: dict, tmp_path: Path) -> None:
    marker = tmp_path / "MARKER"
    src = saved["tmp"] / "small.pt2"
    config_name, config = _weights_config(src)
    entry = config["config"]["fc.weight"]
    record = config_name.rsplit("/", 1)[0] + "/" + entry["path_name"]
    entry.update(use_pickle=True, path_name=entry["path_name"].upper())
    crafted = tmp_path / "case.pt2"
    rewrite(src, crafted, replace={config_name: json.dumps(config).encode(), record: payload_bytes(marker)})
    refused(crafted, entry["path_name"], "differs in case")
    assert not marker.exists()


def test_pt2_pickled_weight_is_never_opened(saved: dict, tmp_path: Path) -> None:
    """A weight torch.export.load would unpickle with full pickle: shown from its JSON metadata instead."""
    marker = tmp_path / "MARKER"
    src = saved["tmp"] / "small.pt2"
    config_name, config = _weights_config(src)
    entry = config["config"]["fc.weight"]
    record = config_name.rsplit("/", 1)[0] + "/" + entry["path_name"]
    entry["use_pickle"] = True
    crafted = tmp_path / "pickled.pt2"
    rewrite(src, crafted, replace={config_name: json.dumps(config).encode(), record: payload_bytes(marker)})
    summary = open_summary(crafted, trust=True)  # not even trust makes inspect unpickle
    assert not marker.exists()
    assert summary_counts(summary) == counts(saved["model"])
    assert summary.node("fc").type == "Linear"
    assert any("not opened" in n for n in summary.notes)


def test_pt2_truncated_weight_record_is_refused(saved: dict, tmp_path: Path) -> None:
    src = saved["tmp"] / "small.pt2"
    config_name, config = _weights_config(src)
    record = config_name.rsplit("/", 1)[0] + "/" + config["config"]["fc.weight"]["path_name"]
    crafted = tmp_path / "short.pt2"
    rewrite(src, crafted, replace={record: bytes(100)})
    refused(crafted, "fc.weight", "5,760", "holds 100")


# --- torch.save files ---------------------------------------------------------------------------------------


def test_two_data_pkl_members_evil_first_are_refused(saved: dict, tmp_path: Path) -> None:
    marker = tmp_path / "MARKER"
    src = saved["tmp"] / "state.pt"
    pkl = member(src, "data.pkl")
    evil = zipfile.ZipFile(io.BytesIO(payload_bytes(marker)))
    crafted = tmp_path / "dupe.pt"
    rewrite(src, crafted, first=((pkl, evil.read(member_of(evil, "data.pkl"))),))
    refused(crafted, "2 members named")
    with pytest.raises(CorruptFile):
        load_checkpoint(crafted, trust=True)  # the runtime's loader checks the archive before torch.load
    assert not marker.exists()


def member_of(zf: zipfile.ZipFile, suffix: str) -> str:
    return next(n for n in zf.namelist() if n.endswith(suffix))


def raw_zip(path: Path, members: list[tuple[str, bytes, int, int]]) -> None:
    """A zip written by hand: (name, deflated payload, declared size, crc) each, so a size can be huge."""
    out, central = bytearray(), bytearray()
    for name, payload, size, crc in members:
        offset, raw = len(out), name.encode()
        out += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0x21, crc, len(payload), size, len(raw), 0)
        out += raw + payload
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 8, 0, 0x21, crc, len(payload), size,
                               len(raw), 0, 0, 0, 0, 0, offset) + raw
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(members), len(members), len(central), len(out), 0)
    path.write_bytes(bytes(out + central + end))


def deflated_zeros(total: int, chunk: int = 16 << 20) -> bytes:
    """A raw deflate stream that inflates to `total` zero bytes, built without compressing all of them
    (after a full flush every identical chunk deflates to identical bytes)."""
    comp, zeros = zlib.compressobj(9, zlib.DEFLATED, -15), bytes(chunk)
    head = comp.compress(zeros) + comp.flush(zlib.Z_FULL_FLUSH)
    body = comp.compress(zeros) + comp.flush(zlib.Z_FULL_FLUSH)
    return head + body * (total // chunk - 1) + comp.flush()


def test_data_pkl_inflating_to_3_gib_is_refused_before_inflating(tmp_path: Path) -> None:
    psutil = pytest.importorskip("psutil")
    bomb = tmp_path / "bomb.pt"
    small = zlib.compressobj(9, zlib.DEFLATED, -15)
    version = small.compress(b"3\n") + small.flush()
    # The CRC is left 0: only a reader that inflated all 3 GiB would ever compare it.
    raw_zip(bomb, [("archive/data.pkl", deflated_zeros(3 << 30), 3 << 30, 0),
                   ("archive/version", version, 2, zlib.crc32(b"3\n"))])
    assert bomb.stat().st_size < 8 << 20
    before = psutil.Process().memory_info().rss
    refused(bomb, "3,221,225,472 bytes")
    with pytest.raises(CorruptFile, match="inflates"):
        load_checkpoint(bomb, trust=True)
    assert psutil.Process().memory_info().rss - before < 200 << 20


def _module_file(folder: Path, name: str, marker: Path | None) -> object:
    """Write and import a module that defines a network; `marker` plants an os.system payload in it."""
    payload = f"self.hook = Payload({str(marker)!r})" if marker else "pass"
    (folder / f"{name}.py").write_text(textwrap.dedent(f"""
        import os
        import torch
        from torch import nn

        class Payload:
            def __init__(self, marker):
                self.marker = marker
            def __reduce__(self):
                return (os.system, ("touch " + self.marker,))

        class Residual(nn.Module):
            def __init__(self, dim):
                super().__init__()
                self.inner = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.LayerNorm(dim))
                self.register_buffer("index", torch.arange(dim))
            def forward(self, x):
                return x + self.inner(x)

        class Custom(nn.Module):
            def __init__(self, vocab=30, dim=8):
                super().__init__()
                self.embed = nn.Embedding(vocab, dim)
                self.blocks = nn.ModuleList([Residual(dim) for _ in range(2)])
                self.head = nn.Linear(dim, vocab, bias=False)
                self.head.weight = self.embed.weight  # tied
                self.head_scale = 2.5
                {payload}
            def forward(self, ids):
                return self.head(self.blocks[1](self.blocks[0](self.embed(ids))))
    """))
    sys.path.insert(0, str(folder))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(folder))


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_full_module_without_its_classes_opens_without_running(tmp_path: Path, legacy: bool) -> None:
    marker = tmp_path / "MARKER"
    name = f"vanishing_net_{int(legacy)}"
    module = _module_file(tmp_path, name, marker)
    model = module.Custom()
    expected = counts(model)
    path = tmp_path / "full.pt"
    torch.save(model, path, _use_new_zipfile_serialization=not legacy)
    del sys.modules[name]
    (tmp_path / f"{name}.py").unlink()  # the classes are gone: unpickling them for real would fail
    del model, module
    for trust in (False, True):
        summary = open_summary(path, trust=trust)
        assert not marker.exists()
        check_contract(summary)
        assert summary_counts(summary) == expected
        assert summary.root.type == "Custom"
        assert summary.node("blocks.1").type == "Residual"
        assert summary.node("blocks.1.inner.2").type == "LayerNorm"
        assert summary.node("head").tensors[0].shared_with == "embed.weight"
        assert summary.root.attributes["head_scale"] == 2.5
        assert summary.source.format == "pytorch-module"
        assert any("read without running it" in n and "Custom" in n and "Residual" in n for n in summary.notes)


def test_payload_beside_the_weights_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "MARKER"
    model = Small()
    path = tmp_path / "ckpt.pt"
    torch.save({"state_dict": model.state_dict(), "callback": System(marker), "epoch": 3}, path)
    summary = open_summary(path)
    assert not marker.exists()
    assert summary.totals.params == sum(p.numel() for p in model.parameters())
    assert summary.metadata["epoch"] == 3
    assert summary.metadata["callback"] == "system object"


# --- TorchScript ----------------------------------------------------------------------------------------------


def test_truncated_torchscript_record_is_refused(saved: dict, tmp_path: Path) -> None:
    src = saved["tmp"] / "script.pt"
    with zipfile.ZipFile(src) as zf:
        record = next(i.filename for i in zf.infolist() if "/data/" in i.filename and i.file_size == 5760)
    crafted = tmp_path / "cut.pt"
    rewrite(src, crafted, replace={record: bytes(100)})
    refused(crafted, "5,760 bytes", "holds only 100")


def test_running_a_truncated_torchscript_is_refused_too(saved: dict, tmp_path: Path) -> None:
    """`run` on the cut archive printed NaN scores: the runtime checks the archive as inspect does."""
    from analyzers.runtime import load_live_model

    src = saved["tmp"] / "script.pt"
    with zipfile.ZipFile(src) as zf:
        record = next(i.filename for i in zf.infolist() if "/data/" in i.filename and i.file_size == 5760)
    crafted = tmp_path / "cut_run.pt"
    rewrite(src, crafted, replace={record: bytes(100)})
    with pytest.raises(CorruptFile, match=r"^cut_run\.pt: .*5,760 bytes.*holds only 100"):
        load_live_model(crafted)


def test_torchscript_counts_stay_exact(saved: dict) -> None:
    summary = open_summary(saved["tmp"] / "script.pt")
    assert summary_counts(summary) == counts(saved["model"])


# --- numbers --------------------------------------------------------------------------------------------------


class Indexed(nn.Module):
    """Swin-style integer index table, EfficientFormer-style bias indices and a bool mask as buffers."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(8, 8)
        self.register_buffer("relative_position_index", torch.arange(49).reshape(7, 7))
        self.register_buffer("attention_bias_idxs", torch.zeros(16, 16, dtype=torch.int32))
        self.register_buffer("mask", torch.ones(4, 4, dtype=torch.bool))


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_integer_and_bool_tensors_of_a_state_dict_are_buffers(tmp_path: Path, legacy: bool) -> None:
    model = Indexed()
    path = tmp_path / "indexed.pt"
    torch.save(model.state_dict(), path, _use_new_zipfile_serialization=not legacy)
    summary = open_summary(path)
    assert summary_counts(summary) == counts(model)


# --- names and pickle bombs -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["w" * 100_000, "a." * 49_999 + "ab"], ids=["long", "dots"])
def test_absurd_tensor_names_are_one_sentence(tmp_path: Path, name: str) -> None:
    path = tmp_path / "names.pt"
    torch.save({name: torch.zeros(2), "ok.weight": torch.zeros(3)}, path)
    refused(path, "100,000 characters")


class Ref:
    """Stands for a persistent id (a storage) in a hand-made torch pickle."""

    def __init__(self, pid: tuple) -> None:
        self.pid = pid


class Call:
    """Pickles as a call of `func(*args)`."""

    def __init__(self, func, *args) -> None:
        self.func, self.args = func, args

    def __reduce__(self):
        return (self.func, self.args)


def crafted_pickle(obj: object) -> bytes:
    class Pickler(__import__("pickle").Pickler):
        def persistent_id(self, value):
            return value.pid if isinstance(value, Ref) else None

    buf = io.BytesIO()
    Pickler(buf, protocol=2).dump(obj)
    return buf.getvalue()


def torch_zip(path: Path, pkl: bytes, records: dict[str, bytes] | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", pkl)
        for key, data in (records or {}).items():
            zf.writestr(f"archive/data/{key}", data)
        zf.writestr("archive/version", b"3\n")
    return path


def _huge_storage() -> bytes:
    storage = Ref(("storage", torch.FloatStorage, "0", "cpu", 10**12))
    tensor = Call(torch._utils._rebuild_tensor_v2, storage, 0, (10**6, 10**6), (10**6, 1), False, OrderedDict())
    return crafted_pickle({"w": tensor})


def _past_storage() -> bytes:
    storage = Ref(("storage", torch.FloatStorage, "0", "cpu", 6))
    tensor = Call(torch._utils._rebuild_tensor_v2, storage, 4, (2, 3), (3, 1), False, OrderedDict())
    return crafted_pickle({"w": tensor})


def _nested_rebuilds(depth: int = 5000) -> bytes:
    return (b"\x80\x02ctorch._tensor\n_rebuild_from_type_v2\nq\x00ctorch\nTensor\nq\x01h\x00"
            + b"(h\x00h\x01" * depth + b")" + b"Nt" * depth + b"R.")


def _nested_dicts(depth: int = 100_000) -> bytes:
    return b"\x80\x02" + b"}X\x01\x00\x00\x00a" * depth + b"}" + b"s" * depth + b"."


def _shared_tuple_key(depth: int = 60) -> bytes:
    """{t60: None} where t(i+1) = (t(i), t(i)): printing or hashing the key walks 2**60 items."""
    chain = b"".join(b"h" + bytes([i]) + b"h" + bytes([i]) + b"\x86q" + bytes([i + 1]) for i in range(depth))
    return b"\x80\x02}()q\x00" + chain + b"1h" + bytes([depth]) + b"Ns."


BOMBS = {
    "dict key of 2**60 shared items": (_shared_tuple_key, "nested items"),
    "storage larger than its record": (_huge_storage, "holds only 24"),
    "tensor past its storage": (_past_storage, "which holds only 24"),
    "reduce calls nested 5000 deep": (_nested_rebuilds, "nests deeper"),
    "dicts nested 100000 deep": (_nested_dicts, "nest more than"),
    "memo index 2**31": (lambda: b"\x80\x02}r\xff\xff\xff\x7f.", "no tensors"),
    "bytearray of 1 TiB": (lambda: b"\x80\x05\x96" + struct.pack("<Q", 1 << 40) + b".", "longer than the rest"),
    "bytes of 1 TiB": (lambda: b"\x80\x04\x8e" + struct.pack("<Q", 1 << 40) + b".", "more than the rest"),
    "call of an object it built": (lambda: b"\x80\x02cos\nsystem\n)R)R.", "calls an object of class system"),
}


@pytest.mark.parametrize("case", sorted(BOMBS))
def test_pickle_bombs_are_one_sentence(tmp_path: Path, case: str) -> None:
    psutil = pytest.importorskip("psutil")
    make, fragment = BOMBS[case]
    path = torch_zip(tmp_path / "bomb.pt", make(), {"0": bytes(24)})
    before = psutil.Process().memory_info().rss
    with pytest.raises((CorruptFile, UnsupportedFile)) as err:
        open_summary(path)
    assert fragment in str(err.value) and "\n" not in str(err.value)
    assert psutil.Process().memory_info().rss - before < 200 << 20


def test_opcode_and_memory_budgets_stop_a_bomb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spin = torch_zip(tmp_path / "spin.pt", b"\x80\x02" + b"N0" * 200_000 + b"}.")
    monkeypatch.setattr(torch_pickle, "MAX_PICKLE_OPS", 100_000)
    refused(spin, "opcodes")
    monkeypatch.setattr(torch_pickle, "MAX_PICKLE_OPS", 10**9)
    if torch_pickle._rss() is None:
        pytest.skip("resident memory is not readable here")
    grow = torch_zip(tmp_path / "grow.pt", b"\x80\x02(" + b"}" * 1_500_000 + b"l.")
    monkeypatch.setattr(torch_pickle, "MAX_RSS_GROWTH", 32 << 20)
    refused(grow, "MiB")


# --- the CLI --------------------------------------------------------------------------------------------------


def test_cli_on_hostile_files(saved: dict, tmp_path: Path) -> None:
    """`inspect` prints one line and exits 2 on each hostile file; a valid .pt2 prints nothing on stderr."""
    marker = tmp_path / "MARKER"
    src = saved["tmp"] / "small.pt2"
    both = tmp_path / "both.pt2"
    inputs = member(src, "data/sample_inputs/model.pt")
    rewrite(src, both, add=((inputs.replace("model.pt", "MODEL.PT"), payload_bytes(marker)),))
    script = saved["tmp"] / "script.pt"
    with zipfile.ZipFile(script) as zf:
        record = next(i.filename for i in zf.infolist() if "/data/" in i.filename and i.file_size == 5760)
    cut = tmp_path / "cut.pt"
    rewrite(script, cut, replace={record: bytes(100)})
    long_name = tmp_path / "names.pt"
    torch.save({"w" * 100_000: torch.zeros(2)}, long_name)
    calls = {p.name: ["inspect", str(p)] for p in (both, cut, long_name)}
    calls["valid"] = ["inspect", str(src), "--json"]
    results = run_cli_batch(calls, tmp_path)
    for path in (both, cut, long_name):
        res = results[path.name]
        assert res["rc"] == 2 and res["stdout"] == "", res
        lines = res["stderr"].strip().splitlines()
        assert len(lines) == 1 and path.name in lines[0] and "Traceback" not in lines[0], res["stderr"]
    assert results["valid"]["rc"] == 0 and results["valid"]["stderr"] == ""
    assert json.loads(results["valid"]["stdout"])["totals"]["params"] == counts(saved["model"])[0]
    assert not marker.exists()
