"""Attention capture against each framework's own answer: Hugging Face output_attentions (encoder, causal decoder,
encoder-decoder), nn.MultiheadAttention called directly with need_weights=True, Keras return_attention_scores=True;
rows sum to 1, padding is 0, causal maps are lower-triangular, rollout equals the formula in numpy, no hook is
left after a capture or a cancel."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from analyzers.errors import LayerScopeError
from analyzers.explain.attention import (
    AttentionCollector,
    attention_rollout,
    patch_grid,
    pool_map,
)
from analyzers.explain.inputs import ModelInput
from analyzers.loaders import LoadOptions
from analyzers.runtime import load_live_model
from analyzers.runtime.torch_runtime import hook_count
from analyzers.tasks import Cancelled, CancelToken, drive
from tests.attention_fixtures import EncoderClassifier, NoAttention

FP16 = 1e-3  # the heads are stored as float16


def text_input(ids: np.ndarray, mask: np.ndarray | None = None, tokens: tuple[str, ...] = ()) -> ModelInput:
    extras = {"attention_mask": mask[None].astype(np.int64)} if mask is not None else {}
    return ModelInput("text", ids[None].astype(np.int64), "test", layout="tokens", tokens=tokens, extras=extras)


def numpy_rollout(maps: list[np.ndarray]) -> np.ndarray:
    """Abnar & Zuidema written out: A' = (A + I) / 2, rows renormalised, R = A'_l @ ... @ A'_1."""
    joint = np.eye(maps[0].shape[0])
    for a in maps:
        step = 0.5 * a.astype(np.float64) + 0.5 * np.eye(a.shape[0])
        step = step / step.sum(axis=1, keepdims=True)
        joint = step @ joint
    return joint


def check_rows(layer, valid: np.ndarray | None = None) -> None:
    sums = layer.weights.astype(np.float32).sum(-1)
    rows = np.ones(sums.shape[1], bool) if valid is None else valid
    np.testing.assert_allclose(sums[:, rows], 1.0, atol=FP16 * 2)
    np.testing.assert_allclose(layer.mean.sum(-1)[rows], 1.0, atol=1e-5)


# --- Hugging Face ---------------------------------------------------------------------------------


def save_hf(model, folder):
    model.save_pretrained(str(folder))
    return folder


def test_hf_encoder_equals_output_attentions_with_padding_masked_and_rollout(tmp_path):
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(vocab_size=60, hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                        intermediate_size=64, num_labels=2)
    folder = save_hf(BertForSequenceClassification(config).eval(), tmp_path / "bert")
    ids = np.array([2, 14, 7, 33, 9, 3, 0, 0, 0])
    mask = (np.arange(9) < 6).astype(np.int64)
    live = load_live_model(folder)
    result = drive(live.attention(text_input(ids, mask, ("[CLS]", "a", "b", "c", "d", "[SEP]"))))

    theirs_model = BertForSequenceClassification.from_pretrained(str(folder), attn_implementation="eager").eval()
    with torch.no_grad():
        out = theirs_model(input_ids=torch.from_numpy(ids[None]), attention_mask=torch.from_numpy(mask[None]),
                           output_attentions=True)
    theirs = [a[0].numpy() for a in out.attentions]
    assert result.route == "hf" and len(result.layers) == 3 and result.heads == 4
    valid = mask.astype(bool)
    for layer, ref in zip(result.layers, theirs):
        ref = ref * valid[None, :, None]  # padded queries are masked out in LayerScope's maps
        np.testing.assert_allclose(layer.weights.astype(np.float32), ref, atol=FP16)
        np.testing.assert_allclose(layer.mean, ref.mean(0), atol=1e-6)
        assert not layer.weights[:, :, ~valid].any() and not layer.weights[:, ~valid, :].any()  # padding is 0
        check_rows(layer, valid)
        assert not layer.causal
    assert result.tokens == ("[CLS]", "a", "b", "c", "d", "[SEP]", "[PAD]", "[PAD]", "[PAD]")
    assert result.shown_tokens() == 6 and result.shown_tokens(with_padding=True) == 9
    # Rollout: the formula in numpy over the framework's own head means (padding masked the same way).
    expected = numpy_rollout([(a * valid[None, :, None]).mean(0) for a in theirs])
    np.testing.assert_allclose(result.rollout()[-1], expected, atol=1e-5)
    np.testing.assert_allclose(attention_rollout([(a * valid[None, :, None]).mean(0) for a in theirs[:2]])[-1],
                               numpy_rollout([(a * valid[None, :, None]).mean(0) for a in theirs[:2]]), atol=1e-6)
    # The model is left as it was: its attention implementation, and not one hook.
    assert live.module.config._attn_implementation != "eager" and hook_count(live.module) == 0
    assert result.prediction is not None and result.prediction.top
    logits = out.logits[0].numpy()
    assert result.prediction.top[0].index == int(logits.argmax())


