"""A generator's Explain tab: its image is drawn, its latent attribution is one bar per dimension."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPointF, Qt
from PySide6.QtTest import QTest

from analyzers.explain.attribution import Attribution
from analyzers.explain.display import output_picture, output_position
from analyzers.explain.inputs import ModelInput
from analyzers.runtime import summarise_outputs
from widgets.output_views import NEGATIVE, POSITIVE, OutputImageView, VectorPanel
from widgets.run_panel import RunPanel


def generated(seed: int = 0) -> np.ndarray:
    """A (1, 28, 28, 1) tanh image, like the bundled DCGAN generator's."""
    return np.tanh(np.random.default_rng(seed).normal(size=(1, 28, 28, 1))).astype(np.float32)


def gan_attribution(image: np.ndarray, latent_map: np.ndarray) -> Attribution:
    inp = ModelInput("latent", np.zeros((1, latent_map.size), np.float32), "latent_0.npy")
    pred = summarise_outputs({"image": image}, (), 5, inp, task="generation")
    label = output_position(pred.target, pred.output.shape)
    return Attribution("ig", {"steps": 64}, pred.target, label, latent_map, inp, pred, "cpu", "keras", 0.5)


def test_the_panel_draws_a_generated_image_and_hides_the_empty_class_table(qtbot):
    panel = RunPanel()
    qtbot.addWidget(panel)
    panel.set_model("gan_generator.keras (keras)", "latent", [], None, [], ())
    image = generated(1)
    pred = summarise_outputs({"image": image}, (), 5, task="generation")
    panel.show_prediction(pred, "cpu")
    assert panel.output_image.isVisibleTo(panel) and not panel.top.isVisibleTo(panel)
    np.testing.assert_allclose(panel.output_image.image.image, output_picture(image[0]))
    np.testing.assert_allclose(panel.output_image.image.image, (image[0, :, :, 0] + 1) / 2, rtol=1e-6)
    assert panel.target.itemText(0) == "largest output"
    classes = summarise_outputs({"logits": np.array([[0.1, 2.0, -1.0]])}, ("a", "b", "c"), 3)
    panel.show_prediction(classes, "cpu")  # a classifier again: the table is back, the picture gone
    assert not panel.output_image.isVisibleTo(panel) and panel.top.isVisibleTo(panel)
    assert panel.target.itemText(0) == "predicted class"


def test_a_latent_attribution_is_one_bar_per_dimension_with_its_target_in_words(qtbot):
    panel = RunPanel()
    qtbot.addWidget(panel)
    image = generated(2)
    latent_map = np.random.default_rng(3).normal(size=100).astype(np.float32)
    a = gan_attribution(image, latent_map)
    panel.show_attribution(a)
    assert panel.maps.currentWidget() is panel.vector
    bars = panel.vector.bars
    np.testing.assert_allclose(bars.bars.opts["height"], latent_map, rtol=1e-6)
    np.testing.assert_array_equal(bars.bars.opts["x"], np.arange(100))
    colours = bars.brush_colors()
    assert all(c == (POSITIVE if v >= 0 else NEGATIVE) for c, v in zip(colours, latent_map))
    row, col = divmod(int(np.argmax(image)), 28)  # the brightest pixel of a (28, 28, 1) output
    assert a.target == int(np.argmax(image))
    assert f"output pixel ({row}, {col}) (flat index {a.target})" in panel.vector.caption.text()
    assert panel.output_image.marked == (row, col)
    strongest = int(np.argmax(np.abs(latent_map)))
    assert panel.vector.strongest.text().startswith(f"Strongest dimensions: {strongest} ")


def test_clicking_a_pixel_of_the_output_makes_it_the_target(qtbot):
    panel = RunPanel()
    qtbot.addWidget(panel)
    panel.resize(1000, 800)
    panel.set_model("gan_generator.keras (keras)", "latent", [], None, [], ())
    panel.show_prediction(summarise_outputs({"image": generated(4)}, (), 5, task="generation"), "cpu")
    panel.show()
    qtbot.waitExposed(panel)
    qtbot.wait(50)
    view = panel.output_image
    scene = view.view.mapViewToScene(QPointF(9.5, 6.5))  # column 9, row 6
    QTest.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier,
                     view.mapFromScene(scene))
    assert panel.attribution_request().target == 6 * 28 + 9
    assert panel.target.currentText() == "output pixel (6, 9)"
    assert view.marked == (6, 9)


def test_output_image_ignores_shapes_that_are_no_picture(qtbot):
    view = OutputImageView()
    qtbot.addWidget(view)
    assert not view.set_output(np.zeros(100, np.float32))
    assert view.set_output(np.zeros((3, 16, 16), np.float32))
    assert view.index_of(2, 5) == 2 * 16 + 5  # channels first: channel 0 of pixel (2, 5)


def test_vector_panel_saves_the_raw_map(qtbot, tmp_path):
    panel = VectorPanel()
    qtbot.addWidget(panel)
    raw = np.linspace(-1, 1, 7).astype(np.float32)
    panel.set_map(raw, "caption")
    with qtbot.waitSignal(panel.saved):
        path = panel.save_npy(tmp_path / "latent.npy")
    np.testing.assert_array_equal(np.load(path), raw)
    panel.clear()
    with pytest.raises(ValueError):
        panel.save_npy(tmp_path / "none.npy")
