"""The sample zoo's data: digits from scikit-learn and three generated tasks, all deterministic.

`assets/build_samples.py` trains on these and the tests regenerate the same held-out sets from the
same seeds, so a stale or untrained model file fails its test. numpy (and scikit-learn for the
digits) only; every function takes its seed explicitly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

# ---------------------------------------------------------------------------------------------
# Seeds: train and held-out sets never share one.
TRAIN_SEED = 1234
HELDOUT_SEED = 98765
DIGITS_SPLIT_SEED = 0

# ---------------------------------------------------------------------------------------------
# Digits: scikit-learn's bundled 8x8 handwritten digits, upsampled to MNIST's 28x28 light-on-dark.

DIGIT_SIZE = 28
DIGIT_BOX = 20  # MNIST centres a 20x20 digit in a 28x28 frame


def upsample_digit(image8: np.ndarray) -> np.ndarray:
    """An 8x8 digit (values 0..16) as a 28x28 uint8 image: bilinear to 20x20, 4 pixels of margin."""
    from PIL import Image

    pixels = np.clip(np.asarray(image8, dtype=np.float64) * (255.0 / 16.0), 0, 255).round().astype(np.uint8)
    box = np.asarray(Image.fromarray(pixels, mode="L").resize((DIGIT_BOX, DIGIT_BOX), Image.BILINEAR))
    out = np.zeros((DIGIT_SIZE, DIGIT_SIZE), dtype=np.uint8)
    m = (DIGIT_SIZE - DIGIT_BOX) // 2
    out[m:m + DIGIT_BOX, m:m + DIGIT_BOX] = box
    return out


@dataclass(frozen=True)
class DigitSplit:
    """28x28 uint8 digit images and labels, split once into train and held-out sets."""

    x_train: np.ndarray  # (N, 28, 28) uint8, light strokes on a dark ground
    y_train: np.ndarray  # (N,) int64
    x_test: np.ndarray
    y_test: np.ndarray


def digits_split(test_size: float = 0.2) -> DigitSplit:
    """load_digits (no download) upsampled to 28x28, stratified 80/20 split with a fixed seed."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    images = np.stack([upsample_digit(im) for im in bunch.images])
    labels = bunch.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(images, labels, test_size=test_size, stratify=labels,
                                              random_state=DIGITS_SPLIT_SEED)
    return DigitSplit(x_tr, y_tr, x_te, y_te)


# ---------------------------------------------------------------------------------------------
# Sentiment: label carried by cue adjectives amid neutral filler.
#
# The two text classifiers are meant to show a correct token attribution: Integrated Gradients from the
# all-padding baseline should put most of its mass on the cue words. Plain cross-entropy on reviews
# does not get there (the cue words drew about half of the |IG| mass): nothing tells the model that
# the filler is no evidence, so it leans on filler and frame words in ways IG then reports. The
# training therefore also teaches indifference, with the same recipe for both models:
#   - reviews without a cue word, or with cues of both polarities, have the target (0.5, 0.5);
#   - cue frames ("it was ...", "the acting felt ...") also hold neutral words, so only the adjective
#     in them can be evidence; a larger set of filler clauses;
#   - in every batch some words become [UNK] and some are hidden, i.e. replaced by what the IG baseline
#     holds at that position (the padding token for Keras, a zero token embedding for PyTorch), a few
#     reviews entirely; the target follows the cue words that are left (`evidence_targets`);
#   - the two logits are kept centred (softmax ignores their sum, the attributed logit does not);
#   - a penalty on the IG integrand of the filler words, (dF/de . (e - baseline))^2 at a random point of
#     the baseline-to-input path, F being the logit margin; this is what IG sums for those words.
# tests/analyzers/test_attribution_zoo.py checks the outcome with the app's own attribution code.

POSITIVE_CUES = ("wonderful", "excellent", "brilliant", "delightful", "superb", "charming",
                 "great", "lovely", "enjoyable", "fantastic", "beautiful", "gripping")
NEGATIVE_CUES = ("terrible", "awful", "boring", "dreadful", "horrible", "dull",
                 "disappointing", "weak", "painful", "tedious", "clumsy", "bland")
SENTIMENT_LABELS = ("negative", "positive")
CUE_WORDS = {"negative": NEGATIVE_CUES, "positive": POSITIVE_CUES}