def test_hf_decoder_maps_are_causal_and_equal_output_attentions(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(1)
    config = GPT2Config(vocab_size=50, n_embd=32, n_layer=2, n_head=4, n_positions=32, bos_token_id=0,
                        eos_token_id=0)
    folder = save_hf(GPT2LMHeadModel(config).eval(), tmp_path / "gpt")
    ids = np.array([5, 9, 11, 3, 17, 8, 2])
    live = load_live_model(folder)
    result = drive(live.attention(text_input(ids)))
    ref_model = GPT2LMHeadModel.from_pretrained(str(folder), attn_implementation="eager").eval()
    with torch.no_grad():
        theirs = [a[0].numpy() for a in ref_model(input_ids=torch.from_numpy(ids[None]), output_attentions=True).attentions]
    for layer, ref in zip(result.layers, theirs):
        np.testing.assert_allclose(layer.weights.astype(np.float32), ref, atol=FP16)
        assert layer.causal
        assert not np.triu(layer.weights.astype(np.float32), 1).any()  # lower-triangular, every head
        check_rows(layer)
    assert hook_count(live.module) == 0


def test_hf_encoder_decoder_labels_self_and_cross_attention(tmp_path):
    from transformers import BartConfig, BartForConditionalGeneration

    torch.manual_seed(2)
    config = BartConfig(vocab_size=50, d_model=16, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2,
                        decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, max_position_embeddings=32,
                        pad_token_id=1, bos_token_id=0, eos_token_id=2, decoder_start_token_id=2)
    folder = save_hf(BartForConditionalGeneration(config).eval(), tmp_path / "bart")
    ids = np.array([0, 8, 9, 10, 11, 2])
    live = load_live_model(folder)
    result = drive(live.attention(text_input(ids, np.ones(6, np.int64), ("<s>", "a", "b", "c", "d", "</s>"))))
    names = [layer.name for layer in result.layers]
    assert names == ["encoder 0", "encoder 1", "decoder 0", "decoder 0 cross", "decoder 1", "decoder 1 cross"]
    kinds = {layer.name: (layer.kind, layer.stack, layer.causal) for layer in result.layers}
    assert kinds["encoder 0"] == ("self", "encoder", False)
    assert kinds["decoder 1"] == ("self", "decoder", True)
    assert kinds["decoder 1 cross"][0] == "cross"
    decoder_ids = torch.tensor([[2, 0, 8, 9, 10, 11]])  # the input shifted right after the start token
    ref = BartForConditionalGeneration.from_pretrained(str(folder), attn_implementation="eager").eval()
    with torch.no_grad():
        out = ref(input_ids=torch.from_numpy(ids[None]), attention_mask=torch.ones(1, 6, dtype=torch.long),
                  decoder_input_ids=decoder_ids, output_attentions=True)
    by_name = {layer.name: layer for layer in result.layers}
    np.testing.assert_allclose(by_name["encoder 1"].weights.astype(np.float32), out.encoder_attentions[1][0].numpy(),
                               atol=FP16)
    np.testing.assert_allclose(by_name["decoder 0"].weights.astype(np.float32), out.decoder_attentions[0][0].numpy(),
                               atol=FP16)
    cross = by_name["decoder 1 cross"]
    np.testing.assert_allclose(cross.weights.astype(np.float32), out.cross_attentions[1][0].numpy(), atol=FP16)
    assert cross.query_tokens[0] == "<start>" and cross.key_tokens == ("<s>", "a", "b", "c", "d", "</s>")
    assert cross.title == "decoder 1 cross"
    assert result.rollout_indices() == [0, 1] and result.rollout_indices("decoder") == [2, 4]
    assert hook_count(live.module) == 0


# --- torch.nn.MultiheadAttention ------------------------------------------------------------------


def test_multihead_attention_inside_transformer_encoder_equals_a_direct_need_weights_call(tmp_path):
    torch.manual_seed(3)
    model = EncoderClassifier().eval()
    path = tmp_path / "encoder.pt"
    torch.save(model, path)
    ids = np.array([4, 8, 15, 16, 23, 0, 0])
    live = load_live_model(path, LoadOptions(trust=True))
    fast = torch.backends.mha.get_fastpath_enabled()
    result = drive(live.attention(text_input(ids)))
    assert torch.backends.mha.get_fastpath_enabled() == fast and hook_count(live.module) == 0
    assert result.route == "torch-mha"
    assert [layer.name for layer in result.layers] == [f"encoder.layers.{i}.self_attn" for i in range(3)]

    # The reference: each layer's input recorded, then its self-attention asked directly for per-head weights.
    x_ids = torch.from_numpy(ids[None])
    pad = x_ids == 0
    inputs = []
    handles = [layer.register_forward_pre_hook(lambda _m, args, kw: inputs.append(args[0]), with_kwargs=True)
               for layer in model.encoder.layers]
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with torch.no_grad():
            logits = model(x_ids)
            theirs = [layer.self_attn(x, x, x, key_padding_mask=pad, need_weights=True, average_attn_weights=False)[1]
                      for layer, x in zip(model.encoder.layers, inputs)]
    finally:
        torch.backends.mha.set_fastpath_enabled(fast)
        for h in handles:
            h.remove()
    valid = ids != 0
    for layer, ref in zip(result.layers, theirs):
        ref = torch.nan_to_num(ref[0]).numpy() * valid[None, :, None]
        np.testing.assert_allclose(layer.weights.astype(np.float32), ref, atol=FP16)
        assert not layer.weights[:, :, ~valid].any()  # padding columns are 0
        check_rows(layer, valid)
        assert layer.stack == "encoder" and layer.kind == "self"
    np.testing.assert_array_equal(result.valid, valid)
    assert result.prediction.top[0].index == int(logits[0].argmax())


def test_cancel_stops_the_capture_and_leaves_no_hook(tmp_path):
    torch.manual_seed(4)
    path = tmp_path / "encoder.pt"
    torch.save(EncoderClassifier().eval(), path)
    live = load_live_model(path, LoadOptions(trust=True))
    token = CancelToken()
    token.cancel()
    fast = torch.backends.mha.get_fastpath_enabled()
    with pytest.raises(Cancelled):
        steps = live.attention(text_input(np.array([4, 5, 6])), token)
        next(steps)
        next(steps)  # the pass starts: the first layer's check raises
        next(steps)
    assert hook_count(live.module) == 0 and torch.backends.mha.get_fastpath_enabled() == fast


def test_a_model_without_attention_is_one_sentence(tmp_path):
    path = tmp_path / "mlp.pt"
    torch.save(NoAttention().eval(), path)
    live = load_live_model(path, LoadOptions(trust=True))
    with pytest.raises(LayerScopeError, match=r"^mlp\.pt: it has no attention LayerScope can read .*\.$"):
        drive(live.attention(text_input(np.array([1, 2, 3]))))
    assert hook_count(live.module) == 0


def test_zoo_softmax_pooling_is_one_row_over_the_steps():
    from tests.zoo_helpers import zoo_or_skip

    entry = zoo_or_skip("attention_seq_torch")
    from analyzers.explain.inputs import sample_input

    live = load_live_model(entry.file)
    inp = sample_input(entry)
    result = drive(live.attention(inp))
    assert result.route == "pooling" and len(result.layers) == 1
    layer = result.layers[0]
    assert layer.shape == (1, 1, 20) and layer.kind == "pooling" and layer.key_tokens[0] == "t0"
    with torch.no_grad():
        _, weights = live.module(torch.from_numpy(inp.array), return_attention=True)
    np.testing.assert_allclose(layer.mean[0], weights[0].numpy(), atol=1e-6)
    assert abs(float(layer.mean.sum()) - 1.0) < 1e-5
    with pytest.raises(LayerScopeError, match="rollout"):
        result.rollout()


# --- Keras ------------------------------------------------------------------------------------------


def test_keras_multihead_attention_equals_return_attention_scores(tmp_path):
    import keras
    from keras import layers

    keras.utils.set_random_seed(5)
    ids_in = keras.Input((7,), dtype="int32")
    emb = layers.Embedding(30, 16, mask_zero=True, name="emb")(ids_in)
    att = layers.MultiHeadAttention(num_heads=2, key_dim=8, name="mha")(emb, emb)
    causal = layers.MultiHeadAttention(num_heads=2, key_dim=8, name="causal")(att, att, use_causal_mask=True)
    out = layers.Dense(2)(layers.GlobalAveragePooling1D()(causal))
    path = tmp_path / "mha.keras"
    keras.Model(ids_in, out).save(path)
    ids = np.array([4, 9, 12, 3, 0, 0, 0])
    live = load_live_model(path)
    result = drive(live.attention(ModelInput("text", ids[None].astype(np.int32), "test", layout="tokens")))
    model = live.model
    assert [layer.name for layer in result.layers] == ["mha", "causal"] and result.route == "keras-mha"
    e = model.get_layer("emb")(ids[None])
    a, scores = model.get_layer("mha")(e, e, return_attention_scores=True)
    _, scores2 = model.get_layer("causal")(a, a, use_causal_mask=True, return_attention_scores=True)
    valid = ids != 0
    for layer, ref in zip(result.layers, (scores, scores2)):
        np.testing.assert_allclose(layer.weights.astype(np.float32), np.asarray(ref)[0], atol=FP16)
        assert not layer.weights[:, :, ~valid].any()
        check_rows(layer, valid)
    assert result.layers[1].causal and not np.triu(result.layers[1].weights.astype(np.float32), 1).any()
    assert not result.layers[0].causal and [layer.kind for layer in result.layers] == ["self", "self"]
    assert type(model.get_layer("mha")).call is type(model.get_layer("mha")).call and "call" not in vars(
        model.get_layer("mha"))  # the tap is gone


# --- long inputs, grids -----------------------------------------------------------------------------


def test_long_maps_are_pooled_with_a_note_and_rows_still_sum_to_one():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 10, 10))
    weights = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    collector = AttentionCollector(max_side=4)
    collector.add("layer", weights)
    result = collector.finish("test", [f"w{i}" for i in range(10)])
    layer = result.layers[0]
    assert layer.block == 3 and layer.shape == (2, 4, 4)
    np.testing.assert_allclose(layer.weights.astype(np.float32).sum(-1), 1.0, atol=FP16)
    expected = weights[:, 0:3, 0:3].sum(-1).sum(-1) / 3  # rows averaged, keys summed over the first block
    np.testing.assert_allclose(layer.weights[:, 0, 0].astype(np.float32), expected, atol=FP16)
    assert layer.key_tokens[0] == "w0…w2" and layer.key_tokens[-1] == "w9…w9"
    assert any("downsampled" in note for note in result.notes)
    np.testing.assert_allclose(pool_map(weights[:, :9, :9], 3)[0, 1, 2], weights[0, 3:6, 6:9].sum() / 3, atol=1e-6)


