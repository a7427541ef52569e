"""Keras (.keras, legacy .h5, .weights.h5) and TF SavedModel: counts equal what Keras / TensorFlow report.

Every TensorFlow import of the test suite's format tests happens in this module (and one CLI
subprocess), so fixtures are built once per module.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from analyzers.errors import CorruptFile, TrustRequired
from analyzers.loaders import LoadOptions, find_loader, open_model
from analyzers.tasks import drive
from tests.analyzers.format_cli import run_cli_batch
from tests.analyzers.test_contract import check_contract
from tests.cli_helpers import REPO

pytestmark = pytest.mark.slow

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")


def _n(weights) -> int:
    return int(sum(int(np.prod(w.shape)) for w in weights))


def keras_counts(model) -> tuple[int, int, int]:
    """(count_params, trainable, non-trainable) as Keras reports them."""
    return model.count_params(), _n(model.trainable_weights), _n(model.non_trainable_weights)


def summary_counts(summary) -> tuple[int, int, int]:
    """(params, trainable, non-trainable) as the summary reports them."""
    t = summary.totals
    return t.params, t.trainable_params, t.non_trainable_params


def open_summary(path: Path, **options):
    """Open through the registry, as the CLI does."""
    return drive(open_model(path, LoadOptions(**options)))


@keras.saving.register_keras_serializable(package="layerscope_tests")
class Block(keras.layers.Layer):
    """A custom layer owning a Dense and a weight of its own."""

    def __init__(self, units: int = 5, **kwargs) -> None:
        super().__init__(**kwargs)
        self.units = units
        self.proj = keras.layers.Dense(units, name="proj")
        self.norm = keras.layers.BatchNormalization(name="norm")

    def build(self, input_shape) -> None:
        self.offset = self.add_weight(shape=(self.units,), name="offset")
        self.proj.build(input_shape)
        self.norm.build((*input_shape[:-1], self.units))

    def call(self, x):
        return self.norm(self.proj(x)) + self.offset

    def get_config(self) -> dict:
        return {**super().get_config(), "units": self.units}


@keras.saving.register_keras_serializable(package="layerscope_tests")
class SubNet(keras.Model):
    """A subclassed model: a custom block then a head."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.block = Block(5, name="block")
        self.head = keras.layers.Dense(2, name="head")

    def call(self, x):
        return self.head(self.block(x))


