"""PyTorch half of the sample zoo: the digits CNN port, seed problems 3 (self-attention), 5 (Transformer)
and 6 (BERT question answering).

State dicts are saved with `torch.save(model.state_dict())`; their classes live in
assets/zoo/torch_models.py (the manifest's `arch`). BERT is saved as a Hugging Face folder.
"""

from __future__ import annotations

import json
import shutil
from typing import Any

import numpy as np

from analyzers.samples import InputSpec, encode_qa, qa_answer, zoo_module

common = zoo_module("common")
data = zoo_module("data")
models = zoo_module("torch_models")
keras_side = zoo_module("build_keras")  # shared manifest fields only; never imports TensorFlow here


def torch_module(threads: int = 2) -> Any:
    """Import torch limited to `threads` CPU threads."""
    import torch

    torch.set_num_threads(threads)
    return torch


def fit(torch: Any, model: Any, batches: Any, epochs: int, lr: float, seed: int) -> None:
    """Adam with a one-cycle schedule over `batches(generator)` -> iterable of (inputs, targets)."""
    g = torch.Generator().manual_seed(seed)
    steps = epochs * sum(1 for _ in batches(torch.Generator().manual_seed(0)))
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.15)
    loss_fn = torch.nn.CrossEntropyLoss()
    model.train()
    for _ in range(epochs):
        for x, y in batches(g):
            opt.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()
            sched.step()
    model.eval()


def minibatches(torch: Any, x: Any, y: Any, size: int):
    """A function giving shuffled (x, y) batches from a torch.Generator, for `fit`."""
    def batches(g: Any):
        perm = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), size):
            idx = perm[i:i + size]
            yield x[idx], y[idx]
    return batches


def count(model: Any) -> int:
    """PyTorch's own parameter count."""
    return int(sum(p.numel() for p in model.parameters()))


# ---------------------------------------------------------------------------------------------
# 1b. The digits CNN, ported


def build_digits_torch(threads: int = 2) -> list[dict]:
    """The Keras digits CNN's architecture in PyTorch, trained on the same split; 95% held-out."""
    torch = torch_module(threads)
    torch.manual_seed(11)
    split = data.digits_split()
    pngs = common.digit_sample_pngs(split.x_test, split.y_test)
    x_train = torch.from_numpy(split.x_train.astype("float32") / 255.0)[:, None]
    x_test = torch.from_numpy(split.x_test.astype("float32") / 255.0)[:, None]
    model = models.DigitCNN()
    common.log("digits_cnn_torch: training 15 epochs on 1,437 digits")
    fit(torch, model, minibatches(torch, x_train, torch.from_numpy(split.y_train), 32), 15, 2e-3, 11)
    with torch.no_grad():
        acc = float((model(x_test).argmax(1).numpy() == split.y_test).mean())
    common.log(f"digits_cnn_torch: held-out accuracy {acc:.4f}")
    common.require(acc >= 0.95, f"digits_cnn_torch reached {acc:.3f} < 0.95")
    path = common.MODELS / "digits_cnn_torch.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    spec = {**keras_side.IMAGE_INPUT, "shape": [1, 28, 28], "layout": "NCHW"}
    return [{
        "id": "digits_cnn_torch", "title": "Digits CNN (PyTorch port)", "seed_problem": 1, "file": common.rel(path),
        "framework": "torch", "task": "image classification", "labels": [str(i) for i in range(10)],
        "input": spec, "samples": [common.rel(p) for p in pngs], "default_sample": common.rel(pngs[3]),
        "arch": f"{common.ZOO_ARCH}:DigitCNN", "arch_kwargs": {}, "metric": "accuracy", "heldout": round(acc, 4),
        "bar": 0.95, "heldout_size": len(split.y_test), "params": count(model),
        "notes": "The Keras digits CNN's architecture as a PyTorch state_dict; outputs logits (no softmax).",
        "extras": {"output": "logits", "sample_labels": [str(i) for i in range(10)]},
    }]


# ---------------------------------------------------------------------------------------------
# 3. Self-attention sequence classifier


