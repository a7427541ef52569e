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
from analyzers.runtime import keras_runtime
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


def layer_zoo() -> dict[str, object]:
    """Models covering the layer classes whose variables and shapes are read from tables, not from Keras."""
    inp = keras.Input((7,), dtype="int32")
    e = keras.layers.Embedding(50, 8, name="emb")(inp)
    a = keras.layers.MultiHeadAttention(2, 4, name="mha")(e, e)
    r = keras.layers.Bidirectional(keras.layers.LSTM(6, return_sequences=True), name="bi")(
        keras.layers.LayerNormalization(name="ln")(a))
    g = keras.layers.GRU(5, name="gru")(r)
    rnn = keras.Model(inp, keras.layers.Dense(3, name="out")(keras.layers.Dropout(0.1, name="drop")(g)), name="rnn")

    inp = keras.Input((8, 8, 3))
    x = keras.layers.SeparableConv2D(4, 3, name="sep")(inp)
    x = keras.layers.DepthwiseConv2D(3, depth_multiplier=2, name="dw")(x)
    x = keras.layers.BatchNormalization(center=False, name="bnc")(x)
    x = keras.layers.PReLU(name="prelu")(x)
    x = keras.layers.TimeDistributed(keras.layers.Dense(2), name="td")(x)
    x = keras.layers.Conv2DTranspose(3, 3, strides=2, padding="same", name="up")(x)
    x = keras.layers.MaxPooling2D(3, strides=2, padding="same", name="pool")(x)
    x = keras.layers.Conv2D(5, 2, dilation_rate=2, use_bias=False, name="dil")(x)
    shared = keras.layers.Dense(5, name="shared")
    conv = keras.Model(inp, keras.layers.GlobalAveragePooling2D(name="gap")(shared(shared(x))), name="conv")

    inp = keras.Input((12, 3))
    c = keras.layers.Conv1D(4, 3, padding="causal", dilation_rate=2, name="causal")(inp)
    p = keras.layers.AveragePooling1D(2, name="avg")(c)
    cat = keras.layers.Concatenate(name="cat")([keras.layers.SimpleRNN(5, return_sequences=True, name="srnn")(p), p])
    rs = keras.layers.Reshape((-1, 6), name="rs")(keras.layers.Flatten(name="flat")(cat))
    seq1d = keras.Model(inp, keras.layers.Dense(2, name="head")(rs), name="seq1d")

    norm = keras.layers.Normalization(name="norm")
    norm.adapt(np.random.default_rng(0).random((10, 3)))
    enc = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, name="e1"),
                            keras.layers.BatchNormalization(renorm=True, name="rbn")], name="enc")
    enc.trainable = False
    frozen = keras.Sequential([keras.Input((3,)), norm, enc, keras.layers.Dense(2, name="top")], name="frozen")
    still = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, name="a"),
                              keras.layers.BatchNormalization(name="b")], name="still")
    still.trainable = False
    stateful = keras.Sequential([keras.Input((4, 3), batch_size=2), keras.layers.LSTM(5, stateful=True, name="st")],
                                name="stateful")
    return {m.name: m for m in (rnn, conv, seq1d, frozen, still, stateful)}


@pytest.fixture(scope="module")
def zoo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """The layer zoo saved as .keras and as legacy .h5."""
    tmp = tmp_path_factory.mktemp("zoo")
    models = layer_zoo()
    for name, model in models.items():
        model.save(tmp / f"{name}.keras")
        model.save(tmp / f"{name}.h5")
    return {"tmp": tmp, "models": models}


ZOO = ["rnn", "conv", "seq1d", "frozen", "still", "stateful"]


@pytest.mark.parametrize("ext", [".keras", ".h5"])
@pytest.mark.parametrize("name", ZOO)
def test_layer_zoo_counts_equal_keras(zoo: dict, name: str, ext: str) -> None:
    summary = open_summary(zoo["tmp"] / f"{name}{ext}")
    check_contract(summary)
    assert summary_counts(summary) == keras_counts(zoo["models"][name])


