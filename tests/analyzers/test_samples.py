"""The sample zoo: manifest, input preparation, and the PyTorch / transformers models re-checked.

Each model is loaded with its own framework; its parameter count is compared with the manifest and
with LayerScope's summary, and a held-out set regenerated from the zoo's seeds is re-scored, so a
stale or untrained file fails. The Keras models are checked in test_zoo_keras.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from analyzers import samples as S
from analyzers.errors import LayerScopeError, UnsupportedFile
from analyzers.loaders import LoadOptions, open_model
from analyzers.tasks import drive

MODELS = {m.id: m for m in S.load_manifest()}
EXPECTED_IDS = {"digits_cnn_keras", "digits_cnn_torch", "text_cnn_keras", "attention_seq_torch",
                "gan_generator_keras", "gan_discriminator_keras", "transformer_text_torch", "bert_qa",
                "digits_cnn_finetuned_keras", "digits_cnn_pruned_keras", "digits_cnn_int8_keras", "digits_vit_torch"}


@pytest.fixture(scope="module")
def data():
    """The zoo's data generators (numpy; scikit-learn for the digits)."""
    return S.zoo_module("data")


def torch_model(entry: S.SampleModel):
    """The entry's state_dict loaded strictly into its --arch class, in eval mode."""
    import torch

    from analyzers.loaders.arch import instantiate, parse_arch

    model = instantiate(parse_arch(S.resolved_arch(entry), entry.arch_kwargs), "cpu")
    model.load_state_dict(torch.load(entry.file, map_location="cpu", weights_only=True), strict=True)
    return model.eval()


# ---------------------------------------------------------------------------------------------
# Manifest


def test_manifest_lists_six_seed_problems_with_existing_files():
    assert set(MODELS) == EXPECTED_IDS
    assert {m.seed_problem for m in MODELS.values()} == {1, 2, 3, 4, 5, 6}
    for m in MODELS.values():
        assert m.file.is_absolute() and m.file.exists(), m.id
        assert m.framework in ("keras", "torch")
        assert m.task in ("image classification", "text classification", "sequence classification", "generation",
                          "extractive QA")
        assert m.default_sample in m.samples
        assert m.params > 0 and m.heldout_size > 0
        if m.input.kind in S.FILE_KINDS:
            assert all(Path(s).is_absolute() and Path(s).exists() for s in m.samples), m.id
        if m.framework == "torch" and m.file.suffix == ".pt":
            assert m.arch and m.arch.startswith("assets/zoo/torch_models.py:")
            assert Path(S.resolved_arch(m).rpartition(":")[0]).exists()
        for path in (m.input.vocab, m.input.tokenizer):
            assert path is None or path.exists(), m.id


def test_recorded_scores_meet_their_bars():
    for m in MODELS.values():
        assert m.bar is not None and m.heldout is not None, m.id
        assert m.heldout >= m.bar, f"{m.id}: {m.metric} {m.heldout} < {m.bar}"
    assert MODELS["digits_cnn_keras"].bar >= 0.95 and MODELS["digits_cnn_torch"].bar >= 0.95
    assert MODELS["text_cnn_keras"].bar >= 0.95 and MODELS["transformer_text_torch"].bar >= 0.95
    assert MODELS["bert_qa"].bar >= 0.90


def test_assets_stay_under_20_mb():
    total = sum(f.stat().st_size for f in S.ASSETS.rglob("*") if f.is_file() and "__pycache__" not in f.parts)
    assert total < 20 * 1024 * 1024


def test_find_default_and_lookup():
    default = S.default_model()
    assert default.id == "digits_cnn_keras" and default.framework == "keras"
    assert default.input.kind == "image"
    assert S.find_sample_model(default.file) == default
    assert S.find_sample_model(Path("/nonexistent/model.pt")) is None
    with pytest.raises(LayerScopeError):
        S.sample_model("no_such_model")


