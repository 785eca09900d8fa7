"""A chosen reading's end marks and letter case, settled by the network's probabilities.

Readers decide a reading first (greedy, or the search with a language model, and among an
image's views), then settle two things in it that the decision leaves to chance; neither
changes which letters are read, nor, where views are ranked, which view is kept (they are
ranked as read).

**End marks.** A language model built mostly from words without marks prices a final '.' or
',' many nats under none (16 for 'FAST.' against 'FAST' in the shipped one), so the search
drops marks the network reads plainly ('GATE.' read 'GATE'). The marks at either end of a
reading (leading and trailing characters that are neither letters nor digits) are the
network's: of the reading's own and the greedy reading's, ``end_marks`` keeps those under
which the reading is more probable by CTC alone (ties: its own).

**Case.** For letters whose two cases differ in size only (c, o, p, s, u, v, w, x, z) the
network is often unsure of the case, and a language model over case-folded text has no say:
it reads 'oUt' or 'LONDoN'. Real words are cased in a few patterns. Of the 5,593 labels with
two or more letters among the real training crops this package's reader was trained on (the
training splits of IIIT5K, SVT and ICDAR 2015, less the part kept for validation), 3,164 are
upper case, 1,459 title case ('Exit'), 879 lower case and 91 mixed ('iPad', 'McDonalds',
'CiTYLiNK'): ``PATTERN_COUNTS``. ``case`` keeps a reading whose letters follow one of the
three regular patterns as it is, and sets a mixed one against its lower, upper and title
case forms by log p(form | image) (summed over CTC alignments) + log P(form's pattern),
keeping the best: a case the network is sure of stays ('iPad', whose i and I differ in
shape), one it is unsure of takes the pattern ('oUt' -> 'out').
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np

from grcnn_jax.text import ctc_host
from grcnn_jax.text.charset import Charset

PATTERN_COUNTS = {"upper": 3164, "title": 1459, "lower": 879, "mixed": 91}
_TOTAL = sum(PATTERN_COUNTS.values())
LOG_PRIOR = {k: math.log(v / _TOTAL) for k, v in PATTERN_COUNTS.items()}

Scores = np.ndarray | Callable[[], np.ndarray]


def reading(scores: Scores, readings: Sequence[Sequence[int]], greedy: Sequence[Sequence[int]],
            charset: Charset, log_p: Sequence[float] | None = None
            ) -> tuple[list[list[int]], list[float] | None]:
    """``end_marks`` then ``case``: what every reader does to its chosen readings.

    Args:
      scores: [N, T, C] logits or log-probabilities of the N images (normalized here, for
        the rows that need them only), or a function returning them, called only if some
        reading needs them.
      readings: N label-id sequences, as read.
      greedy: the N greedy readings (``ctc_host.collapse`` of the best paths).
      charset: the readings' alphabet.
      log_p: the readings' log p(reading | image), if the caller keeps them.

    Returns:
      (readings, log_p): the readings, those changed replaced, and ``log_p`` with the
      changed readings' exact log p (None if None was given).
    """
    fetched: list[np.ndarray] = []

    def fetch() -> np.ndarray:                  # at most once, and only if needed
        if not fetched:
            fetched.append(np.asarray(scores() if callable(scores) else scores))
        return fetched[0]

    readings, log_p = end_marks(fetch, readings, greedy, charset, log_p)
    return case(fetch, readings, charset, log_p)


def _keep_best(scores: Scores, readings: list[list[int]], log_p: list[float] | None,
               rows: list[int], forms: list[list[list[int]]],
               prior: Sequence[float] | None = None) -> None:
    """For each of ``rows`` (image indices) with its ``forms`` (label-id sequences, its own
    reading first): puts the form of highest CTC log-likelihood (+ ``prior``, one value per
    form position; the first on ties) in ``readings`` and its log-likelihood in ``log_p``."""
    if not rows:
        return
    index = np.repeat(rows, [len(fs) for fs in forms])
    log_probs = ctc_host.log_softmax(np.asarray(scores() if callable(scores) else scores)[index])
    likelihoods = ctc_host.ctc_log_likelihoods(log_probs, [f for fs in forms for f in fs])
    start = 0
    for i, fs in zip(rows, forms):
        ll = likelihoods[start:start + len(fs)]
        start += len(fs)
        j = int(np.argmax(ll + (np.asarray(prior) if prior is not None else 0.0)))
        if j:
            readings[i] = fs[j]
            if log_p is not None:
                log_p[i] = float(ll[j])


def _split_marks(ids: Sequence[int], marks: set[int]) -> tuple[list[int], list[int], list[int]]:
    """``ids`` split into its leading marks, the rest up to its trailing marks, and those."""
    i, j = 0, len(ids)
    while i < j and ids[i] in marks:
        i += 1
    while j > i and ids[j - 1] in marks:
        j -= 1
    return list(ids[:i]), list(ids[i:j]), list(ids[j:])


def end_marks(scores: Scores, readings: Sequence[Sequence[int]], greedy: Sequence[Sequence[int]],
              charset: Charset, log_p: Sequence[float] | None = None
              ) -> tuple[list[list[int]], list[float] | None]:
    """Each reading's end marks: of its own and its greedy reading's (at each end), those
    under which it is more probable by CTC (see the module doc); arguments and returns as
    ``reading``'s. A reading of marks alone, or with the greedy reading's ends, stays."""
    readings = [list(ids) for ids in readings]
    log_p = None if log_p is None else [float(v) for v in log_p]
    marks = {i + 1 for i, c in enumerate(charset.chars) if not c.isalnum()}
    rows, forms = [], []
    for i, (ids, g) in enumerate(zip(readings, greedy)):
        head, core, tail = _split_marks(ids, marks)
        g_head, _, g_tail = _split_marks(g, marks)
        if not core or (head, tail) == (g_head, g_tail):
            continue
        candidates: list[list[int]] = []        # its own first: ties keep it
        for h in (head, g_head):
            for t in (tail, g_tail):
                if h + core + t not in candidates:
                    candidates.append(h + core + t)
        rows.append(i)
        forms.append(candidates)
    _keep_best(scores, readings, log_p, rows, forms)
    return readings, log_p


def pattern(text: str) -> str | None:
    """'lower', 'upper', 'title' or 'mixed': how ``text``'s letters are cased (the other
    characters aside); None for fewer than two letters."""
    letters = "".join(c for c in text if c.isalpha())
    if len(letters) < 2:
        return None
    if letters.islower():
        return "lower"
    if letters.isupper():
        return "upper"
    if letters[0].isupper() and letters[1:].islower():
        return "title"
    return "mixed"


def title_case(text: str) -> str:
    """``text`` with its first letter upper case and the other letters lower case (the
    other characters as they are)."""
    out, first = [], True
    for c in text:
        if c.isalpha():
            out.append(c.upper() if first else c.lower())
            first = False
        else:
            out.append(c)
    return "".join(out)


def case(scores: Scores, readings: Sequence[Sequence[int]], charset: Charset,
         log_p: Sequence[float] | None = None) -> tuple[list[list[int]], list[float] | None]:
    """Each mixed-case reading replaced by its best-scoring case form (see the module doc);
    arguments and returns as ``reading``'s. A charset that does not write both cases
    changes nothing."""
    readings = [list(ids) for ids in readings]
    log_p = None if log_p is None else [float(v) for v in log_p]
    if not ctc_host.writes_both_cases(charset):
        return readings, log_p
    rows, forms = [], []
    for i, ids in enumerate(readings):
        text = charset.decode(ids)
        if pattern(text) == "mixed":
            rows.append(i)
            forms.append([charset.encode(f) for f in
                          (text, text.lower(), text.upper(), title_case(text))])
    _keep_best(scores, readings, log_p, rows, forms,
               [LOG_PRIOR[k] for k in ("mixed", "lower", "upper", "title")])
    return readings, log_p