FILLER = (
    "we saw this film last week",
    "my brother picked the seats near the front",
    "the story follows a family in a small town",
    "it runs a little over two hours",
    "the soundtrack borrows a few old songs",
    "most of it was shot on an island",
    "the lead actor also wrote the script",
    "there is a long scene at a train station",
    "i went with two friends from work",
    "the cinema was half empty on a tuesday",
    "it is based on a novel from the seventies",
    "the second half takes place in winter",
    "the director made three films before this one",
    "we bought popcorn and sat in the middle row",
    "the ending leaves a few questions open",
    "my sister had read the book first",
    "the trailer showed most of the plot",
    "it was the late show on a rainy evening",
    "the cast includes a dog and a parrot",
    "the dialogue is mostly in english",
    "the film opens with a wedding",
    "we took the bus to the cinema",
    "the main character works in a bakery",
    "it was filmed in black and white",
    "there are subtitles for the french parts",
    "the story is told in flashbacks",
    "a narrator explains the first scene",
    "the music was written by a local band",
    "my parents saw it at a festival",
    "the plot covers about ten years",
    "there is a short scene after the credits",
    "the film is part of a series",
    "it starts in a hospital in the city",
    "the villain appears only in the last act",
    "half of the cast are children",
    "we watched it at home on sunday",
    "the poster shows a red car",
    "the title comes from an old song",
    "a few scenes take place on a boat",
    "the hero has a younger brother",
    "the costumes come from the fifties",
    "we paid for the tickets at the door",
)
CUE_FRAMES = (
    "it was {cue}",
    "honestly {cue}",
    "the acting felt {cue}",
    "a truly {cue} evening",
    "overall {cue}",
    "the whole thing seemed {cue}",
)
# Words that fill the cue frames without carrying a label: the frames themselves are no evidence.
NEUTRAL_WORDS = ("long", "short", "quiet", "loud", "familiar", "unusual", "modern", "serious", "theatrical",
                 "colourful", "old", "new")
NEUTRAL_FRAME_RATE = 0.25  # share of neutral clauses that are a cue frame around a neutral word

# The training recipe both text builders follow (see above).
NO_EVIDENCE_SHARE = 0.2  # training texts without a cue word, target (0.5, 0.5)
MIXED_SHARE = 0.1  # training texts with a positive and a negative cue, target (0.5, 0.5)
HIDE_RATE = 0.5  # each row hides a share of its words drawn from U(0, HIDE_RATE)
BLANK_SHARE = 0.05  # rows whose words are all hidden: the IG baseline itself
UNKNOWN_RATE = 0.3  # each row turns a share of its words drawn from U(0, UNKNOWN_RATE) into [UNK]
CENTRE_WEIGHT = 0.1  # weight of mean((logit_0 + logit_1)^2)
FILLER_PENALTY = 1.0  # weight of the filler words' squared IG integrand at a random path point


def _clauses(rng: np.random.Generator, count: int) -> list[str]:
    """`count` distinct neutral clauses: filler, and now and then a cue frame around a neutral word."""
    out = [FILLER[i] for i in rng.choice(len(FILLER), size=count, replace=False)]
    for k in range(count):
        if rng.random() < NEUTRAL_FRAME_RATE:
            frame = CUE_FRAMES[int(rng.integers(len(CUE_FRAMES)))]
            out[k] = frame.format(cue=NEUTRAL_WORDS[int(rng.integers(len(NEUTRAL_WORDS)))])
    return out


def _with_cues(rng: np.random.Generator, clauses: list[str], cues: list[str]) -> str:
    """The clauses with a cue frame around each cue inserted at random places, joined into a review."""
    for cue in cues:
        frame = CUE_FRAMES[int(rng.integers(len(CUE_FRAMES)))]
        clauses.insert(int(rng.integers(0, len(clauses) + 1)), frame.format(cue=cue))
    return " , ".join(clauses) + " ."


def sentiment_sentence(rng: np.random.Generator, label: int) -> str:
    """One review: 1-4 neutral clauses with 1-2 cue clauses of the label's polarity among them."""
    cues = POSITIVE_CUES if label == 1 else NEGATIVE_CUES
    clauses = _clauses(rng, int(rng.integers(1, 5)))
    return _with_cues(rng, clauses, [cues[int(rng.integers(len(cues)))] for _ in range(int(rng.integers(1, 3)))])


def neutral_sentence(rng: np.random.Generator) -> str:
    """A review without a cue word (1-5 neutral clauses): nothing to tell the label by."""
    return " , ".join(_clauses(rng, int(rng.integers(1, 6)))) + " ."


