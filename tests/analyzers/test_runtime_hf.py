"""Hugging Face folders run offline: a QA span from the logits, labels from config, IG over the word embeddings."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.slow
transformers = pytest.importorskip("transformers")

from analyzers.explain.attribution import AttributionRequest, compute  # noqa: E402
from analyzers.loaders import LoadOptions  # noqa: E402
from analyzers.runtime import load_live_model  # noqa: E402

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "what", "is", "the", "capital", "of", "france", "paris",
         "?", ".", "city", "a", "big", "it", "river", "seine", "good", "bad", "movie", "was"]


def _folder(tmp_path, cls_name: str, **config):
    from transformers import BertConfig, BertTokenizerFast

    folder = tmp_path / cls_name
    folder.mkdir()
    (tmp_path / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    BertTokenizerFast(vocab_file=str(tmp_path / "vocab.txt")).save_pretrained(folder)
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(VOCAB), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=32, max_position_embeddings=64, architectures=[cls_name], **config)
    model = getattr(transformers, cls_name)(cfg).eval()
    model.save_pretrained(folder)
    return folder, model


def test_qa_folder_answers_the_best_span_and_ig_equals_captum(tmp_path):
    from captum.attr import LayerIntegratedGradients

    folder, model = _folder(tmp_path, "BertForQuestionAnswering")
    live = load_live_model(folder, LoadOptions(), "cpu")
    assert (live.format, live.task, live.hint.kind) == ("hf", "qa", "qa")
    inp = live.encoder("what is the capital of france? || paris is the capital of france .")
    assert inp.kind == "qa" and inp.tokens[0] == "[CLS]" and set(inp.extras) == {"attention_mask", "token_type_ids"}
    ids = torch.from_numpy(inp.array)
    mask = torch.from_numpy(inp.extras["attention_mask"])
    types = torch.from_numpy(inp.extras["token_type_ids"])
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask, token_type_ids=types)
    s, e = out.start_logits[0].numpy(), out.end_logits[0].numpy()
    ctx = [i for i in range(len(inp.tokens)) if inp.context_mask[i]]
    best = max(((a, b) for a in ctx for b in ctx if a <= b < a + 30), key=lambda ab: s[ab[0]] + e[ab[1]])
    pred = live.predict(inp)
    assert (pred.answer.start, pred.answer.end) == best
    assert pred.answer.text == inp.context[inp.offsets[best[0]][0]: inp.offsets[best[1]][1]]

    result = compute(live, inp, AttributionRequest("ig", steps=32))
    assert result.target == best[0] and result.map.shape == (len(inp.tokens),)

    def start_logits(input_ids, attention_mask, token_type_ids):
        return model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).start_logits

    special = np.isin(inp.tokens, ["[CLS]", "[SEP]"])
    baseline = torch.from_numpy(np.where(special, inp.array[0], 0)[None])
    attr, delta = LayerIntegratedGradients(start_logits, model.bert.embeddings.word_embeddings).attribute(
        ids, baselines=baseline, target=best[0], additional_forward_args=(mask, types), n_steps=32,
        internal_batch_size=16, return_convergence_delta=True)
    np.testing.assert_allclose(result.map, attr.sum(-1)[0].detach().numpy(), rtol=1e-4, atol=1e-6)
    assert result.delta == pytest.approx(float(delta[0]), abs=1e-5)


def test_classification_folder_labels_come_from_the_config(tmp_path):
    folder, model = _folder(tmp_path, "BertForSequenceClassification", id2label={0: "negative", 1: "positive"},
                            label2id={"negative": 0, "positive": 1})
    live = load_live_model(folder, LoadOptions(), "cpu")
    assert live.task == "classify" and live.labels == ("negative", "positive")
    inp = live.encoder("the movie was good")
    with torch.no_grad():
        logits = model(**{k: torch.from_numpy(v) for k, v in {"input_ids": inp.array, **inp.extras}.items()}).logits
    pred = live.predict(inp, 2)
    assert pred.top[0].label == ("negative", "positive")[int(logits.argmax())]
    assert live.embedding_layer() == "bert.embeddings.word_embeddings"


def test_a_causal_lm_predicts_the_next_token_and_attributes_it(tmp_path):
    """A decoder LM's prediction is the next token: softmax of the last position's logits, labelled with the
    tokenizer's vocabulary; IG explains that token's logit over the prompt's tokens."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    folder = tmp_path / "tiny-llama"
    folder.mkdir()
    words = Tokenizer(models.WordLevel({w: i for i, w in enumerate(VOCAB)}, unk_token="[UNK]"))
    words.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=words, unk_token="[UNK]", pad_token="[PAD]").save_pretrained(folder)
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(VOCAB), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64, pad_token_id=0,
                      bos_token_id=2, eos_token_id=3)
    model = LlamaForCausalLM(cfg).eval()
    model.save_pretrained(folder)
    live = load_live_model(folder, LoadOptions(), "cpu")
    inp = live.encoder("what is the capital of france ?")
    assert inp.tokens == ("what", "is", "the", "capital", "of", "france", "?")
    pred = live.predict(inp, 3)
    with torch.no_grad():
        probs = torch.softmax(model(torch.from_numpy(inp.array)).logits[0, -1], -1).numpy()
    order = np.argsort(-probs)[:3]
    assert pred.kind == "classes" and [c.index for c in pred.top] == list(order)
    assert [c.label for c in pred.top] == [VOCAB[i] for i in order]
    assert pred.top[0].probability == pytest.approx(float(probs[order[0]]), rel=1e-5)
    ig = compute(live, inp, AttributionRequest("ig"))
    assert ig.target == int(order[0]) and ig.target_label == VOCAB[order[0]]
    assert ig.map.shape == (len(inp.tokens),) and ig.completeness.relative < 0.01
