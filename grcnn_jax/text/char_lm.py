"""A character n-gram language model, and reading CTC outputs with it (shallow fusion).

The recognizer's CTC head scores each image's characters independently of their neighbours;
a language model of how words are spelled settles what the image leaves open ('SCHOOL'
over 'SCROOL', 'Beauty' over 'Beauly'). ``CharLM`` is an interpolated Witten-Bell character
n-gram (order 6 by default) over case-folded text: it gives log p(next character | the
characters before it), with a start and an end of word. ``LmDecoder`` reads an image's
log-probabilities with the CTC prefix beam search (``ctc_host.prefix_beam_search``), every
prefix scored as

    log p_ctc(prefix | image) + weight * log p_lm(prefix) + length_bonus * len(prefix)

and, where the greedy reading is already confident (p(text | image) >= ``confident``),
keeps the greedy reading without searching: most words are read as fast as before.

A model is built from texts (``CharLM.train`` of ``training_texts``: the generator's English
word list and numbers and a training set's labels; the ``grcnn-lm`` command) and saved as
one ``.npz`` (``save``/``load``): the n-gram log-probabilities and back-off weights, as
strings and float32, and the decoding settings it was tuned with (a reader folder's
``lm.npz``: ``inference.lm_files``). numpy only: the ONNX reader reads with it too. (KenLM, the field's n-gram toolkit, builds word models with a C++ tool that is
not a pip install; a character model of ~10^5 words is small enough for plain dicts.)
"""

from __future__ import annotations

import collections
import dataclasses
import math
import os
from typing import Iterable, Sequence

import numpy as np

from grcnn_jax.text import ctc_host
from grcnn_jax.text.charset import Charset

START, END = "\x02", "\x03"     # the start of a word (context) and its end (predicted)


class LmError(ValueError):
    """A language model file is missing, unreadable or not one (the message names it)."""


@dataclasses.dataclass(frozen=True)
class Settings:
    """How a model is read with: fusion weight (per nat of LM log-probability), bonus per
    character (nats), prefixes kept per frame, the greedy confidence at or above which no
    search is run (1.0 or more: every image is searched), and the probability below which
    a frame's class is not tried as an extension (the search's speed)."""

    weight: float = 0.4
    length_bonus: float = 0.5
    beam_width: int = 10
    confident: float = 0.9
    min_prob: float = 3e-3

    def __post_init__(self):
        if self.weight < 0 or self.beam_width < 1 or not 0 <= self.min_prob < 1:
            raise LmError(f"language model settings: weight must be >= 0, beam_width >= 1 and "
                          f"min_prob in [0, 1), got {self.weight}, {self.beam_width} and "
                          f"{self.min_prob}")