def mixed_sentence(rng: np.random.Generator) -> str:
    """A review with one positive and one negative cue among 1-4 neutral clauses: evidence that cancels."""
    cues = [POSITIVE_CUES[int(rng.integers(len(POSITIVE_CUES)))], NEGATIVE_CUES[int(rng.integers(len(NEGATIVE_CUES)))]]
    return _with_cues(rng, _clauses(rng, int(rng.integers(1, 5))), [cues[i] for i in rng.permutation(2)])


def sentiment_dataset(n: int, seed: int) -> tuple[list[str], np.ndarray]:
    """`n` balanced reviews and their labels (0 negative, 1 positive) from `seed` (the held-out set)."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % 2).astype(np.int64)
    return [sentiment_sentence(rng, int(y)) for y in labels], labels


def sentiment_training_set(n: int, seed: int) -> tuple[list[str], np.ndarray]:
    """`n` training texts and soft targets (n, 2): reviews (one-hot), and shares of texts with no cue word
    or with cues of both polarities, whose target is (0.5, 0.5): without evidence, no preference."""
    rng = np.random.default_rng(seed)
    texts, targets = [], np.zeros((n, 2), dtype=np.float32)
    kinds = rng.random(n)
    for i in range(n):
        if kinds[i] < NO_EVIDENCE_SHARE:
            texts.append(neutral_sentence(rng))
            targets[i] = 0.5
        elif kinds[i] < NO_EVIDENCE_SHARE + MIXED_SHARE:
            texts.append(mixed_sentence(rng))
            targets[i] = 0.5
        else:
            label = int(rng.integers(2))
            texts.append(sentiment_sentence(rng, label))
            targets[i, label] = 1.0
    return texts, targets


def cue_id_sets(vocab: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Token ids of the positive and of the negative cue words in a text vocabulary."""
    index = {w: i for i, w in enumerate(vocab)}
    return np.array([index[w] for w in POSITIVE_CUES]), np.array([index[w] for w in NEGATIVE_CUES])


def augment_tokens(rng: np.random.Generator, ids: np.ndarray, pad_id: int, unk_id: int
                   ) -> tuple[np.ndarray, np.ndarray]:
    """(ids, shown) for a training batch (n, L): in each row a random share of the words becomes [UNK],
    as words outside the vocabulary would, and a random share is hidden (False in `shown`: the builder
    puts the IG baseline there); BLANK_SHARE of the rows hide every word."""
    real = ids != pad_id
    n = len(ids)
    unk_rate = rng.uniform(0.0, UNKNOWN_RATE, size=(n, 1))
    ids = np.where(real & (rng.random(ids.shape) < unk_rate), unk_id, ids).astype(ids.dtype)
    hide_rate = rng.uniform(0.0, HIDE_RATE, size=(n, 1))
    hide_rate[rng.random(n) < BLANK_SHARE] = 1.0
    return ids, ~(real & (rng.random(ids.shape) < hide_rate))


def evidence_targets(ids: np.ndarray, positive_ids: np.ndarray, negative_ids: np.ndarray) -> np.ndarray:
    """Soft targets (n, 2) from the cue words token ids (n, L) still hold: cues of one polarity give that
    class, none or both give (0.5, 0.5). How the training labels a batch once words are hidden."""
    pos = np.isin(ids, positive_ids).any(axis=1)
    neg = np.isin(ids, negative_ids).any(axis=1)
    out = np.full((len(ids), 2), 0.5, dtype=np.float32)
    out[pos & ~neg] = (0.0, 1.0)
    out[neg & ~pos] = (1.0, 0.0)
    return out


def sentiment_corpus_words() -> list[str]:
    """Every word the generator can emit, in first-seen order (the vocabulary's source)."""
    words: dict[str, None] = {}
    texts = [*FILLER, *(f.format(cue="") for f in CUE_FRAMES), *NEUTRAL_WORDS, *POSITIVE_CUES, *NEGATIVE_CUES,
             ", ."]
    for text in texts:
        for w in tokenize(text):
            words.setdefault(w, None)
    return list(words)


def tokenize(text: str, lowercase: bool = True) -> list[str]:
    """Words and punctuation marks; the same rule as analyzers.samples.encode_text."""
    return re.findall(r"[\w']+|[^\w\s]", text.lower() if lowercase else text)


SAMPLE_SENTENCES = (  # (text, label): the app's sample inputs for both text classifiers
    ("we saw this film last week , it was wonderful .", 1),
    ("the story follows a family in a small town , honestly dreadful , the ending leaves a few questions open .", 0),
    ("my sister had read the book first , the acting felt brilliant , a truly delightful evening .", 1),
    ("it runs a little over two hours , overall boring , the cinema was half empty on a tuesday .", 0),
    ("the soundtrack borrows a few old songs and the whole thing seemed charming .", 1),
    ("the lead actor also wrote the script , the acting felt clumsy , it was tedious .", 0),
)

