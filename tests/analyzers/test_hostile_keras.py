"""Hostile Keras files (.keras, .h5, .weights.h5), built here with json/zipfile/h5py: one sentence, or a
correct summary with a note; nothing is unpickled, unmarshalled, extracted or run; TensorFlow never loads.
"""

from __future__ import annotations

import base64
import json
import marshal
import os
import pickle
import resource
import struct
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

from analyzers.errors import CorruptFile, LayerScopeError
from analyzers.loaders import open_model
from analyzers.tasks import drive
from tests.cli_helpers import REPO, run_cli

KERNEL = np.arange(12, dtype=np.float32).reshape(4, 3)
BIAS = np.zeros(3, np.float32)


def dense_config(units: int = 3, extra: list | None = None) -> dict:
    """A Keras 3 Sequential config: Input(4) -> Dense(units, name='d') [-> extra layers]."""
    layers = [
        {"module": "keras.layers", "class_name": "InputLayer",
         "config": {"batch_shape": [None, 4], "dtype": "float32", "name": "x"}},
        {"module": "keras.layers", "class_name": "Dense",
         "config": {"name": "d", "trainable": True, "units": units, "use_bias": True, "activation": "linear"},
         "build_config": {"input_shape": [None, 4]}},
        *(extra or []),
    ]
    return {"module": "keras", "class_name": "Sequential", "config": {"name": "seq", "trainable": True,
                                                                      "layers": layers}}


def write_weights(path: Path, kernel: np.ndarray = KERNEL, bias: np.ndarray = BIAS) -> Path:
    """A Keras 3 weights file holding the Dense layer 'd'."""
    with h5py.File(path, "w") as f:
        f.create_group("vars").attrs["name"] = "seq"
        g = f.create_group("layers/dense/vars")
        g.attrs["name"] = "d"
        g["0"] = kernel
        g["1"] = bias
    return path


def write_keras(path: Path, config: dict | bytes | str | None = None, weights: Path | bytes | None = None,
                extra: dict[str, bytes] | None = None, compress: int = zipfile.ZIP_STORED) -> Path:
    """A .keras archive: config.json, metadata.json, model.weights.h5 (+ extra members)."""
    if weights is None:
        weights = write_weights(path.with_suffix(".tmp.h5"))
    body = config if isinstance(config, bytes | str) else json.dumps(config or dense_config())
    with zipfile.ZipFile(path, "w", compress) as zf:
        zf.writestr("metadata.json", json.dumps({"keras_version": "3.15.1"}))
        zf.writestr("config.json", body)
        zf.writestr("model.weights.h5", weights.read_bytes() if isinstance(weights, Path) else weights)
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return path


def set_declared_size(path: Path, member: str, size: int) -> None:
    """Rewrite the uncompressed size a zip declares for `member` (local header and central directory)."""
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(member)
    struct.pack_into("<I", data, info.header_offset + 22, size)
    at = data.find(b"PK\x01\x02")
    while at >= 0:
        name_len = struct.unpack_from("<H", data, at + 28)[0]
        if bytes(data[at + 46: at + 46 + name_len]) == member.encode():
            struct.pack_into("<I", data, at + 24, size)
        at = data.find(b"PK\x01\x02", at + 4)
    path.write_bytes(bytes(data))


def open_summary(path: Path):
    """Open through the registry, as the CLI does."""
    return drive(open_model(path))


def assert_one_sentence(path: Path, match: str) -> None:
    """The CLI refuses the file with exactly one line naming it, exit 2, no traceback."""
    done = run_cli("inspect", str(path), timeout=120)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert path.name in lines[0] and lines[0].endswith(".")
    assert match in lines[0], lines[0]
    assert done.stdout == ""


