"""Keras half of the sample zoo: seed problems 1 (image CNN), 2 (text CNN) and 4 (GAN).

Each `build_*` trains with fixed seeds, saves an uncompiled `.keras` file (no optimizer state,
so the files stay small), writes its sample inputs and returns its manifest entries.
"""

from __future__ import annotations

import os
import re
from typing import Any

import numpy as np

from analyzers.samples import InputSpec, encode_text, zoo_module

common = zoo_module("common")
data = zoo_module("data")

DIGITS_FILE = common.MODELS / "digits_cnn.keras"
IMAGE_INPUT = {"kind": "image", "shape": [28, 28, 1], "dtype": "float32", "layout": "NHWC", "size": [28, 28],
               "channels": 1, "scale": 1 / 255, "mean": 0.0, "std": 1.0, "invert": False, "auto_invert": True}
GAN_IMAGE_INPUT = {**IMAGE_INPUT, "scale": 1 / 127.5, "mean": 1.0}  # pixels to [-1, 1], the generator's range
_configured = False


def keras_module(threads: int = 2) -> Any:
    """Import keras on TensorFlow, limited to `threads` CPU threads (set once, before any op runs)."""
    global _configured
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf

    if not _configured:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(max(1, threads))
        _configured = True
    return keras


def save_clean(model: Any, build: Any, path) -> None:
    """Save `model`'s weights in a freshly built, uncompiled copy: a small .keras file with no optimizer."""
    fresh = build()
    fresh.set_weights(model.get_weights())
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.keras")
    fresh.save(tmp)
    reproducible_zip(tmp)
    os.replace(tmp, path)  # atomic: the GAN builder in the other process may be reading it


def renumber_shared_ids(config: bytes) -> bytes:
    """Replace Keras's id()-based shared_object_id values by 1, 2, ... in order of first appearance."""
    ids: dict[bytes, int] = {}

    def number(match: re.Match) -> bytes:
        return b'"shared_object_id": %d' % ids.setdefault(match[1], len(ids) + 1)

    return re.sub(rb'"shared_object_id": (\d+)', number, config)


def reproducible_zip(path) -> None:
    """Make a .keras archive's bytes depend on the model alone: no save time, no memory addresses.

    Keras stamps entry dates and metadata.json's date_saved, and numbers shared config objects by
    Python id(); the weights are the same on every build, so without this every `make samples`
    would still show up in git as modified binaries. Shared ids are renumbered 1, 2, ... in order.
    """
    import json
    import zipfile

    with zipfile.ZipFile(path) as zf:
        members = [(info, zf.read(info)) for info in zf.infolist()]
    with zipfile.ZipFile(path, "w") as out:
        for info, payload in members:
            if info.filename == "metadata.json":
                meta = json.loads(payload)
                meta["date_saved"] = "1980-01-01@00:00:00"
                payload = json.dumps(meta).encode("utf-8")
            elif info.filename == "config.json":
                payload = renumber_shared_ids(payload)
            fixed = zipfile.ZipInfo(info.filename, date_time=(1980, 1, 1, 0, 0, 0))
            fixed.compress_type = info.compress_type
            fixed.external_attr = 0o644 << 16
            out.writestr(fixed, payload)


# ---------------------------------------------------------------------------------------------
# 1. Image CNN on the digits


def digits_cnn() -> Any:
    """The seed's classifier: Conv2D(32, 3x3, relu) -> MaxPool 2x2 -> Flatten -> Dense(64) -> Dense(10)."""
    import keras
    from keras import layers

    return keras.Sequential([
        keras.Input((28, 28, 1), name="image"),
        layers.Conv2D(32, (3, 3), activation="relu", name="conv"),
        layers.MaxPooling2D((2, 2), name="pool"),
        layers.Flatten(name="flatten"),
        layers.Dense(64, activation="relu", name="dense"),
        layers.Dense(10, activation="softmax", name="classes"),
    ], name="digits_cnn")