def build_attention_seq_torch(threads: int = 2) -> list[dict]:
    """Seed problem 3, fixed, on marker sequences: the class is the sign at the one marked step."""
    torch = torch_module(threads)
    torch.manual_seed(3)
    x, y, _ = data.marker_sequences(8000, data.TRAIN_SEED)
    xt, yt, pos = data.marker_sequences(1000, data.HELDOUT_SEED)
    model = models.SelfAttentionClassifier(data.SEQ_FEATURES, 50, 2)
    common.log("attention_seq_torch: training 6 epochs on 8,000 marker sequences")
    fit(torch, model, minibatches(torch, torch.from_numpy(x), torch.from_numpy(y), 64), 6, 1e-2, 3)
    with torch.no_grad():
        logits, weights = model(torch.from_numpy(xt), return_attention=True)
    acc = float((logits.argmax(1).numpy() == yt).mean())
    on_marker = float((weights.argmax(1).numpy() == pos).mean())
    common.log(f"attention_seq_torch: held-out accuracy {acc:.4f}; attention peaks on the marker {on_marker:.3f}")
    common.require(acc >= 0.95, f"attention_seq_torch reached {acc:.3f} < 0.95")
    path = common.MODELS / "attention_seq_torch.pt"
    torch.save(model.state_dict(), path)
    picks = [int(np.flatnonzero(yt == label)[k]) for label, k in ((1, 0), (0, 0), (1, 1), (0, 1))]
    files = []
    for i in picks:
        name = f"seq_{data.SEQUENCE_LABELS[yt[i]]}_at{pos[i]:02d}.npy"
        files.append(common.save_npy(xt[i], common.SAMPLES / "sequences" / name))
    return [{
        "id": "attention_seq_torch", "title": "Self-attention sequence classifier (PyTorch)", "seed_problem": 3,
        "file": common.rel(path), "framework": "torch", "task": "sequence classification",
        "labels": list(data.SEQUENCE_LABELS),
        "input": {"kind": "sequence", "shape": [data.SEQ_LEN, data.SEQ_FEATURES], "dtype": "float32"},
        "samples": [common.rel(p) for p in files], "default_sample": common.rel(files[0]),
        "arch": f"{common.ZOO_ARCH}:SelfAttentionClassifier",
        "arch_kwargs": {"input_dim": data.SEQ_FEATURES, "hidden_dim": 50, "num_classes": 2},
        "metric": "accuracy", "heldout": round(acc, 4), "bar": 0.95, "heldout_size": len(yt), "params": count(model),
        "notes": "20 steps of 10 noisy features; one step has feature 0 = 4 (the marker) and the class is the "
                 "sign of feature 1 there. The attention weights should peak on the marker step.",
        "extras": {"output": "logits", "marker_feature": data.MARKER_FEATURE, "sign_feature": data.SIGN_FEATURE,
                   "attention_on_marker": round(on_marker, 4),
                   "sample_labels": [data.SEQUENCE_LABELS[yt[i]] for i in picks],
                   "sample_markers": [int(pos[i]) for i in picks]},
    }]


# ---------------------------------------------------------------------------------------------
# 5. Transformer text classifier


def transformer_text_loss(torch: Any, model: Any, ids: np.ndarray, shown: np.ndarray, target: np.ndarray,
                          filler: np.ndarray) -> Any:
    """The recipe in zoo/data.py on one batch: soft-target cross-entropy, centred logits, and the filler
    words' squared IG integrand at a random point of the path from the baseline (zero token embeddings,
    positions and padding mask kept, as LayerIntegratedGradients over `embedding` sees it)."""
    tids = torch.from_numpy(ids)
    pad_mask = tids == model.pad_id
    tokens = model.embedding(tids) * torch.from_numpy(shown)[..., None].float()  # hidden: the baseline
    positions = model.position(torch.arange(tids.shape[1]))[None]
    logits = model.forward_embedded(tokens + positions, pad_mask)
    target = torch.from_numpy(target)
    loss = -(target * torch.log_softmax(logits, 1)).sum(1).mean()
    loss = loss + data.CENTRE_WEIGHT * (logits.sum(1) ** 2).mean()
    point = torch.rand(len(tids), 1, 1) * tokens
    out = model.forward_embedded(point + positions, pad_mask)
    (grad,) = torch.autograd.grad((out[:, 1] - out[:, 0]).sum(), point, create_graph=True)
    integrand = (grad * tokens).sum(-1)  # (batch, tokens)
    return loss + data.FILLER_PENALTY * ((integrand ** 2) * torch.from_numpy(filler)).sum(1).mean()