def test_patch_grid_finds_the_class_token_and_the_grid():
    assert patch_grid(50, (28, 28)) == ((7, 7), 1)
    assert patch_grid(197, (224, 224), patch=16) == ((14, 14), 1)
    assert patch_grid(49, (28, 28)) == ((7, 7), 0)
    assert patch_grid(21, (28, 28)) is None
    collector = AttentionCollector()
    rng = np.random.default_rng(1)
    w = rng.random((2, 50, 50))
    w /= w.sum(-1, keepdims=True)
    collector.add("encoder.layers.0.self_attn", w)
    result = collector.finish("test", (), kind="image", image=np.zeros((28, 28)), image_hw=(28, 28))
    assert result.grid == (7, 7) and result.prefix == 1 and result.tokens[:2] == ("[CLS]", "0,0")
    np.testing.assert_allclose(result.cls_grid(0, head=1), w[1, 0, 1:].reshape(7, 7), atol=FP16)
    np.testing.assert_allclose(result.cls_grid(rollout=True), result.rollout()[-1][0, 1:].reshape(7, 7), atol=1e-6)


def test_zoo_vit_reaches_its_heldout_bar_and_its_grid_is_found():
    from analyzers import samples
    from analyzers.explain.inputs import sample_input
    from tests.zoo_helpers import zoo_or_skip

    entry = zoo_or_skip("digits_vit_torch")
    live = load_live_model(entry.file)
    split = samples.zoo_module("data").digits_split()
    x = torch.from_numpy(split.x_test.astype("float32") / 255.0)[:, None]
    with torch.no_grad():
        accuracy = float((live.module(x).argmax(1).numpy() == split.y_test).mean())
    assert accuracy >= 0.90 and accuracy == pytest.approx(entry.heldout, abs=1e-4)
    result = drive(live.attention(sample_input(entry)))
    assert result.route == "torch-mha" and len(result.layers) == 3 and result.heads == 4
    assert result.grid == (7, 7) and result.prefix == 1 and result.cls_grid().shape == (7, 7)