class Payload:
    """Unpickling this runs os.system, which creates the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_plain_file_counts_equal_the_arrays(tmp_path: Path) -> None:
    summary = open_summary(write_keras(tmp_path / "ok.keras"))
    assert summary.totals.params == KERNEL.size + BIAS.size
    assert summary.totals.trainable_params == KERNEL.size + BIAS.size
    d = summary.node("d")
    assert d.type == "Dense" and d.attributes["units"] == 3
    assert {t.name: t.shape for t in d.tensors} == {"d.kernel": KERNEL.shape, "d.bias": BIAS.shape}
    assert d.output_shape == (None, 3)


def test_config_json_declaring_3_gib_is_refused_before_inflating(tmp_path: Path) -> None:
    path = write_keras(tmp_path / "bomb.keras", compress=zipfile.ZIP_DEFLATED)
    set_declared_size(path, "config.json", 3 << 30)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(CorruptFile, match=r"^bomb\.keras: its member 'config\.json' inflates to 3,221,225,472"):
        open_summary(path)
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kib < 1 << 20  # < 1 GiB of peak RSS growth


def test_config_json_lying_about_its_size_stops_at_the_declared_size(tmp_path: Path) -> None:
    padded = json.dumps(dense_config()) + " " * 100_000
    path = write_keras(tmp_path / "liar.keras", config=padded, compress=zipfile.ZIP_DEFLATED)
    set_declared_size(path, "config.json", 200)  # inflates to 100 kB, claims 200 bytes
    with pytest.raises(CorruptFile, match=r"^liar\.keras: its member 'config\.json' cannot be read"):
        open_summary(path)


def test_weights_member_inflating_3_gib_is_refused_before_inflating(tmp_path: Path) -> None:
    path = write_keras(tmp_path / "wbomb.keras", compress=zipfile.ZIP_DEFLATED)
    set_declared_size(path, "model.weights.h5", 3 << 30)
    with pytest.raises(CorruptFile, match=r"model\.weights\.h5' inflates to 3,221,225,472 bytes from"):
        open_summary(path)
    assert_one_sentence(path, "refused before inflating")


def test_stored_weights_declaring_more_than_the_archive_holds(tmp_path: Path) -> None:
    path = write_keras(tmp_path / "cut.keras")
    set_declared_size(path, "model.weights.h5", 3 << 30)
    with pytest.raises(CorruptFile, match="that the archive does not hold; the file is truncated"):
        open_summary(path)


def test_compressed_weights_are_read_from_memory(tmp_path: Path) -> None:
    summary = open_summary(write_keras(tmp_path / "deflated.keras", compress=zipfile.ZIP_DEFLATED))
    assert summary.totals.params == KERNEL.size + BIAS.size


def test_zip_slip_member_is_a_note_and_nothing_is_written(tmp_path: Path) -> None:
    inner = tmp_path / "inner"
    inner.mkdir()
    path = write_keras(inner / "slip.keras", extra={"../../escaped.txt": b"x", "/abs.txt": b"y"})
    summary = open_summary(path)
    assert summary.totals.params == KERNEL.size + BIAS.size
    assert any("point outside its folder" in n and "escaped.txt" in n for n in summary.notes)
    assert not (tmp_path / "escaped.txt").exists() and not (tmp_path.parent / "escaped.txt").exists()


def test_duplicate_config_json_is_refused(tmp_path: Path) -> None:
    path = write_keras(tmp_path / "dup.keras")
    with warnings.catch_warnings(), zipfile.ZipFile(path, "a") as zf:
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate name it is asked to write
        zf.writestr("config.json", json.dumps(dense_config(units=7)))
    with pytest.raises(CorruptFile, match=r"^dup\.keras: the archive holds 2 members named 'config\.json'"):
        open_summary(path)


def test_pickles_and_bytecode_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    blob = pickle.dumps(Payload(marker))
    weights = write_weights(tmp_path / "w.h5")
    with h5py.File(weights, "a") as f:  # a pickle as an opaque attribute and as an opaque dataset
        f["layers/dense/vars"].attrs["payload"] = np.void(blob)
        f.create_dataset("layers/dense/blob", data=np.void(blob))
    code = marshal.dumps((lambda x: __import__("os").system(f"touch {marker}")).__code__)
    lam = {"module": "keras.layers", "class_name": "Lambda",
           "config": {"name": "evil", "trainable": True, "arguments": {},
                      "function": {"class_name": "__lambda__", "config": {
                          "code": base64.b64encode(code).decode(), "defaults": None, "closure": None}}}}
    path = write_keras(tmp_path / "evil.keras", config=dense_config(extra=[lam]), weights=weights,
                       extra={"assets/vocab.pkl": blob, "assets/table.npy": b"\x93NUMPY" + blob})
    summary = open_summary(path)
    assert not marker.exists()
    assert summary.totals.params == KERNEL.size + BIAS.size
    assert summary.metadata["python_code_layers"] == ["evil"]
    assert any("'evil'" in n and "bytecode" in n and "--trust" in n for n in summary.notes)
    assert any("2 other member(s)" in n and "never reads or unpickles" in n for n in summary.notes)
    done = run_cli("inspect", str(path), timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stderr == "" and not marker.exists()


def test_legacy_h5_with_pickled_attribute_never_unpickles(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "legacy.h5"
    with h5py.File(path, "w") as f:
        f.attrs["model_config"] = json.dumps(dense_config())
        f.attrs["training_config"] = np.void(pickle.dumps(Payload(marker)))
        mw = f.create_group("model_weights")
        mw.attrs["layer_names"] = np.array([b"x", b"d"])
        mw.create_group("x").attrs["weight_names"] = np.array([], dtype="S1")
        d = mw.create_group("d")
        d.attrs["weight_names"] = np.array([b"d/kernel:0", b"d/bias:0"])
        d["d/kernel:0"] = KERNEL
        d["d/bias:0"] = BIAS
    summary = open_summary(path)
    assert not marker.exists()
    assert summary.source.format == "keras-h5"
    assert summary.totals.params == KERNEL.size + BIAS.size
    assert {t.name for t in summary.node("d").tensors} == {"d.kernel", "d.bias"}


def test_unallocated_huge_dataset_is_refused(tmp_path: Path) -> None:
    weights = write_weights(tmp_path / "w.h5")
    with h5py.File(weights, "a") as f:
        f["layers/dense/vars"].create_dataset("2", shape=(10**9, 10**9), dtype="f4")  # never written
    assert weights.stat().st_size < 1 << 20
    path = write_keras(tmp_path / "huge.keras", weights=weights)
    with pytest.raises(CorruptFile, match=r"^huge\.keras: tensor 'd\.var_2' declares \(1000000000, 1000000000\) "
                                          r"float32 \(4,000,000,000,000,000,000 bytes\) but the file stores 0 bytes"):
        open_summary(path)
    bare = tmp_path / "huge.weights.h5"
    bare.write_bytes(weights.read_bytes())
    assert_one_sentence(bare, "declares (1000000000, 1000000000) float32")


def test_small_unallocated_dataset_opens_with_a_note(tmp_path: Path) -> None:
    weights = tmp_path / "w.h5"
    with h5py.File(weights, "w") as f:
        g = f.create_group("layers/dense/vars")
        g.attrs["name"] = "d"
        g.create_dataset("0", shape=(4, 3), dtype="f4")  # declared, never written
        g["1"] = BIAS
    summary = open_summary(write_keras(tmp_path / "empty.keras", weights=weights))
    assert summary.totals.params == 12 + BIAS.size
    assert any("1 tensor(s) declare data the file does not store" in n and "'d.kernel'" in n for n in summary.notes)


@pytest.mark.parametrize("where", ["keras", "h5"])
def test_config_nested_100k_levels_is_one_sentence(tmp_path: Path, where: str) -> None:
    deep = '{"class_name": "Sequential", "config": ' + "[" * 100_000 + "]" * 100_000 + "}"
    if where == "keras":
        path = write_keras(tmp_path / "deep.keras", config=deep)
    else:
        path = tmp_path / "deep.h5"
        with h5py.File(path, "w") as f:
            f.attrs["model_config"] = deep
            f.create_group("model_weights").attrs["layer_names"] = np.array([], dtype="S1")
    with pytest.raises(CorruptFile, match="nests deeper than the Python JSON parser can follow"):
        open_summary(path)


def test_million_units_over_small_weights_takes_shapes_from_the_weights(tmp_path: Path) -> None:
    kernel, bias = np.ones((4, 10), np.float32), np.ones(10, np.float32)
    path = write_keras(tmp_path / "liar.keras", config=dense_config(units=10**6),
                       weights=write_weights(tmp_path / "w.h5", kernel, bias))
    summary = open_summary(path)
    assert summary.totals.params == kernel.size + bias.size
    d = summary.node("d")
    assert d.attributes["units"] == 10**6  # the config's number is shown as what it is: an attribute
    assert d.output_shape is None  # not derived from a number the weights contradict
    assert any("config says units=1,000,000, the stored weights hold 10" in n for n in summary.notes)


def test_links_are_not_followed(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # opening it would block until a writer comes
    path = write_weights(tmp_path / "links.weights.h5")
    with h5py.File(path, "a") as f:
        f["layers/evil"] = h5py.ExternalLink(str(fifo), "/x")
        f["layers/loop"] = h5py.SoftLink("/layers")
        f["layers/dense/again"] = f["layers"]  # a hard-link cycle
    code = ("from analyzers.loaders import open_model; from analyzers.tasks import drive; "
            f"s = drive(open_model({str(path)!r})); print(s.totals.params); print(*s.notes, sep='\\n')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == str(KERNEL.size + BIAS.size)
    assert any("2 soft or external HDF5 link(s) were not followed" in line for line in lines)


def test_inspect_never_imports_tensorflow(tmp_path: Path) -> None:
    path = write_keras(tmp_path / "m.keras")
    code = ("import sys; from analyzers.loaders import open_model; from analyzers.tasks import drive; "
            f"drive(open_model({str(path)!r})); print('tensorflow' in sys.modules, 'keras' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert done.stdout.split() == ["False", "False"], done.stderr


def test_every_refusal_is_a_layerscope_error(tmp_path: Path) -> None:
    path = write_keras(tmp_path / "notjson.keras", config=b"\xff\xfe{")
    with pytest.raises(LayerScopeError, match=r"^notjson\.keras: config\.json in the \.keras archive is not valid JSON"):
        open_summary(path)


def test_keras2_legacy_h5_reads_without_keras(tmp_path: Path) -> None:
    """A tf.keras 2 full-model .h5: `batch_input_shape` on the first layer, weight names with ':0', a frozen
    layer, BatchNormalization statistics."""
    kernel, gamma = np.ones((4, 6), np.float32), np.ones(6, np.float32)
    frozen_kernel = np.ones((6, 2), np.float32)
    config = {"class_name": "Sequential", "config": {"name": "sequential", "layers": [
        {"class_name": "Dense", "config": {"name": "dense", "trainable": True, "batch_input_shape": [None, 4],
                                           "units": 6, "use_bias": False}},
        {"class_name": "BatchNormalization", "config": {"name": "bn", "trainable": True, "axis": -1,
                                                        "center": True, "scale": True}},
        {"class_name": "Dense", "config": {"name": "frozen", "trainable": False, "units": 2, "use_bias": False}},
    ]}}
    path = tmp_path / "tf2.h5"
    with h5py.File(path, "w") as f:
        f.attrs["model_config"] = json.dumps(config).encode()
        f.attrs["keras_version"] = b"2.15.0"
        mw = f.create_group("model_weights")
        mw.attrs["layer_names"] = np.array([b"dense", b"bn", b"frozen"])
        for layer, weights in (("dense", {"kernel": kernel}), ("frozen", {"kernel": frozen_kernel}),
                               ("bn", {n: gamma for n in ("gamma", "beta", "moving_mean", "moving_variance")})):
            g = mw.create_group(layer)
            g.attrs["weight_names"] = np.array([f"{layer}/{n}:0".encode() for n in weights])
            for n, value in weights.items():
                g[f"{layer}/{n}:0"] = value
    summary = open_summary(path)
    t = summary.totals
    assert t.params == kernel.size + 4 * gamma.size + frozen_kernel.size
    assert t.non_trainable_params == 2 * gamma.size + frozen_kernel.size
    assert [x.name for x in summary.node("bn").tensors] == ["bn.gamma", "bn.beta", "bn.moving_mean",
                                                            "bn.moving_variance"]
    assert summary.node("dense").output_shape == (None, 6)
    assert summary.node("frozen").output_shape == (None, 2)