def test_docs_table_is_generated_from_the_manifest():
    table = S.samples_markdown()
    assert (S.REPO / "docs" / "samples.md").read_text(encoding="utf-8") == table, "run `make samples`"
    for m in MODELS.values():
        assert m.title in table and f"{m.params:,}" in table
    readme = (S.REPO / "README.md").read_text(encoding="utf-8")
    assert S.README_BEGIN in readme and S.readme_with_samples(readme, table) == readme, "run `make samples`"


def test_manifest_errors_are_one_sentence(tmp_path):
    with pytest.raises(UnsupportedFile, match="missing"):
        S.load_manifest(tmp_path / "samples.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"schema": "other"}')
    with pytest.raises(UnsupportedFile, match="schema"):
        S.load_manifest(bad)
    bad.write_text("{not json")
    with pytest.raises(UnsupportedFile, match="JSON"):
        S.load_manifest(bad)


def test_relative_paths_resolve_against_assets(tmp_path):
    doc = json.loads(S.MANIFEST.read_text(encoding="utf-8"))
    raw = {m["id"]: m for m in doc["models"]}
    for m in MODELS.values():
        assert not Path(raw[m.id]["file"]).is_absolute()
        assert m.file == (S.ASSETS / raw[m.id]["file"]).resolve()


# ---------------------------------------------------------------------------------------------
# Input preparation


def _png(path: Path, pixels: np.ndarray) -> Path:
    from PIL import Image

    Image.fromarray(pixels.astype(np.uint8)).save(path)
    return path


def test_prepare_image_layouts_and_scaling(tmp_path):
    pixels = np.zeros((28, 28), dtype=np.uint8)
    pixels[10:18, 12:16] = 255
    path = _png(tmp_path / "d.png", pixels)
    nhwc = S.prepare_image(path, MODELS["digits_cnn_keras"].input)
    nchw = S.prepare_image(path, MODELS["digits_cnn_torch"].input)
    gan = S.prepare_image(path, MODELS["gan_discriminator_keras"].input)
    assert nhwc.shape == (28, 28, 1) and nchw.shape == (1, 28, 28)
    assert nhwc.dtype == np.float32 and np.array_equal(nhwc[:, :, 0], nchw[0])
    assert nhwc.max() == pytest.approx(1.0) and nhwc.min() == 0.0
    assert gan.min() == pytest.approx(-1.0) and gan.max() == pytest.approx(1.0)


def test_prepare_image_inverts_dark_on_light_and_resizes_rgb(tmp_path):
    light = np.zeros((28, 28), dtype=np.uint8)
    light[6:22, 12:16] = 255
    spec = MODELS["digits_cnn_keras"].input
    want = S.prepare_image(_png(tmp_path / "light.png", light), spec)
    got = S.prepare_image(_png(tmp_path / "dark.png", 255 - light), spec)
    np.testing.assert_allclose(got, want)
    rgb = np.repeat((255 - light)[:, :, None], 3, axis=2)
    big = np.kron(rgb, np.ones((4, 4, 1), dtype=np.uint8))  # 112x112 RGB
    x = S.prepare_image(_png(tmp_path / "big.png", big), spec)
    assert x.shape == (28, 28, 1)
    assert float(np.abs(x - want).mean()) < 0.05


def test_prepare_image_rejects_non_images(tmp_path):
    junk = tmp_path / "x.png"
    junk.write_bytes(b"not an image")
    with pytest.raises(UnsupportedFile, match="image"):
        S.prepare_image(junk, MODELS["digits_cnn_keras"].input)
    with pytest.raises(UnsupportedFile, match="no such image"):
        S.prepare_image(tmp_path / "missing.png", MODELS["digits_cnn_keras"].input)


def test_encode_text_pads_truncates_and_maps_unknown_words():
    spec = MODELS["text_cnn_keras"].input
    vocab = S.read_vocab(spec.vocab)
    ids, tokens = S.encode_text("It was WONDERFUL, zxqv!", spec)
    assert ids.shape == spec.shape and ids.dtype == np.int32
    assert tokens == ["it", "was", "wonderful", ",", "zxqv", "!"]
    assert list(ids[:6]) == [vocab["it"], vocab["was"], vocab["wonderful"], vocab[","], spec.unk_id, spec.unk_id]
    assert (ids[6:] == spec.pad_id).all()
    long_ids, long_tokens = S.encode_text("great " * 200, spec)
    assert len(long_tokens) == spec.max_len and (long_ids == vocab["great"]).all()
    t_ids, _ = S.encode_text("It was WONDERFUL, zxqv!", MODELS["transformer_text_torch"].input)
    assert t_ids.dtype == np.int64 and np.array_equal(t_ids, ids)


def test_cue_words_are_recorded_and_in_the_vocabulary():
    spec = MODELS["text_cnn_keras"].input
    vocab = S.read_vocab(spec.vocab)
    for entry in (MODELS["text_cnn_keras"], MODELS["transformer_text_torch"]):
        assert set(entry.cue_words) == set(entry.labels)
        for words in entry.cue_words.values():
            assert words and all(w in vocab for w in words)
        for sample, label in zip(entry.samples, entry.extras["sample_labels"]):
            tokens = S.tokenize(sample)
            assert any(t in entry.cue_words[label] for t in tokens)


def test_prepare_input_for_every_entry_matches_its_spec():
    for m in MODELS.values():
        x = S.prepare_input(m)
        assert x.shape == m.input.shape, m.id
        assert x.dtype == np.dtype(m.input.dtype), m.id


def test_prepare_input_rejects_wrong_arrays_and_qa_text(tmp_path):
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.zeros((3, 3), dtype=np.float32))
    with pytest.raises(LayerScopeError, match="shape"):
        S.prepare_input(MODELS["attention_seq_torch"], str(wrong))
    with pytest.raises(LayerScopeError, match="JSON"):
        S.prepare_input(MODELS["bert_qa"], "where is the answer?")