@pytest.mark.parametrize("ext", [".keras", ".h5"])
@pytest.mark.parametrize("name", ZOO)
def test_layer_zoo_variable_names_and_flags_equal_keras(zoo: dict, name: str, ext: str) -> None:
    model = zoo["models"][name]
    summary = open_summary(zoo["tmp"] / f"{name}{ext}")
    trainable = {id(w) for w in model.trainable_weights}
    for layer in model.layers:
        node = summary.node(layer.name)
        ours = sorted((t.name.rsplit(".", 1)[-1], t.shape, t.trainable) for n, _ in node.walk() for t in n.tensors)
        theirs = sorted((w.name, tuple(w.shape), id(w) in trainable) for w in layer.weights)
        assert ours == theirs, layer.name


# Layers whose output shape the config lets LayerScope compute (the rest may be None, never wrong).
SHAPED = {"rnn": {"emb", "mha", "ln", "bi", "gru", "drop", "out"},
          "conv": {"sep", "dw", "bnc", "prelu", "td", "up", "pool", "dil", "gap"},
          "seq1d": {"causal", "avg", "srnn", "cat", "flat", "rs", "head"},
          "frozen": {"norm", "enc", "top"}, "still": {"a", "b"}, "stateful": set()}


@pytest.mark.parametrize("ext", [".keras", ".h5"])
@pytest.mark.parametrize("name", ZOO)
def test_layer_zoo_output_shapes_equal_keras(zoo: dict, name: str, ext: str) -> None:
    model = zoo["models"][name]
    summary = open_summary(zoo["tmp"] / f"{name}{ext}")
    for layer in model.layers:
        ours = summary.node(layer.name).output_shape
        if layer.name in SHAPED[name]:
            assert ours is not None, layer.name
        if ours is not None:
            assert ours == tuple(layer.output.shape), layer.name


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
    # The config of a subclassed model does not describe its sub-layers: their classes are unknown, their
    # variables numbered; a BatchNormalization is recognised by its layout, with a note saying so.
    norm = summary.node("block.norm")
    assert norm.type == "BatchNormalization"
    assert [t.trainable for t in norm.tensors] == [True, True, False, False]
    assert [t.shape for t in summary.node("block.proj").tensors] == [tuple(w.shape) for w in sub.block.proj.weights]
    assert [t.name for t in summary.node("block").tensors] == ["block.var_0"]
    assert any("'block.norm'" in note and "BatchNormalization" in note for note in summary.notes)


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


def test_reading_never_imports_tensorflow(files: dict) -> None:
    names = ("net.keras", "net.h5", "sub.keras", "lambda.keras", "lambda.h5", "net.weights.h5", "legacy_weights.h5")
    code = textwrap.dedent(f"""
        import sys
        from analyzers.loaders import open_model
        from analyzers.tasks import drive
        for name in {names!r}:
            s = drive(open_model({str(files["tmp"])!r} + "/" + name))
            print(s.totals.params)
        print("tensorflow" in sys.modules, "keras" in sys.modules)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.split()
    counts = {"sub": files["sub"].count_params(), "lambda": files["lambda"].count_params()}
    assert lines[:-2] == [str(counts.get(n.split(".")[0], files["model"].count_params())) for n in names]
    assert lines[-2:] == ["False", "False"]


@pytest.mark.parametrize("name", ["lambda.keras", "lambda.h5"])
def test_lambda_opens_with_a_note_and_runs_only_when_trusted(files: dict, name: str) -> None:
    path = files["tmp"] / name
    summary = open_summary(path)  # reading the config runs nothing, so no trust is needed to look
    assert summary_counts(summary) == keras_counts(files["lambda"])
    assert summary.node("double").type == "Lambda"
    assert summary.metadata["python_code_layers"] == ["double"]
    assert any("'double'" in note and "--trust" in note for note in summary.notes)
    with pytest.raises(TrustRequired, match="Lambda"):  # running it unpickles the bytecode: trust first
        drive(keras_runtime.open_keras(path, LoadOptions(), "cpu"))


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