def build_digits_keras(threads: int = 2) -> list[dict]:
    """Seed problem 1 on scikit-learn's digits upsampled to 28x28; held-out accuracy must reach 95%."""
    keras = keras_module(threads)
    keras.utils.set_random_seed(1)
    split = data.digits_split()
    pngs = common.digit_sample_pngs(split.x_test, split.y_test)
    x_train = (split.x_train.astype("float32") / 255.0)[..., None]
    x_test = (split.x_test.astype("float32") / 255.0)[..., None]
    model = digits_cnn()
    epochs, batch = 20, 32
    schedule = keras.optimizers.schedules.CosineDecay(3e-3, epochs * -(-len(x_train) // batch))
    model.compile(optimizer=keras.optimizers.Adam(schedule), loss="sparse_categorical_crossentropy")
    common.log(f"digits_cnn_keras: training {epochs} epochs on {len(x_train):,} digits")
    model.fit(x_train, split.y_train, epochs=epochs, batch_size=batch, shuffle=True, verbose=0)
    pred = model.predict(x_test, verbose=0).argmax(1)
    acc = float((pred == split.y_test).mean())
    common.log(f"digits_cnn_keras: held-out accuracy {acc:.4f}")
    common.require(acc >= 0.95, f"digits_cnn_keras reached {acc:.3f} < 0.95")
    save_clean(model, digits_cnn, DIGITS_FILE)
    return [{
        "id": "digits_cnn_keras", "title": "Digits CNN (Keras)", "seed_problem": 1,
        "file": common.rel(DIGITS_FILE), "framework": "keras", "task": "image classification",
        "labels": [str(i) for i in range(10)], "input": IMAGE_INPUT,
        "samples": [common.rel(p) for p in pngs], "default_sample": common.rel(pngs[3]),
        "arch": None, "arch_kwargs": {}, "metric": "accuracy", "heldout": round(acc, 4), "bar": 0.95,
        "heldout_size": len(split.y_test), "params": int(model.count_params()),
        "notes": "scikit-learn's 8x8 digits (load_digits) upsampled to 28x28, light strokes on black; "
                 "stratified 80/20 split with random_state 0.",
        "extras": {"sample_labels": [str(i) for i in range(10)]},
    }]


# ---------------------------------------------------------------------------------------------
# 2. Text CNN on the generated reviews


def text_cnn(vocab_size: int, max_len: int = common.TEXT_MAX_LEN, logits: bool = False) -> Any:
    """The seed's text CNN: Embedding -> Conv1D(128, 5) -> MaxPool(5) -> Conv1D(128, 5) -> GlobalMaxPool -> Dense.

    `logits=True` leaves out the final softmax (the same weights): the copy that trains on logits.
    """
    import keras
    from keras import layers

    return keras.Sequential([
        keras.Input((max_len,), dtype="int32", name="tokens"),
        layers.Embedding(vocab_size, 16, name="embedding"),
        layers.Conv1D(128, 5, activation="relu", name="conv1"),
        layers.MaxPooling1D(5, name="pool"),
        layers.Conv1D(128, 5, activation="relu", name="conv2"),
        layers.GlobalMaxPooling1D(name="global_pool"),
        layers.Dense(128, activation="relu", name="dense"),
        # the seed's sigmoid over 2 classes, fixed
        layers.Dense(2, activation=None if logits else "softmax", name="classes"),
    ], name="text_cnn")


def text_input(dtype: str) -> dict:
    """Manifest input spec of the two text classifiers (shared vocabulary and length)."""
    return {"kind": "text", "shape": [common.TEXT_MAX_LEN], "dtype": dtype, "vocab": common.rel(common.TEXT_VOCAB),
            "max_len": common.TEXT_MAX_LEN, "lowercase": True, "pad_id": 0, "unk_id": 1}


def encode_all(texts: list[str], dtype: str) -> np.ndarray:
    """Token ids (N, max_len) through analyzers.samples.encode_text, exactly as the app will encode."""
    spec = InputSpec(kind="text", shape=(common.TEXT_MAX_LEN,), dtype=dtype, vocab=common.TEXT_VOCAB,
                     max_len=common.TEXT_MAX_LEN)
    return np.stack([encode_text(t, spec)[0] for t in texts])


def text_entry_common() -> dict:
    """Manifest fields both text classifiers share: labels, samples, cue words."""
    return {"task": "text classification", "labels": list(data.SENTIMENT_LABELS),
            "samples": [t for t, _ in data.SAMPLE_SENTENCES], "default_sample": data.SAMPLE_SENTENCES[2][0],
            "metric": "accuracy", "bar": 0.95, "cue_words": {k: list(v) for k, v in data.CUE_WORDS.items()},
            "extras": {"sample_labels": [data.SENTIMENT_LABELS[y] for _, y in data.SAMPLE_SENTENCES]},
            "notes": "Generated reviews: neutral filler clauses with one or two cue adjectives that carry the "
                     "label; a correct token attribution highlights the cue words. Trained to be indifferent "
                     "to the filler (no-cue texts aim at 50/50, hidden words, a filler-gradient penalty)."}


def text_cnn_step(model: Any, optimizer: Any) -> Any:
    """One training step of the text CNN (a tf.function), the recipe in zoo/data.py: soft-target
    cross-entropy, centred logits, and the filler words' squared IG integrand at a random path point."""
    import tensorflow as tf

    embed, rest = model.layers[0], model.layers[1:]

    def head(h: Any) -> Any:
        for layer in rest:
            h = layer(h, training=True)
        return h

    @tf.function
    def step(ids: Any, target: Any, alpha: Any, filler: Any) -> Any:
        with tf.GradientTape() as tape:
            emb = embed(ids)
            logits = head(emb)
            loss = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(target, logits))
            loss += data.CENTRE_WEIGHT * tf.reduce_mean(tf.reduce_sum(logits, 1) ** 2)
            base = embed(tf.zeros_like(ids))  # the IG baseline: padding tokens
            diff = emb - base
            with tf.GradientTape() as inner:
                point = base + alpha[:, None, None] * diff
                inner.watch(point)
                out = head(point)
                margin = tf.reduce_sum(out[:, 1] - out[:, 0])
            integrand = tf.reduce_sum(inner.gradient(margin, point) * diff, -1)  # (batch, tokens)
            loss += data.FILLER_PENALTY * tf.reduce_mean(tf.reduce_sum(integrand ** 2 * filler, 1))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    return step


def build_text_cnn_keras(threads: int = 2) -> list[dict]:
    """Seed problem 2 on generated reviews; held-out accuracy must reach 95%.

    Trained on logits (the same layers without the softmax, saved into the seed's architecture) with
    the recipe in zoo/data.py, so that Integrated Gradients finds the label in the cue words.
    """
    keras = keras_module(threads)
    keras.utils.set_random_seed(2)
    vocab = common.write_text_vocab(data.sentiment_corpus_words())
    n, epochs, batch = 6000, 4, 64
    texts, _ = data.sentiment_training_set(n, data.TRAIN_SEED)
    held, y_test = data.sentiment_dataset(1000, data.HELDOUT_SEED)
    x_train, x_test = encode_all(texts, "int32"), encode_all(held, "int32")
    pos_ids, neg_ids = data.cue_id_sets(vocab)
    cue_ids = np.concatenate([pos_ids, neg_ids])
    model = text_cnn(len(vocab), logits=True)
    step = text_cnn_step(model, keras.optimizers.Adam(1e-3))
    rng = np.random.default_rng(2)
    common.log(f"text_cnn_keras: training {epochs} epochs on {n:,} generated reviews")
    for _ in range(epochs):
        perm = rng.permutation(n)
        for i in range(0, n, batch):
            ids, shown = data.augment_tokens(rng, x_train[perm[i:i + batch]], 0, 1)
            ids = np.where(shown, ids, 0).astype("int32")  # hidden words become padding, the IG baseline
            target = data.evidence_targets(ids, pos_ids, neg_ids)
            filler = ((ids != 0) & ~np.isin(ids, cue_ids)).astype("float32")
            step(ids, target, rng.random(len(ids)).astype("float32"), filler)
    acc = float((model.predict(x_test, verbose=0).argmax(1) == y_test).mean())
    common.log(f"text_cnn_keras: held-out accuracy {acc:.4f}")
    common.require(acc >= 0.95, f"text_cnn_keras reached {acc:.3f} < 0.95")
    path = common.MODELS / "text_cnn.keras"
    save_clean(model, lambda: text_cnn(len(vocab)), path)
    return [{
        "id": "text_cnn_keras", "title": "Text CNN (Keras)", "seed_problem": 2, "file": common.rel(path),
        "framework": "keras", "input": text_input("int32"), "arch": None, "arch_kwargs": {},
        "heldout": round(acc, 4), "heldout_size": len(y_test), "params": int(model.count_params()),
        **text_entry_common(),
    }]


# ---------------------------------------------------------------------------------------------
# 4. GAN on the digits


def gan_generator(latent_dim: int = data.LATENT_DIM) -> Any:
    """The seed's generator, fixed: Dense -> 7x7x128 -> 28x28x1 tanh, batch-normalised like DCGAN.

    The seed put activation="relu" on the Dense and then a LeakyReLU; the Dense is linear here.
    Batch normalisation before each LeakyReLU is the one addition: without it the seed's
    generator collapsed to a single image within a few hundred steps in every trial.
    """
    import keras
    from keras import layers

    return keras.Sequential([
        keras.Input((latent_dim,), name="latent"),
        layers.Dense(128 * 7 * 7, use_bias=False, name="project"),
        layers.BatchNormalization(momentum=0.9, name="project_bn"),
        layers.LeakyReLU(0.2, name="project_act"),
        layers.Reshape((7, 7, 128), name="reshape"),
        layers.Conv2DTranspose(128, (5, 5), strides=(1, 1), padding="same", use_bias=False, name="up1"),
        layers.BatchNormalization(momentum=0.9, name="up1_bn"),
        layers.LeakyReLU(0.2, name="up1_act"),
        layers.Conv2DTranspose(64, (5, 5), strides=(2, 2), padding="same", use_bias=False, name="up2"),
        layers.BatchNormalization(momentum=0.9, name="up2_bn"),
        layers.LeakyReLU(0.2, name="up2_act"),
        layers.Conv2DTranspose(1, (5, 5), strides=(2, 2), padding="same", activation="tanh", name="image"),
    ], name="gan_generator")


def gan_discriminator() -> Any:
    """The seed's discriminator: two strided convs with LeakyReLU and dropout -> sigmoid 'real' score."""
    import keras
    from keras import layers

    return keras.Sequential([
        keras.Input((28, 28, 1), name="image"),
        layers.Conv2D(32, (3, 3), strides=(2, 2), padding="same", name="conv1"),
        layers.LeakyReLU(0.2, name="conv1_act"),
        layers.Dropout(0.3, name="drop1"),
        layers.Conv2D(64, (3, 3), strides=(2, 2), padding="same", name="conv2"),
        layers.LeakyReLU(0.2, name="conv2_act"),
        layers.Dropout(0.3, name="drop2"),
        layers.Flatten(name="flatten"),
        layers.Dense(1, activation="sigmoid", name="real"),
    ], name="gan_discriminator")


def train_gan(generator: Any, discriminator: Any, images: np.ndarray, steps: int, batch: int) -> None:
    """The combined step the seed lacked: train D on real vs generated, then G through the updated D.

    The seed compiled the generator alone and fitted it to "real" labels, which never involves
    the discriminator; here the generator's loss is the discriminator's verdict on its images.
    DCGAN's settings: Adam 2e-4, beta1 0.5; real labels smoothed to 0.9.
    """
    import keras
    import tensorflow as tf

    g_opt = keras.optimizers.Adam(2e-4, beta_1=0.5)
    d_opt = keras.optimizers.Adam(2e-4, beta_1=0.5)
    bce = keras.losses.BinaryCrossentropy()

    @tf.function
    def step(real: tf.Tensor, z_d: tf.Tensor, z_g: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        fake = generator(z_d, training=True)
        with tf.GradientTape() as d_tape:
            p_real = discriminator(real, training=True)
            p_fake = discriminator(fake, training=True)
            d_loss = bce(tf.fill(tf.shape(p_real), 0.9), p_real) + bce(tf.zeros_like(p_fake), p_fake)
        d_opt.apply_gradients(zip(d_tape.gradient(d_loss, discriminator.trainable_variables),
                                  discriminator.trainable_variables))
        with tf.GradientTape() as g_tape:
            p_fake = discriminator(generator(z_g, training=True), training=True)
            g_loss = bce(tf.ones_like(p_fake), p_fake)
        g_opt.apply_gradients(zip(g_tape.gradient(g_loss, generator.trainable_variables),
                                  generator.trainable_variables))
        return d_loss, g_loss

    rng = np.random.default_rng(4)
    for i in range(steps):
        real = images[rng.integers(0, len(images), batch)]
        z = rng.standard_normal((2, batch, data.LATENT_DIM)).astype("float32")
        d_loss, g_loss = step(tf.constant(real), tf.constant(z[0]), tf.constant(z[1]))
        if (i + 1) % 100 == 0:
            common.log(f"gan: step {i + 1}/{steps}  D loss {float(d_loss):.3f}  G loss {float(g_loss):.3f}")


def digit_likeness(generator: Any, classifier: Any, n: int = 256) -> tuple[float, int]:
    """Share of `n` fixed-latent samples the digits CNN reads confidently, and how many classes they cover."""
    pixels = data.gan_pixels(generator.predict(data.gan_latents(n), verbose=0))
    probs = classifier.predict(pixels.astype("float32") / 255.0, verbose=0)
    confident = probs.max(1) >= LIKENESS_CONFIDENCE
    return float(confident.mean()), len(set(probs.argmax(1)[confident].tolist()))


def discriminator_auc(generator: Any, discriminator: Any, real_pixels: np.ndarray) -> float:
    """ROC AUC of the 'real' score: held-out real digits against as many fixed-latent samples.

    At a GAN's equilibrium the discriminator is near chance at a 0.5 threshold, so the score is
    rank-based: the chance that a random real digit scores above a random generated one.
    """
    n = len(real_pixels)
    fake = generator.predict(data.gan_latents(n, data.GAN_EVAL_SEED + 1), verbose=0)
    real = real_pixels[..., None].astype("float32") / 127.5 - 1.0
    p_real = discriminator.predict(real, verbose=0).ravel()
    p_fake = discriminator.predict(fake, verbose=0).ravel()
    return data.auc(p_real, p_fake)


GAN_STEPS = 800
GAN_BATCH = 32
GEN_FILE = common.MODELS / "gan_generator.keras"
DISC_FILE = common.MODELS / "gan_discriminator.keras"
LIKENESS_CONFIDENCE = 0.8
LIKENESS_BAR = 0.5


def train_gan_keras(threads: int = 1) -> None:
    """Seed problem 4, trained briefly on the training digits; saves both models and the GAN's samples."""
    keras = keras_module(threads)
    keras.utils.set_random_seed(4)
    split = data.digits_split()
    images = (split.x_train.astype("float32") / 127.5 - 1.0)[..., None]
    generator, discriminator = gan_generator(), gan_discriminator()
    common.log(f"gan: {GAN_STEPS} combined steps, batch {GAN_BATCH}")
    train_gan(generator, discriminator, images, GAN_STEPS, GAN_BATCH)
    save_clean(generator, gan_generator, GEN_FILE)
    save_clean(discriminator, gan_discriminator, DISC_FILE)
    latents = [common.save_npy(z, common.SAMPLES / "gan" / f"latent_{i}.npy")
               for i, z in enumerate(data.gan_latents(3, data.GAN_EVAL_SEED + 7))]
    made = data.gan_pixels(generator.predict(np.load(latents[0])[None], verbose=0))[0, :, :, 0]
    common.save_png(made, common.SAMPLES / "gan" / "generated_0.png")


def gan_entries(threads: int = 1) -> list[dict]:
    """Judge the saved GAN (the digits CNN reads its samples; D tells real from generated), manifest entries.

    Runs after both the GAN and the digits CNN are on disk, which the parallel build guarantees by
    calling it once the GAN's process has finished.
    """
    keras = keras_module(threads)
    if not DIGITS_FILE.exists():
        build_digits_keras(threads)
    classifier = keras.saving.load_model(DIGITS_FILE, compile=False)
    generator = keras.saving.load_model(GEN_FILE, compile=False)
    discriminator = keras.saving.load_model(DISC_FILE, compile=False)
    split = data.digits_split()
    likeness, classes = digit_likeness(generator, classifier)
    d_auc = discriminator_auc(generator, discriminator, split.x_test)
    common.log(f"gan: digit-likeness {likeness:.3f} over {classes} classes; discriminator AUC {d_auc:.3f}")
    common.require(likeness >= LIKENESS_BAR and classes >= 8,
                   f"gan samples do not read as digits (likeness {likeness:.3f} over {classes} classes)")
    latents = [common.SAMPLES / "gan" / f"latent_{i}.npy" for i in range(3)]
    digit_pngs = [common.SAMPLES / "digits" / f"digit_{i}.png" for i in (0, 3, 8)]
    fake_png = common.SAMPLES / "gan" / "generated_0.png"
    notes = (f"Trained {GAN_STEPS} combined steps (batch {GAN_BATCH}) on the 1,437 training digits, "
             "Adam 2e-4 / beta1 0.5, one-sided label smoothing 0.9; the generator has DCGAN's batch "
             "normalisation.")
    return [{
        "id": "gan_generator_keras", "title": "GAN generator (Keras)", "seed_problem": 4,
        "file": common.rel(GEN_FILE), "framework": "keras", "task": "generation", "labels": [],
        "input": {"kind": "latent", "shape": [data.LATENT_DIM], "dtype": "float32"},
        "samples": [common.rel(p) for p in latents], "default_sample": common.rel(latents[0]),
        "arch": None, "arch_kwargs": {}, "metric": "digit-likeness", "heldout": round(likeness, 4),
        "bar": LIKENESS_BAR, "heldout_size": 256, "params": int(generator.count_params()),
        "notes": notes + f" Digit-likeness: share of 256 fixed-latent samples the digits CNN classifies with "
                         f"at least {LIKENESS_CONFIDENCE:.0%} confidence.",
        "extras": {"output": "image in [-1, 1], shape (28, 28, 1)", "classes_covered": classes,
                   "pair": "gan_discriminator_keras", "eval_seed": data.GAN_EVAL_SEED,
                   "confidence": LIKENESS_CONFIDENCE},
    }, {
        "id": "gan_discriminator_keras", "title": "GAN discriminator (Keras)", "seed_problem": 4,
        "file": common.rel(DISC_FILE), "framework": "keras", "task": "image classification",
        "labels": ["real"], "input": GAN_IMAGE_INPUT,
        "samples": [common.rel(p) for p in (*digit_pngs, fake_png)], "default_sample": common.rel(digit_pngs[1]),
        "arch": None, "arch_kwargs": {}, "metric": "real-vs-generated AUC", "heldout": round(d_auc, 4),
        "bar": 0.5, "heldout_size": 2 * len(split.x_test), "params": int(discriminator.count_params()),
        "notes": notes + " One sigmoid output: the probability that the image is a real digit.",
        "extras": {"output": "sigmoid", "pair": "gan_generator_keras", "eval_seed": data.GAN_EVAL_SEED + 1},
    }]