# ---------------------------------------------------------------------------------------------
# PyTorch state_dicts: counts, held-out scores, samples


@pytest.mark.parametrize("model_id", ["digits_cnn_torch", "attention_seq_torch", "transformer_text_torch"])
def test_torch_counts_equal_manifest_and_layerscope(model_id):
    entry = MODELS[model_id]
    model = torch_model(entry)
    count = sum(p.numel() for p in model.parameters())
    assert count == entry.params
    summary = drive(open_model(entry.file, LoadOptions(arch=S.resolved_arch(entry), arch_kwargs=entry.arch_kwargs)))
    assert summary.totals.params == count
    assert summary.source.framework == "torch"


def test_digits_torch_heldout_and_samples(data):
    import torch

    entry = MODELS["digits_cnn_torch"]
    model = torch_model(entry)
    split = data.digits_split()
    with torch.no_grad():
        pred = model(torch.from_numpy(split.x_test.astype(np.float32) / 255.0)[:, None]).argmax(1).numpy()
        acc = float((pred == split.y_test).mean())
        assert len(split.y_test) == entry.heldout_size
        assert acc == pytest.approx(entry.heldout, abs=0.005) and acc >= entry.bar
        batch = torch.from_numpy(np.stack([S.prepare_input(entry, s) for s in entry.samples]))
        labels = [entry.labels[i] for i in model(batch).argmax(1).tolist()]
    assert sum(a == b for a, b in zip(labels, entry.extras["sample_labels"])) >= len(labels) - 1