def functional_model():
    """Functional model with a nested Sequential (Dense + BatchNormalization), dropout and a frozen layer."""
    encoder = keras.Sequential(
        [keras.Input((6,)), keras.layers.Dense(8, activation="relu", name="d1"),
         keras.layers.BatchNormalization(name="bn")],
        name="encoder",
    )
    inp = keras.Input((6,), name="x")
    h = encoder(inp)
    h = keras.layers.Dropout(0.2, name="drop")(h)
    h = keras.layers.Dense(4, name="frozen")(h)
    out = keras.layers.Dense(3, activation="softmax", name="head")(h)
    model = keras.Model(inp, out, name="net")
    model.get_layer("frozen").trainable = False
    return model


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """Every Keras / SavedModel fixture, saved once."""
    import h5py
    from keras.src.legacy.saving import legacy_h5_format

    tmp = tmp_path_factory.mktemp("keras")
    model = functional_model()
    model.save(tmp / "net.keras")
    model.save(tmp / "net.h5")
    model.save_weights(tmp / "net.weights.h5")
    with h5py.File(tmp / "legacy_weights.h5", "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)

    inp = keras.Input((4,))
    lam = keras.Model(inp, keras.layers.Dense(2)(keras.layers.Lambda(lambda t: t * 2.0, name="double")(inp)))
    lam.save(tmp / "lambda.keras")
    lam.save(tmp / "lambda.h5")

    sub = SubNet()
    sub(np.zeros((1, 4), np.float32))
    sub.save(tmp / "sub.keras")

    module = tf.Module()
    module.encoder = tf.Module()
    module.encoder.w = tf.Variable(tf.ones((4, 3)), name="w")
    module.encoder.b = tf.Variable(tf.zeros((3,)), name="b")
    module.stats = tf.Variable(tf.zeros((3,)), trainable=False, name="stats")

    @tf.function(input_signature=[tf.TensorSpec((None, 4), tf.float32, name="x")])
    def serve(x):
        return {"y": x @ module.encoder.w + module.encoder.b + module.stats}

    module.serve = serve
    tf.saved_model.save(module, str(tmp / "sm_module"), signatures={"serving_default": serve})
    model.export(str(tmp / "sm_keras"), verbose=False)
    return {"tmp": tmp, "model": model, "lambda": lam, "sub": sub, "module": module}


@pytest.mark.parametrize("name", ["net.keras", "net.h5"])
def test_keras_model_counts_equal_keras(files: dict, name: str) -> None:
    model = files["model"]
    summary = open_summary(files["tmp"] / name)
    check_contract(summary)
    assert summary_counts(summary) == keras_counts(model)
    assert summary.source.framework == "keras"
    bn = summary.node("encoder.bn")
    assert bn.type == "BatchNormalization"
    flags = {t.name: (t.kind, t.trainable) for t in bn.tensors}
    assert flags["encoder.bn.moving_mean"] == ("param", False)
    assert flags["encoder.bn.moving_variance"] == ("param", False)
    assert flags["encoder.bn.gamma"] == ("param", True)
    assert summary.node("encoder").type == "Sequential"
    assert summary.node("encoder.d1").attributes["units"] == 8
    assert summary.node("encoder.d1").attributes["activation"] == "relu"
    assert summary.node("drop").attributes["rate"] == 0.2
    assert summary.node("head").output_shape == (None, 3)
    assert summary.node("frozen").total.trainable_params == 0
    assert summary.node("frozen").total.params == _n(model.get_layer("frozen").weights)


def test_subclassed_model_with_custom_layer(files: dict) -> None:
    sub = files["sub"]
    summary = open_summary(files["tmp"] / "sub.keras")
    check_contract(summary)
    assert summary_counts(summary) == keras_counts(sub)
    assert summary.node("block").type == "Block"
    assert summary.node("block.proj").type == "Dense"
    assert {t.name for t in summary.node("block").tensors} == {"block.offset"}


def test_unregistered_custom_class_falls_back_to_stored_weights(files: dict, monkeypatch) -> None:
    registry = keras.saving.get_custom_objects()
    for key in [k for k in registry if k.startswith("layerscope_tests>")]:
        monkeypatch.delitem(registry, key)
    summary = open_summary(files["tmp"] / "sub.keras")
    check_contract(summary)
    # Parameter count is exact; trainability is not stored in a weights file, so only the
    # documented inference is promised (a BatchNormalization named "norm" is not recognised).
    assert summary.totals.params == files["sub"].count_params()
    assert any("SubNet" in note and "not registered" in note for note in summary.notes)
    assert any("trainability" in note for note in summary.notes)
    assert summary.node("block.proj").total.params == _n(files["sub"].block.proj.weights)


@pytest.mark.parametrize("name", ["net.weights.h5", "legacy_weights.h5"])
def test_weights_only_h5_counts_equal_keras(files: dict, name: str) -> None:
    path = files["tmp"] / name
    assert find_loader(path).name == "h5-weights"
    summary = open_summary(path)
    check_contract(summary)
    model = files["model"]
    assert summary.totals.params == model.count_params()
    # A weights file does not record frozen layers; BatchNormalization moving statistics are the
    # non-trainable parameters it can still tell apart (as Keras counts them).
    moving = _n(model.get_layer("encoder").get_layer("bn").non_trainable_weights)
    assert summary.totals.non_trainable_params == moving
    assert summary.source.format == "keras-weights"
    bn = [t for t in summary.tensors if t.name.endswith("moving_variance")]
    assert len(bn) == 1 and not bn[0].trainable and bn[0].kind == "param"


def test_weights_only_h5_never_imports_tensorflow(files: dict) -> None:
    code = textwrap.dedent(f"""
        import sys
        from analyzers.loaders import open_model
        from analyzers.tasks import drive
        for name in ("net.weights.h5", "legacy_weights.h5"):
            s = drive(open_model({str(files["tmp"])!r} + "/" + name))
            print(s.totals.params)
        print("tensorflow" in sys.modules, "keras" in sys.modules)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.split()
    assert lines[:2] == [str(files["model"].count_params())] * 2
    assert lines[2:] == ["False", "False"]


@pytest.mark.parametrize("name", ["lambda.keras", "lambda.h5"])
def test_lambda_needs_trust(files: dict, name: str) -> None:
    path = files["tmp"] / name
    with pytest.raises(TrustRequired, match="Lambda"):
        open_summary(path)
    summary = open_summary(path, trust=True)
    assert summary_counts(summary) == keras_counts(files["lambda"])
    assert summary.node("double").type == "Lambda"


def test_savedmodel_from_tf_module(files: dict) -> None:
    module = files["module"]
    path = files["tmp"] / "sm_module"
    assert find_loader(path).name == "savedmodel"
    summary = open_summary(path)
    check_contract(summary)
    assert summary.totals.params == _n(module.variables)
    assert summary.totals.trainable_params == _n(module.trainable_variables)
    assert summary.totals.non_trainable_params == _n(module.variables) - _n(module.trainable_variables)
    assert {t.name for t in summary.node("encoder").tensors} == {"encoder.w", "encoder.b"}
    sig = summary.metadata["signatures"]["serving_default"]
    assert sig["inputs"]["x"]["shape"] == [None, 4]
    assert sig["inputs"]["x"]["dtype"] == "float32"
    assert sig["outputs"]["y"]["shape"] == [None, 3]
    # The saved_model.pb file opens its folder.
    again = open_summary(path / "saved_model.pb")
    assert summary_counts(again) == summary_counts(summary)


def test_savedmodel_from_keras_export(files: dict) -> None:
    summary = open_summary(files["tmp"] / "sm_keras")
    check_contract(summary)
    assert summary_counts(summary) == keras_counts(files["model"])
    assert "serve" in summary.metadata["signatures"]


def test_savedmodel_with_garbage_protobuf(tmp_path: Path) -> None:
    folder = tmp_path / "broken"
    (folder / "variables").mkdir(parents=True)
    (folder / "saved_model.pb").write_bytes(b"\x08\x01\x12\xff\xff\xff\x0fgarbage")
    with pytest.raises(CorruptFile, match=r"^broken: saved_model\.pb .*\.$"):
        open_summary(folder)


def test_cli_json_and_table(files: dict, tmp_path: Path) -> None:
    """One child process (one TensorFlow import) runs the CLI four times."""
    tmp = files["tmp"]
    results = run_cli_batch({
        "keras_json": ["inspect", str(tmp / "net.keras"), "--json"],
        "keras_table": ["inspect", str(tmp / "net.keras"), "--table", "--depth", "2"],
        "sm_json": ["inspect", str(tmp / "sm_module"), "--json"],
        "sm_table": ["inspect", str(tmp / "sm_module"), "--table"],
    }, tmp_path)
    assert all(r["rc"] == 0 for r in results.values()), {k: r["stderr"] for k, r in results.items()}
    doc = json.loads(results["keras_json"]["stdout"])
    assert doc["schema"] == "layerscope.summary/1"
    assert doc["source"]["format"] == "keras"
    params, trainable, _ = keras_counts(files["model"])
    assert (doc["totals"]["params"], doc["totals"]["trainable_params"]) == (params, trainable)
    assert "encoder (Sequential)" in results["keras_table"]["stdout"]
    assert f"{params:,}" in results["keras_table"]["stdout"]
    sm = json.loads(results["sm_json"]["stdout"])
    assert sm["source"]["format"] == "savedmodel"
    assert sm["totals"]["params"] == _n(files["module"].variables)
    assert "encoder" in results["sm_table"]["stdout"]