class CharLM:
    """log p(character | up to ``order - 1`` characters before it), case-folded.

    Stored in back-off form (``tables``): ``logp[h + c]`` for every n-gram seen in training
    (its interpolated probability), ``backoff[h]`` for every context seen (the mass left to
    shorter contexts); an unseen character gets a share of the unigram's left mass. A model
    ``load``-ed reads its tables from ``source`` when it is first asked (~0.4 s and ~80 MB
    for the shipped one): a reader whose every image is read confidently never does.
    """

    def __init__(self, order: int, logp: dict[str, float] | None,
                 backoff: dict[str, float] | None, floor: float,
                 settings: Settings = Settings(), about: str = "", source: str | None = None):
        self.order, self.floor, self.settings, self.about = order, floor, settings, about
        self._logp, self._backoff, self._source = logp, backoff, source
        self.start = START * (order - 1)      # the context of a word's first character
        self._cache: dict[tuple[str, str], float] = {}

    # ------------------------------------------------------------------ build
    @classmethod
    def train(cls, texts: Iterable[tuple[str, float]], order: int = 6,
              settings: Settings = Settings(), about: str = "") -> "CharLM":
        """Witten-Bell interpolated n-grams of ``(text, weight)`` pairs (each text one word,
        lowercased here; ``weight`` counts it that many times)."""
        if order < 1:
            raise LmError(f"order must be >= 1, got {order}")
        counts: list[dict[str, collections.Counter]] = [
            collections.defaultdict(collections.Counter) for _ in range(order)]
        alphabet: set[str] = set()
        for text, weight in texts:
            s = START * (order - 1) + text.lower() + END
            alphabet.update(s[order - 1:])
            for j in range(order - 1, len(s)):
                for k in range(order):
                    counts[k][s[j - k:j]][s[j]] += weight
        if not alphabet:
            raise LmError("no text to train a language model on")
        floor = 1.0 / (len(alphabet) + 1)       # +1: a character never seen
        logp: dict[str, float] = {}
        backoff: dict[str, float] = {}
        lm = cls(order, logp, backoff, math.log(floor), settings, about)
        for k in range(order):                  # shorter contexts first: they are interpolated in
            for h, nexts in counts[k].items():
                total, types = sum(nexts.values()), len(nexts)
                lower = h[1:] if k else None
                for c, n in nexts.items():
                    p_lower = math.exp(lm._score(lower, c)) if k else floor
                    logp[h + c] = math.log((n + types * p_lower) / (total + types))
                backoff[h] = math.log(types / (total + types))
        return lm

    # ------------------------------------------------------------------ query
    def tables(self) -> tuple[dict[str, float], dict[str, float]]:
        """(logp, backoff), read from ``source`` on the first call."""
        if self._logp is None:
            try:
                with np.load(self._source) as z:
                    self._logp = dict(zip(z["ngrams"].tolist(), z["logp"].tolist()))
                    self._backoff = dict(zip(z["contexts"].tolist(), z["backoff"].tolist()))
            except Exception as e:  # noqa: BLE001 -- any failure to read: not a usable model
                raise LmError(f"cannot read language model {self._source!r} "
                              f"({type(e).__name__}: {e})") from None
        return self._logp, self._backoff

    def _score(self, h: str, c: str) -> float:
        """log p(c | h), h at most order - 1 characters (no cache)."""
        logp, backoff = self.tables()
        out = 0.0
        while True:
            v = logp.get(h + c)
            if v is not None:
                return out + v
            out += backoff.get(h, 0.0)
            if not h:
                return out + self.floor
            h = h[1:]

    def score(self, history: str, c: str) -> float:
        """log p(c | history): ``history`` the text so far after ``start`` (lowercase); ``c``
        one character (any case) or END."""
        h = history[len(history) - self.order + 1:] if self.order > 1 else ""
        c = c.lower()
        v = self._cache.get((h, c))
        if v is None:
            if len(self._cache) > 1_000_000:
                self._cache.clear()
            v = self._cache[(h, c)] = self._score(h, c)
        return v

    def word_log_prob(self, word: str) -> float:
        """log p(word, then its end)."""
        history, out = self.start, 0.0
        for c in word:
            out += self.score(history, c)
            history += c.lower()
        return out + self.score(history, END)

    # ------------------------------------------------------------------ files
    def save(self, path: str) -> None:
        logp, backoff = self.tables()
        keys, backs = sorted(logp), sorted(backoff)
        with open(path, "wb") as f:
            np.savez_compressed(
                f, order=np.int32(self.order), floor=np.float64(self.floor),
                ngrams=np.array(keys), logp=np.array([logp[k] for k in keys], np.float32),
                contexts=np.array(backs),
                backoff=np.array([backoff[k] for k in backs], np.float32),
                settings=np.array(dataclasses.astuple(self.settings), np.float64),
                about=np.array(self.about))

    @classmethod
    def load(cls, path: str) -> "CharLM":
        """Its order and settings now, its tables when first asked (``tables``). Raises
        LmError naming ``path`` if it is missing or not a model ``save`` wrote."""
        if not os.path.isfile(path):
            raise LmError(f"language model {path!r} does not exist")
        try:
            with np.load(path) as z:
                missing = {"ngrams", "logp", "contexts", "backoff"} - set(z.files)
                if missing:
                    raise LmError(f"{path!r} is not a language model: it lacks "
                                  f"{sorted(missing)}")
                weight, bonus, beam, confident, min_prob = (float(x) for x in z["settings"])
                return cls(int(z["order"]), None, None, float(z["floor"]),
                           Settings(weight, bonus, int(beam), confident, min_prob),
                           str(z["about"]), source=path)
        except LmError:
            raise
        except Exception as e:  # noqa: BLE001 -- any failure to read: not a usable model
            raise LmError(f"cannot read language model {path!r} ({type(e).__name__}: {e})") \
                from None