def test_attention_seq_heldout_and_attention_on_the_marker(data):
    import torch

    entry = MODELS["attention_seq_torch"]
    model = torch_model(entry)
    x, y, pos = data.marker_sequences(entry.heldout_size, data.HELDOUT_SEED)
    with torch.no_grad():
        logits, weights = model(torch.from_numpy(x), return_attention=True)
        plain = model(torch.from_numpy(x[:8]))
    acc = float((logits.argmax(1).numpy() == y).mean())
    assert acc == pytest.approx(entry.heldout, abs=0.005) and acc >= entry.bar
    assert weights.shape == (len(x), x.shape[1])
    np.testing.assert_allclose(weights.sum(1).numpy(), 1.0, rtol=1e-5)
    assert float((weights.argmax(1).numpy() == pos).mean()) >= 0.9
    torch.testing.assert_close(plain, logits[:8])
    assert model.last_attention.shape == (8, x.shape[1])
    for sample, label, marker in zip(entry.samples, entry.extras["sample_labels"], entry.extras["sample_markers"]):
        xs = torch.from_numpy(S.prepare_input(entry, sample))[None]
        with torch.no_grad():
            out, w = model(xs, return_attention=True)
        assert entry.labels[int(out.argmax())] == label
        assert int(w.argmax()) == marker


def test_transformer_text_heldout_attention_and_cue_words(data):
    import torch

    entry = MODELS["transformer_text_torch"]
    model = torch_model(entry)
    texts, y = data.sentiment_dataset(entry.heldout_size, data.HELDOUT_SEED)
    ids = torch.from_numpy(np.stack([S.encode_text(t, entry.input)[0] for t in texts]))
    with torch.no_grad():
        logits = model(ids)
        again, maps = model(ids[:16], return_attention=True)
    acc = float((logits.argmax(1).numpy() == y).mean())
    assert acc == pytest.approx(entry.heldout, abs=0.005) and acc >= entry.bar
    torch.testing.assert_close(again, logits[:16], atol=1e-4, rtol=1e-4)
    heads = entry.arch_kwargs["nhead"]
    assert len(maps) == entry.arch_kwargs["num_layers"]
    assert all(tuple(m.shape) == (16, heads, entry.input.max_len, entry.input.max_len) for m in maps)
    pad = (ids[:16] == entry.input.pad_id)[:, None, None, :].expand_as(maps[0])
    assert float(maps[0][pad].abs().max()) == 0.0  # padding is never attended to

    # Occlusion: hiding the cue words removes the evidence; hiding as many filler words does not.
    vocab = S.read_vocab(entry.input.vocab)
    cues = {vocab[w] for words in entry.cue_words.values() for w in words}
    sub = ids[:64].clone()
    is_cue = torch.tensor(np.isin(sub.numpy(), list(cues)))
    filler = (~is_cue) & (sub != entry.input.pad_id)
    no_cue, no_filler = sub.clone(), sub.clone()
    no_cue[is_cue] = entry.input.unk_id
    rng = np.random.default_rng(0)
    for row in range(len(sub)):
        cols = np.flatnonzero(filler[row].numpy())
        no_filler[row, rng.choice(cols, size=int(is_cue[row].sum()), replace=False)] = entry.input.unk_id
    with torch.no_grad():
        def p_true(batch):
            p = torch.softmax(model(batch), 1).numpy()
            return p[np.arange(len(p)), y[:64]]
        base, without_cues, without_filler = p_true(sub), p_true(no_cue), p_true(no_filler)
    assert (base - without_cues).mean() > 0.3
    assert (base - without_filler).mean() < 0.1
    for sample, label in zip(entry.samples, entry.extras["sample_labels"]):
        with torch.no_grad():
            out = model(torch.from_numpy(S.prepare_input(entry, sample))[None])
        assert entry.labels[int(out.argmax())] == label


# ---------------------------------------------------------------------------------------------
# BERT question answering (Hugging Face folder)