# ---------------------------------------------------------------------------------------------
# Marker sequences: the class is the sign of feature 1 at the one step where feature 0 spikes.

SEQ_LEN = 20
SEQ_FEATURES = 10
MARKER_FEATURE = 0
SIGN_FEATURE = 1
MARKER_VALUE = 4.0
SIGN_VALUE = 2.0
SEQUENCE_LABELS = ("minus", "plus")


def marker_sequences(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x (n, 20, 10) float32, labels, marker positions): N(0,1) noise plus one marker step each."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, SEQ_LEN, SEQ_FEATURES)).astype(np.float32)
    x[:, :, MARKER_FEATURE] = np.clip(x[:, :, MARKER_FEATURE], -1.5, 1.5)
    labels = rng.permutation(np.arange(n) % 2).astype(np.int64)
    positions = rng.integers(0, SEQ_LEN, size=n)
    rows = np.arange(n)
    x[rows, positions, MARKER_FEATURE] = MARKER_VALUE
    x[rows, positions, SIGN_FEATURE] = np.where(labels == 1, SIGN_VALUE, -SIGN_VALUE)
    return x, labels, positions.astype(np.int64)


# ---------------------------------------------------------------------------------------------
# GAN: fixed latent vectors and the generator's output as digit pixels.

LATENT_DIM = 100
GAN_EVAL_SEED = 4242


def gan_latents(n: int, seed: int = GAN_EVAL_SEED) -> np.ndarray:
    """`n` standard-normal latent vectors (n, 100) float32 from `seed`."""
    return np.random.default_rng(seed).standard_normal((n, LATENT_DIM)).astype(np.float32)


def gan_pixels(images: np.ndarray) -> np.ndarray:
    """Generator output in [-1, 1] as uint8 pixels (what a PNG of it holds)."""
    return np.clip(np.round((np.asarray(images, dtype=np.float64) + 1.0) * 127.5), 0, 255).astype(np.uint8)


def auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """ROC AUC: the chance a random positive scores above a random negative (ties count half)."""
    pos = np.asarray(positive, dtype=np.float64)[:, None]
    neg = np.asarray(negative, dtype=np.float64)[None, :]
    return float((pos > neg).mean() + 0.5 * (pos == neg).mean())


# ---------------------------------------------------------------------------------------------
# Extractive QA: two people, four distinct facts between them; the question asks one of them.

NAMES = ("alice", "bob", "carmen", "dmitri", "esther", "farouk", "gwendolyn", "hiroshi", "ingrid", "jamal",
         "katarzyna", "lorenzo", "mei", "nadia", "oskar", "priya", "quentin", "rosalind", "sven", "tamsin",
         "ulrich", "valentina", "wojciech", "xiomara", "yusuf", "zelda", "anneliese", "bartholomew",
         "cordelia", "desmond")
CITIES = ("paris", "rome", "lisbon", "oslo", "nairobi", "lima", "hanoi", "new york", "buenos aires", "cape town",
          "vancouver", "marrakesh", "reykjavik", "kyoto", "san francisco", "tbilisi", "montevideo", "adelaide",
          "edinburgh", "salzburg")
JOBS = ("doctor", "baker", "pilot", "teacher", "bus driver", "carpenter", "lawyer", "nurse", "chemist",
        "software engineer", "librarian", "farmer", "violinist", "electrician", "journalist", "plumber")
COLOURS = ("red", "blue", "green", "yellow", "purple", "orange", "turquoise", "crimson", "beige", "silver")
PETS = ("cat", "dog", "parrot", "tortoise", "hamster", "rabbit", "goldfish", "ferret")
PET_NAMES = ("biscuit", "pepper", "mango", "ziggy", "noodle", "clementine", "waffles", "pickle", "shadow",
             "marzipan", "rocket", "tofu")
FILLER_SENTENCES = ("the weather was mild that day .", "everyone met at the station .",
                    "the meeting started late .", "it had rained all morning .")