def build_transformer_text_torch(threads: int = 2) -> list[dict]:
    """Seed problem 5, fixed to an encoder-only classifier, on the text CNN's generated reviews.

    Trained with the recipe in zoo/data.py, so that Integrated Gradients finds the label in the cue words.
    """
    torch = torch_module(threads)
    torch.manual_seed(5)
    vocab = common.write_text_vocab(data.sentiment_corpus_words())
    n, epochs, batch, lr = 4000, 5, 32, 2e-3
    texts, _ = data.sentiment_training_set(n, data.TRAIN_SEED)
    held, yt = data.sentiment_dataset(1000, data.HELDOUT_SEED)
    x = keras_side.encode_all(texts, "int64")
    xt = torch.from_numpy(keras_side.encode_all(held, "int64"))
    pos_ids, neg_ids = data.cue_id_sets(vocab)
    cue_ids = np.concatenate([pos_ids, neg_ids])
    kwargs = {"vocab_size": len(vocab), "d_model": 64, "nhead": 4, "num_layers": 2, "dim_feedforward": 128,
              "max_len": common.TEXT_MAX_LEN, "num_classes": 2}
    model = models.TransformerTextClassifier(**kwargs)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * -(-n // batch), pct_start=0.15)
    rng = np.random.default_rng(5)
    common.log(f"transformer_text_torch: training {epochs} epochs on {n:,} generated reviews")
    model.train()
    for _ in range(epochs):
        perm = rng.permutation(n)
        for i in range(0, n, batch):
            ids = x[perm[i:i + batch]]
            ids = ids[:, :int((ids != 0).sum(1).max())]  # drop the all-padding tail: same result, less work
            ids, shown = data.augment_tokens(rng, ids, 0, 1)
            target = data.evidence_targets(np.where(shown, ids, 0), pos_ids, neg_ids)
            filler = (shown & (ids != 0) & ~np.isin(ids, cue_ids)).astype(np.float32)
            loss = transformer_text_loss(torch, model, ids, shown, target, filler)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    model.eval()
    with torch.no_grad():
        acc = float((model(xt).argmax(1).numpy() == yt).mean())
    common.log(f"transformer_text_torch: held-out accuracy {acc:.4f}")
    common.require(acc >= 0.95, f"transformer_text_torch reached {acc:.3f} < 0.95")
    path = common.MODELS / "transformer_text_torch.pt"
    torch.save(model.state_dict(), path)
    entry = {
        "id": "transformer_text_torch", "title": "Transformer text classifier (PyTorch)", "seed_problem": 5,
        "file": common.rel(path), "framework": "torch", "input": keras_side.text_input("int64"),
        "arch": f"{common.ZOO_ARCH}:TransformerTextClassifier", "arch_kwargs": kwargs, "heldout": round(acc, 4),
        "heldout_size": len(yt), "params": count(model), **keras_side.text_entry_common(),
    }
    entry["extras"] = {**entry["extras"], "output": "logits"}
    return [entry]


# ---------------------------------------------------------------------------------------------
# 6. BERT question answering

QA_MAX_LEN = 96
QA_VOCAB = 500
QA_FOLDER = common.MODELS / "bert_qa"


def qa_spec() -> InputSpec:
    """The QA input spec as analyzers.samples builds it from the manifest."""
    return InputSpec(kind="qa", shape=(QA_MAX_LEN,), dtype="int64", tokenizer=QA_FOLDER,
                     vocab=QA_FOLDER / "vocab.txt", max_len=QA_MAX_LEN)


def build_wordpiece() -> Any:
    """A WordPiece vocabulary learned from generated contexts, saved as a BertTokenizerFast in the folder."""
    from transformers import BertTokenizerFast

    ordered = data.wordpiece_vocab(data.qa_corpus(), QA_VOCAB)
    tokenizer = BertTokenizerFast(vocab={tok: i for i, tok in enumerate(ordered)}, do_lower_case=True)
    tokenizer.model_max_length = QA_MAX_LEN
    tokenizer.save_pretrained(str(QA_FOLDER))
    (QA_FOLDER / "vocab.txt").write_text("\n".join(ordered) + "\n", encoding="utf-8")
    return tokenizer


def qa_features(examples: list, spec: InputSpec) -> dict[str, np.ndarray]:
    """input_ids / token_type_ids / attention_mask and answer token positions via encode_qa."""
    cols: dict[str, list] = {"input_ids": [], "token_type_ids": [], "attention_mask": [],
                             "start_positions": [], "end_positions": []}
    for ex in examples:
        enc = encode_qa(ex.question, ex.context, spec)
        a0, a1 = ex.answer_start, ex.answer_start + len(ex.answer)
        ctx = np.flatnonzero(enc.context_mask)
        start = next(j for j in ctx if enc.offsets[j][0] <= a0 < enc.offsets[j][1])
        end = next(j for j in ctx if enc.offsets[j][0] < a1 <= enc.offsets[j][1])
        for key, value in (("input_ids", enc.input_ids), ("token_type_ids", enc.token_type_ids),
                           ("attention_mask", enc.attention_mask), ("start_positions", start),
                           ("end_positions", end)):
            cols[key].append(value)
    return {k: np.asarray(v, dtype=np.int64) for k, v in cols.items()}


def qa_exact_match(model: Any, examples: list, spec: InputSpec) -> float:
    """Share of examples whose best span, cut from the context, equals the answer (normalised)."""
    import torch

    hits = 0
    with torch.no_grad():
        for i in range(0, len(examples), 64):
            chunk = examples[i:i + 64]
            encs = [encode_qa(ex.question, ex.context, spec) for ex in chunk]
            out = model(input_ids=torch.from_numpy(np.stack([e.input_ids for e in encs])),
                        token_type_ids=torch.from_numpy(np.stack([e.token_type_ids for e in encs])),
                        attention_mask=torch.from_numpy(np.stack([e.attention_mask for e in encs])))
            for j, (ex, enc) in enumerate(zip(chunk, encs)):
                got = qa_answer(out.start_logits[j].numpy(), out.end_logits[j].numpy(), enc, ex.context)
                hits += data.normalize_answer(got) == data.normalize_answer(ex.answer)
    return hits / len(examples)


def build_bert_qa(threads: int = 2) -> list[dict]:
    """Seed problem 6: a 2-layer, hidden-64 BertForQuestionAnswering from scratch; 90% exact match."""
    torch = torch_module(threads)
    torch.manual_seed(6)
    from transformers import BertConfig, BertForQuestionAnswering

    if QA_FOLDER.exists():
        shutil.rmtree(QA_FOLDER)
    QA_FOLDER.mkdir(parents=True)
    tokenizer = build_wordpiece()
    spec = qa_spec()
    train = data.qa_dataset(4000, data.TRAIN_SEED)
    held = data.qa_dataset(300, data.HELDOUT_SEED)
    feats = {k: torch.from_numpy(v) for k, v in qa_features(train, spec).items()}
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=256, max_position_embeddings=128, pad_token_id=0)
    model = BertForQuestionAnswering(config)
    epochs, batch, lr = 8, 32, 2e-3
    steps = epochs * ((len(train) + batch - 1) // batch)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    g = torch.Generator().manual_seed(6)
    common.log(f"bert_qa: training {epochs} epochs on {len(train):,} generated questions")
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(train), generator=g)
        for i in range(0, len(train), batch):
            idx = perm[i:i + batch]
            keep = int(feats["attention_mask"][idx].sum(1).max())
            inputs = {k: (v[idx][:, :keep] if v.dim() == 2 else v[idx]) for k, v in feats.items()}
            loss = model(**inputs).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    model.eval()
    em = qa_exact_match(model, held, spec)
    common.log(f"bert_qa: held-out exact match {em:.4f}")
    common.require(em >= 0.90, f"bert_qa reached exact match {em:.3f} < 0.90")
    model.save_pretrained(str(QA_FOLDER))
    for f in QA_FOLDER.iterdir():
        f.chmod(0o644)
    samples = [json.dumps({"question": ex.question, "context": ex.context}) for ex in held[:4]]
    return [{
        "id": "bert_qa", "title": "BERT question answering (transformers)", "seed_problem": 6,
        "file": common.rel(QA_FOLDER), "framework": "torch", "task": "extractive QA", "labels": [],
        "input": {"kind": "qa", "shape": [QA_MAX_LEN], "dtype": "int64", "max_len": QA_MAX_LEN,
                  "tokenizer": common.rel(QA_FOLDER), "vocab": common.rel(QA_FOLDER / "vocab.txt"),
                  "lowercase": True, "pad_id": 0, "unk_id": int(tokenizer.convert_tokens_to_ids("[UNK]"))},
        "samples": samples, "default_sample": samples[0], "arch": None, "arch_kwargs": {},
        "metric": "exact match", "heldout": round(em, 4), "bar": 0.9, "heldout_size": len(held),
        "params": count(model),
        "notes": "2 layers, hidden 64, 4 heads, trained from scratch with a 500-piece WordPiece vocabulary on "
                 "generated two-person fact sheets; the answer is a span of the context.",
        "extras": {"output": "start_logits, end_logits", "sample_answers": [ex.answer for ex in held[:4]]},
    }]