@pytest.fixture(scope="module")
def bert():
    """The QA model and tokenizer, loaded offline from the bundled folder."""
    from transformers import BertForQuestionAnswering, BertTokenizerFast

    folder = MODELS["bert_qa"].file
    model = BertForQuestionAnswering.from_pretrained(folder, local_files_only=True).eval()
    return model, BertTokenizerFast.from_pretrained(folder, local_files_only=True)


def test_bert_folder_counts_and_tokenizer(bert):
    entry = MODELS["bert_qa"]
    model, tokenizer = bert
    assert (entry.file / "config.json").exists() and (entry.file / "model.safetensors").exists()
    count = sum(p.numel() for p in model.parameters())
    assert count == entry.params
    assert model.config.num_hidden_layers == 2 and model.config.hidden_size == 64
    summary = drive(open_model(entry.file))
    assert summary.totals.params == count
    question, context = S.parse_qa_sample(entry.default_sample)
    enc = S.encode_qa(question, context, entry.input)
    hf = tokenizer(question, context, truncation="only_second", max_length=entry.input.max_len,
                   padding="max_length")
    assert list(enc.input_ids) == hf["input_ids"]
    assert list(enc.token_type_ids) == hf["token_type_ids"]
    assert list(enc.attention_mask) == hf["attention_mask"]
    assert any(t.startswith("##") for t in tokenizer.get_vocab())  # a real WordPiece vocabulary


def test_bert_heldout_exact_match_and_samples(bert, data):
    import torch

    entry = MODELS["bert_qa"]
    model, _ = bert
    held = data.qa_dataset(entry.heldout_size, data.HELDOUT_SEED)
    encs = [S.encode_qa(ex.question, ex.context, entry.input) for ex in held]
    with torch.no_grad():
        out = model(input_ids=torch.from_numpy(np.stack([e.input_ids for e in encs])),
                    token_type_ids=torch.from_numpy(np.stack([e.token_type_ids for e in encs])),
                    attention_mask=torch.from_numpy(np.stack([e.attention_mask for e in encs])))
    answers = [S.qa_answer(out.start_logits[i].numpy(), out.end_logits[i].numpy(), enc, ex.context)
               for i, (ex, enc) in enumerate(zip(held, encs))]
    em = float(np.mean([data.normalize_answer(a) == data.normalize_answer(ex.answer) for a, ex in zip(answers, held)]))
    assert em == pytest.approx(entry.heldout, abs=0.005) and em >= entry.bar
    for i, (sample, want) in enumerate(zip(entry.samples, entry.extras["sample_answers"])):
        question, context = S.parse_qa_sample(sample)
        assert (question, context) == (held[i].question, held[i].context)
        ids = torch.from_numpy(S.prepare_input(entry, sample))[None]
        assert ids.shape == (1, *entry.input.shape)
        assert data.normalize_answer(answers[i]) == data.normalize_answer(want)


# ---------------------------------------------------------------------------------------------
# The build script's own helpers (it is never run by tests: it trains for minutes)


@pytest.fixture(scope="module")
def build_script():
    """assets/build_samples.py imported as a module (argument parsing and training do not run)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("layerscope_build_samples", S.ASSETS / "build_samples.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_build_script_names_cover_the_manifest(build_script):
    ids = {i for *_, ids in build_script.BUILDERS.values() for i in ids}
    assert ids == EXPECTED_IDS == set(build_script.ORDER)
    assert build_script.resolve_names("gan_generator_keras,bert_qa") == ["gan_keras", "bert_qa"]
    assert build_script.resolve_names(None) == list(build_script.BUILDERS)
    with pytest.raises(SystemExit):
        build_script.resolve_names("nope")


def test_build_script_writes_the_manifest_it_reads(build_script):
    doc = json.loads(S.MANIFEST.read_text(encoding="utf-8"))
    assert json.loads(build_script.to_json(doc)) == doc
    assert S.MANIFEST.read_text(encoding="utf-8") == build_script.to_json(doc) + "\n"
    assert [m["id"] for m in doc["models"]] == list(build_script.ORDER)