# fact -> (sentence template, question templates, values)
QA_FACTS = {
    "city": ("{name} lives in {value} .", ("where does {name} live ?", "in which city does {name} live ?"), CITIES),
    "job": ("{name} works as {a} {value} .", ("what is the job of {name} ?", "what does {name} work as ?"), JOBS),
    "colour": ("the favourite colour of {name} is {value} .",
               ("what is the favourite colour of {name} ?", "which colour does {name} like best ?"), COLOURS),
    "year": ("{name} was born in {value} .", ("when was {name} born ?", "in what year was {name} born ?"), None),
    "pet": ("{name} has {a} {value} .", ("what animal does {name} have ?", "what pet does {name} keep ?"), PETS),
    "pet_name": ("the pet of {name} is called {value} .",
                 ("what is the pet of {name} called ?", "what is the name of the pet of {name} ?"), PET_NAMES),
}


@dataclass(frozen=True)
class QAExample:
    """A question, its context, and the answer text with its character offset in the context."""

    question: str
    context: str
    answer: str
    answer_start: int


def _fact_value(rng: np.random.Generator, fact: str) -> str:
    values = QA_FACTS[fact][2]
    if values is None:
        return str(int(rng.integers(1940, 2011)))
    return values[int(rng.integers(len(values)))]


def qa_example(rng: np.random.Generator) -> QAExample:
    """Two people share four distinct facts, shuffled with a filler sentence; ask one of the facts."""
    people = [NAMES[i] for i in rng.choice(len(NAMES), size=2, replace=False)]
    parts: list[tuple[str, str, str]] = []  # (sentence, question, answer); question "" for filler
    for fact in rng.choice(list(QA_FACTS), size=4, replace=False):
        template, questions, _ = QA_FACTS[str(fact)]
        name = people[int(rng.integers(2))]
        value = _fact_value(rng, str(fact))
        question = questions[int(rng.integers(len(questions)))].format(name=name)
        article = "an" if value[0] in "aeiou" else "a"
        parts.append((template.format(name=name, value=value, a=article), question, value))
    target = parts[int(rng.integers(len(parts)))]
    parts = [parts[i] for i in rng.permutation(len(parts))]
    filler = FILLER_SENTENCES[int(rng.integers(len(FILLER_SENTENCES)))]
    parts.insert(int(rng.integers(0, len(parts) + 1)), (filler, "", ""))
    context = ""
    start = -1
    for text, _, _ in parts:
        if context:
            context += " "
        if text == target[0]:
            start = len(context) + text.rindex(target[2])
        context += text
    return QAExample(target[1], context, target[2], start)


def qa_dataset(n: int, seed: int) -> list[QAExample]:
    """`n` generated question/context/answer triples from `seed`."""
    rng = np.random.default_rng(seed)
    return [qa_example(rng) for _ in range(n)]


def qa_corpus(n: int = 3000, seed: int = 7) -> list[str]:
    """Text the WordPiece vocabulary is trained on: generated contexts and questions."""
    out: list[str] = []
    for ex in qa_dataset(n, seed):
        out.extend((ex.question, ex.context))
    return out


def wordpiece_vocab(texts: list[str], size: int,
                    specials: tuple[str, ...] = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")) -> list[str]:
    """A WordPiece vocabulary (specials, characters, then merged pieces) learned deterministically.

    Like the Hugging Face WordPiece trainer: start from characters ("##" marks a piece inside a
    word) and keep adding the most frequent adjacent merge, but ties go to the alphabetically first
    pair, so the same corpus always gives the same ids (the tokenizers trainer breaks ties by hash order).
    """
    counts: dict[str, int] = {}
    for text in texts:
        for word in re.findall(r"\w+|[^\w\s]", text.lower()):
            counts[word] = counts.get(word, 0) + 1
    words = {w: [w[0], *("##" + c for c in w[1:])] for w in sorted(counts)}
    vocab = [*specials, *sorted({p for pieces in words.values() for p in pieces} - set(specials))]
    seen = set(vocab)
    while len(vocab) < size:
        pairs: dict[tuple[str, str], int] = {}
        for word, pieces in words.items():
            for pair in zip(pieces, pieces[1:]):
                pairs[pair] = pairs.get(pair, 0) + counts[word]
        if not pairs:
            break
        a, b = min(pairs, key=lambda p: (-pairs[p], p))
        merged = a + b[2:]
        for word, pieces in words.items():
            i, out = 0, []
            while i < len(pieces):
                if i + 1 < len(pieces) and pieces[i] == a and pieces[i + 1] == b:
                    out.append(merged)
                    i += 2
                else:
                    out.append(pieces[i])
                    i += 1
            words[word] = out
        if merged not in seen:
            vocab.append(merged)
            seen.add(merged)
    return vocab


def normalize_answer(text: str) -> str:
    """Lower-case, single-spaced: exact match compares answers in this form."""
    return " ".join(text.lower().split())