def test_transformer_decoder_layers_give_causal_self_and_labelled_cross_attention(tmp_path):
    from tests.attention_fixtures import Seq2Seq

    torch.manual_seed(8)
    model = Seq2Seq().eval()
    path = tmp_path / "seq2seq.pt"
    torch.save(model, path)
    ids = np.array([3, 7, 1, 9, 4, 6])
    live = load_live_model(path, LoadOptions(trust=True))
    result = drive(live.attention(text_input(ids)))
    kinds = [(layer.name, layer.kind, layer.stack, layer.causal, layer.shape) for layer in result.layers]
    assert kinds == [("encoder.layers.0.self_attn", "self", "encoder", False, (2, 6, 6)),
                     ("decoder.layers.0.self_attn", "self", "decoder", True, (2, 5, 5)),
                     ("decoder.layers.0.multihead_attn", "cross", "decoder", False, (2, 5, 6)),
                     ("decoder.layers.1.self_attn", "self", "decoder", True, (2, 5, 5)),
                     ("decoder.layers.1.multihead_attn", "cross", "decoder", False, (2, 5, 6))]
    assert hook_count(live.module) == 0
    # The reference: each decoder layer's inputs recorded, then its modules asked directly (post-norm layers).
    x = torch.from_numpy(ids[None])
    seen = []
    handles = [layer.register_forward_pre_hook(lambda _m, args, kw: seen.append((args, kw)), with_kwargs=True)
               for layer in model.decoder.layers]
    try:
        with torch.no_grad():
            model(x)
            mask = torch.nn.Transformer.generate_square_subsequent_mask(5)
            for i, layer in enumerate(model.decoder.layers):
                (tgt, memory), _ = seen[i]
                _, self_w = layer.self_attn(tgt, tgt, tgt, attn_mask=mask, need_weights=True, average_attn_weights=False)
                h = layer.norm1(tgt + layer.self_attn(tgt, tgt, tgt, attn_mask=mask, need_weights=False)[0])
                _, cross_w = layer.multihead_attn(h, memory, memory, need_weights=True, average_attn_weights=False)
                by_name = {layer_.name: layer_ for layer_ in result.layers}
                np.testing.assert_allclose(by_name[f"decoder.layers.{i}.self_attn"].weights.astype(np.float32),
                                           self_w[0].numpy(), atol=FP16)
                np.testing.assert_allclose(by_name[f"decoder.layers.{i}.multihead_attn"].weights.astype(np.float32),
                                           cross_w[0].numpy(), atol=FP16)
    finally:
        for h in handles:
            h.remove()
    assert not np.triu(result.layers[1].weights.astype(np.float32), 1).any()
    assert result.rollout_indices() == [0] and result.rollout_indices("decoder") == [1, 3]


def test_hf_vision_transformer_grid_from_its_config(tmp_path):
    from transformers import ViTConfig, ViTForImageClassification

    torch.manual_seed(9)
    config = ViTConfig(image_size=32, patch_size=8, num_channels=3, hidden_size=32, num_hidden_layers=2,
                       num_attention_heads=4, intermediate_size=64, num_labels=3)
    folder = save_hf(ViTForImageClassification(config).eval(), tmp_path / "vit")
    x = np.random.default_rng(0).random((1, 3, 32, 32)).astype(np.float32)
    live = load_live_model(folder)
    result = drive(live.attention(ModelInput("image", x, "random", layout="NCHW")))
    assert result.route == "hf" and result.grid == (4, 4) and result.prefix == 1 and result.tokens[:2] == ("[CLS]", "0,0")
    ref = ViTForImageClassification.from_pretrained(str(folder), attn_implementation="eager").eval()
    with torch.no_grad():
        theirs = ref(pixel_values=torch.from_numpy(x), output_attentions=True).attentions
    np.testing.assert_allclose(result.cls_grid(1, head=2), theirs[1][0, 2, 0, 1:].reshape(4, 4).numpy(), atol=FP16)
    assert hook_count(live.module) == 0