class LmDecoder:
    """A ``CharLM`` bound to a charset: the fusion ``ctc_host.prefix_beam_search`` calls
    (``start``, ``extend``, ``finish``) and the gated reading of a batch (``read``).
    ``settings`` defaults to the model's own; ``beam_width`` > 1 replaces its beam width
    (a reader's ``--beam_width``)."""

    def __init__(self, lm: CharLM, charset: Charset, settings: Settings | None = None,
                 beam_width: int = 1):
        self.lm, self.charset = lm, charset
        self.settings = settings or lm.settings
        if beam_width > 1:
            self.settings = dataclasses.replace(self.settings, beam_width=beam_width)
        self._chars = [""] + [c.lower() for c in charset.chars]     # class id -> character
        self.start = lm.start
        self._extended: dict[tuple[str, int], tuple[str, float]] = {}

    def extend(self, state: str, class_id: int) -> tuple[str, float]:
        key = (state, class_id)
        out = self._extended.get(key)
        if out is None:
            if len(self._extended) > 1_000_000:
                self._extended.clear()
            c = self._chars[class_id]
            s = self.settings
            out = self._extended[key] = (state + c, s.weight * self.lm.score(state, c)
                                         + s.length_bonus)
        return out

    def finish(self, state: str) -> float:
        return self.settings.weight * self.lm.score(state, END)

    def rank(self, ids: Sequence[int], log_p: float) -> float:
        """The search's score of a whole reading: ``log_p`` (log p(reading | image)) +
        weight * log p_lm(reading, then its end) + length bonus per character. Readings of
        different images of one word (``preprocess.framed_views``) are compared with it."""
        s = self.settings
        text = "".join(self._chars[i] for i in ids)
        return log_p + s.weight * self.lm.word_log_prob(text) + s.length_bonus * len(ids)

    def read(self, logits: np.ndarray, greedy_log_p: Sequence[float] | None = None,
             exact: bool = True) -> list[tuple[list[int], float]]:
        """[B, T, C] logits -> per image (label ids, log p(labelling | image)).

        ``greedy_log_p``: each image's greedy reading's log-likelihood, if known (the
        evaluator computes it on the device); images at or above ``settings.confident``
        keep their greedy reading, the others are read by the fused beam search. With
        ``exact`` False a searched reading's log p is the search's own (its alignments that
        survived the pruning: a lower bound) rather than summed over all its alignments."""
        logits = np.asarray(logits)
        greedy = ctc_host.collapse(logits.argmax(-1))
        st = self.settings
        threshold = math.log(st.confident) if st.confident > 0 else -math.inf
        class_threshold = math.log(st.min_prob) if st.min_prob > 0 else None
        if greedy_log_p is None:
            greedy_log_p = ctc_host.logits_log_likelihoods(logits, greedy)
        out: list[tuple[list[int], float]] = []
        searched: list[int] = []
        for i, (row, ids) in enumerate(zip(logits, greedy)):
            g = float(greedy_log_p[i])
            if g >= threshold:
                out.append((ids, g))
                continue
            found, log_p = ctc_host.prefix_beam_search(ctc_host.log_softmax(row), st.beam_width,
                                                       class_threshold, fusion=self)[0]
            out.append((list(found), log_p))
            searched.append(i)
        if exact and searched:           # the searched readings' log p, in batches
            exact_log_p = ctc_host.logits_log_likelihoods(logits[np.array(searched)],
                                                          [out[i][0] for i in searched])
            for i, v in zip(searched, exact_log_p.tolist()):
                out[i] = (out[i][0], v)
        return out


def training_texts(labels: Sequence[str], label_weight: float = 3.0,
                   words: Sequence[str] | None = None, numbers: int = 5000,
                   seed: int = 0) -> list[tuple[str, float]]:
    """The texts a reader's model is built from: the generator's English word list (each word
    once; ``synth.words``' vendored SCOWL list unless ``words``), ``numbers`` texts without
    letters as the generator writes them (prices, times, dates, plain numbers: a word list
    has none), and ``labels`` (a training set's labels, each ``label_weight`` times: they
    carry how often words, numbers and punctuation occur in real text)."""
    from grcnn_jax.config.defaults import CASED_CHARSET
    from grcnn_jax.data.synth import words as synth_words
    from grcnn_jax.data.synth.text import sample_text

    if words is None:
        words = synth_words._raw_words()
    rng = np.random.default_rng(seed)
    alphabet = synth_words.alphabet(CASED_CHARSET)
    marks = "".join(c for c in CASED_CHARSET if not c.isalnum())
    drawn: list[str] = []
    while len(drawn) < numbers:
        text = sample_text(rng, ["word"], alphabet, 25, marks)
        if not any(c.isalpha() for c in text):
            drawn.append(text)
    return ([(w, 1.0) for w in words] + [(t, 1.0) for t in drawn]
            + [(t, label_weight) for t in labels if t.strip()])


__all__ = ["CharLM", "LmDecoder", "LmError", "Settings", "training_texts"]
